"""The code location loads in the real Dagster tools: `definitions validate` and `dagster dev`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dagster_dev import REPO, dagster_dev

pytestmark = pytest.mark.e2e
DAGSTER = Path(sys.executable).parent / "dagster"


def test_definitions_validate_passes_on_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    done = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Validation successful" in done.stdout + done.stderr


ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}
"""


def test_dagster_dev_serves_the_asset_graph_and_checks(tmp_path):
    with dagster_dev(tmp_path / "home", env={"AQUEDUCT_DATA_DIR": str(tmp_path / "data")}) as server:
        nodes = server.graphql(ASSETS_QUERY)["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"orders_daily/raw_orders", "orders_daily/clean_orders", "orders_daily/orders_delta"} <= set(by_key)
    assert by_key["orders_daily/clean_orders"]["groupName"] == "orders_daily"
    checks = by_key["orders_daily/clean_orders"]["assetChecksOrError"]["checks"]
    assert checks == [{"name": "orders_quality", "blocking": True}]
