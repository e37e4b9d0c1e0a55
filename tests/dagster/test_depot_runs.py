"""The Depot through Dagster runs: a watermark staged by a run is committed only after the
Dagster instance reports that whole run SUCCESS, and discarded after a failed run."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from aqueduct_dagster.blueprint.depot import watermark_key
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.stores.depot import Depot
from aqueduct_dagster.stores.duckdb_store import DuckDBStore

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark"), pytest.mark.spark_kind("classic")]
# One session kind: what these tests check does not depend on it (Connect runs through
# Dagster are covered by test_materialize, test_module_types and test_warm_spark).

BLUEPRINT = """
aqueduct: "1.0"
id: clicks
name: Incremental clicks
modules:
  - id: clicks_raw
    type: Ingress
    config: {{format: csv, path: "{data}/clicks.csv", options: {{header: "true", inferSchema: "true"}}}}
  - id: new_clicks
    type: Channel
    materialize: incremental
    watermark_column: ts
    config:
      query: "SELECT id, ts, n FROM clicks_raw WHERE CAST(ts AS TIMESTAMP) > CAST(${{ctx._watermark}} AS TIMESTAMP)"
  - id: sane
    type: Assert
    config:
      rules: [{{type: sql, expr: "coalesce(max(n), 0) < {limit}", on_fail: abort}}]
  - id: clicks_out
    type: Egress
    config: {{format: parquet, path: "{data}/out", mode: append}}
edges:
  - {{from: clicks_raw, to: new_clicks}}
  - {{from: new_clicks, to: sane}}
  - {{from: sane, to: clicks_out}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AQUEDUCT_CONFIG", raising=False)
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "data").mkdir()
    return tmp_path


def _clicks(project: Path, *rows: tuple[int, str, int]) -> None:
    lines = ["id,ts,n"] + [f"{i},{ts},{n}" for i, ts, n in rows]
    (project / "data" / "clicks.csv").write_text("\n".join(lines) + "\n")


def _run(project: Path, instance: dg.DagsterInstance, limit: int = 100) -> dg.ExecuteInProcessResult:
    text = BLUEPRINT.format(data=project / "data", limit=limit)
    (project / "blueprints" / "clicks.yml").write_text(text)
    defs = build_definitions(project / "blueprints")
    return defs.resolve_job_def("clicks").execute_in_process(instance=instance, raise_on_error=False)


def _out_ids(project: Path) -> list[int]:
    files = [str(p) for p in (project / "data" / "out").rglob("*.parquet") if not p.name.startswith(".")]
    return sorted(ds.dataset(files, format="parquet").to_table()["id"].to_pylist())


def test_watermark_commits_after_success_and_is_discarded_after_failure(project):
    instance = dg.DagsterInstance.ephemeral()
    depot = Depot(DuckDBStore(project / "state" / "aqueduct.duckdb"), "clicks")
    key = watermark_key("new_clicks")

    _clicks(project, (1, "2026-03-01 08:00:00", 1), (2, "2026-03-01 09:00:00", 2))
    first = _run(project, instance)
    assert first.success
    materialized = {e.asset_key: e for e in first.get_asset_materialization_events()}
    channel = materialized[dg.AssetKey(["clicks", "new_clicks"])].materialization.metadata
    assert channel["watermark"].value == "2026-03-01 09:00:00"
    # Staged, not yet committed: Dagster decides the run's outcome after this step.
    assert depot.store.depot_staged_runs("clicks") == [first.run_id]
    assert depot.get(key) is None

    _clicks(project, (1, "2026-03-01 08:00:00", 1), (2, "2026-03-01 09:00:00", 2),
            (3, "2026-03-02 08:00:00", 500))  # fmt: skip
    failed = _run(project, instance)  # settles run 1 (SUCCESS), then the Assert aborts
    assert not failed.success
    assert depot.get(key) == "2026-03-01 09:00:00"
    assert _out_ids(project) == [1, 2]

    fixed = _run(project, instance, limit=1000)  # discards the failed run's watermark
    assert fixed.success
    assert _out_ids(project) == [1, 2, 3]  # row 3 read again after the failure, written once
    assert failed.run_id not in depot.store.depot_staged_runs("clicks")
    assert depot.get(key) == "2026-03-01 09:00:00"  # run 3's value waits for the next run

    _run(project, instance, limit=1000)
    assert depot.get(key) == "2026-03-02 08:00:00"
    assert _out_ids(project) == [1, 2, 3]
