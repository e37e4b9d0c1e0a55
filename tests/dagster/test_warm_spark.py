"""Blueprint runs with `master_url: managed`: the project's warm Spark Connect server."""

from __future__ import annotations

import logging

import dagster as dg
import pyarrow  # noqa: F401  (before deltalake: delta-rs aborts at exit otherwise)
import pytest
from deltalake import DeltaTable

from aqueduct_dagster.dagster import build_definitions

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark")]


@pytest.mark.spark_kind("connect")
def test_a_managed_run_uses_the_running_server_and_releases_its_session(
    spark, request, demo_project, monkeypatch, caplog
):
    from pyspark import SparkContext

    server = request.getfixturevalue("connect_server")
    monkeypatch.setenv("AQUEDUCT_SPARK_MASTER", "managed")
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", server.state_dir)
    defs = build_definitions(demo_project["blueprints"])
    with caplog.at_level(logging.WARNING, logger="aqueduct_dagster.engine.session"):
        result = defs.resolve_job_def("orders_daily").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
        )
    assert result.success
    assert "no healthy managed Spark Connect server" not in caplog.text
    # No fallback: nothing started a classic JVM in this process (the connect turn has none).
    assert SparkContext._active_spark_context is None
    table = DeltaTable(str(demo_project["data"] / "demo" / "orders_clean"))
    assert table.to_pyarrow_dataset().count_rows() == demo_project["valid_orders"]
