"""The Depot on real Spark: incremental Channels, `format: depot` Egress, `@aq.depot.get`.

Each test runs a compiled Blueprint through `Depot.run` (bind the committed values, run,
stage and commit only on success) against a DuckDB store in tmp_path, and reads what the
runs wrote back with pyarrow (no Spark job).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_text
from aqueduct_dagster.blueprint.depot import watermark_key
from aqueduct_dagster.engine.errors import AssertionFailed, ModuleFailed
from aqueduct_dagster.engine.runner import run_manifest
from aqueduct_dagster.errors import BlueprintError
from aqueduct_dagster.stores.depot import Depot
from aqueduct_dagster.stores.duckdb_store import DuckDBStore

INCREMENTAL = """
aqueduct: "1.0"
id: events_inc
name: Incremental events
modules:
  - id: events
    type: Ingress
    config: {{format: csv, path: "{root}/events.csv", options: {{header: "true", inferSchema: "true"}}}}
  - id: new_events
    type: Channel
    materialize: incremental
    watermark_column: event_ts
    config:
      op: sql
      query: >
        SELECT id, event_ts, value FROM events
        WHERE CAST(event_ts AS TIMESTAMP) > CAST(${{ctx._watermark}} AS TIMESTAMP)
  - id: checked
    type: Assert
    config:
      rules:
        - {{type: sql, expr: "coalesce(max(value), 0) < {limit}", on_fail: abort}}
  - id: sink
    type: Egress
    config: {{format: parquet, path: "{root}/out", mode: append}}
edges:
  - {{from: events, to: new_events}}
  - {{from: new_events, to: checked}}
  - {{from: checked, to: sink}}
"""


def _events(path: Path, *rows: tuple[int, str, int]) -> None:
    lines = ["id,event_ts,value"] + [f"{i},{ts},{v}" for i, ts, v in rows]
    path.write_text("\n".join(lines) + "\n")


def _ids(folder: Path) -> list[int]:
    files = [str(p) for p in folder.rglob("*.parquet") if not p.name.startswith((".", "_"))]
    return sorted(ds.dataset(files, format="parquet").to_table()["id"].to_pylist()) if files else []


@pytest.fixture
def depot(tmp_path):
    return Depot(DuckDBStore(tmp_path / "state" / "aqueduct.duckdb"), "events_inc")


def _run(spark, depot: Depot, root: Path, run_id: str, *, limit: int = 1000):
    manifest = compile_text(INCREMENTAL.format(root=root, limit=limit), source_path="events_inc.yml")
    manifest = bind_runtime(manifest, RunInfo(run_id=run_id, started_at=datetime.now(UTC)))
    return depot.run(manifest, run_id, lambda bound: run_manifest(spark, bound))


@pytest.mark.spark
def test_incremental_channel_reads_only_rows_past_the_watermark(spark, tmp_path, depot):
    events = tmp_path / "events.csv"
    _events(events, (1, "2026-01-01 10:00:00", 5), (2, "2026-01-02 10:00:00", 6))

    first = _run(spark, depot, tmp_path, "r1")
    assert first.modules["new_events"].metadata["watermark"] == "2026-01-02 10:00:00"
    assert _ids(tmp_path / "out") == [1, 2]
    assert depot.get(watermark_key("new_events")) == "2026-01-02 10:00:00"

    _events(events, (1, "2026-01-01 10:00:00", 5), (2, "2026-01-02 10:00:00", 6),
            (3, "2026-01-03 09:00:00", 7))  # fmt: skip
    _run(spark, depot, tmp_path, "r2")
    assert _ids(tmp_path / "out") == [1, 2, 3]  # row 3 appended once, 1 and 2 not again
    assert depot.get(watermark_key("new_events")) == "2026-01-03 09:00:00"

    third = _run(spark, depot, tmp_path, "r3")  # nothing new: nothing appended
    assert "watermark" not in third.modules["new_events"].metadata
    assert _ids(tmp_path / "out") == [1, 2, 3]
    assert depot.get(watermark_key("new_events")) == "2026-01-03 09:00:00"


@pytest.mark.spark
def test_watermark_does_not_advance_when_the_run_fails(spark, tmp_path, depot):
    events = tmp_path / "events.csv"
    _events(events, (1, "2026-01-01 10:00:00", 5))
    _run(spark, depot, tmp_path, "r1")
    _events(events, (1, "2026-01-01 10:00:00", 5), (2, "2026-01-02 10:00:00", 50))

    # The Channel computes the new watermark, then the Assert downstream aborts the run.
    with pytest.raises(AssertionFailed):
        _run(spark, depot, tmp_path, "r2", limit=10)
    assert depot.get(watermark_key("new_events")) == "2026-01-01 10:00:00"
    assert depot.store.depot_staged_runs("events_inc") == []  # discarded, not left pending
    assert _ids(tmp_path / "out") == [1]

    # Fixed and re-run: the slice the failed run saw is read again, once.
    _run(spark, depot, tmp_path, "r3", limit=1000)
    assert _ids(tmp_path / "out") == [1, 2]
    assert depot.get(watermark_key("new_events")) == "2026-01-02 10:00:00"


KV = """
aqueduct: "1.0"
id: kv
name: Depot key/values
modules:
  - id: events
    type: Ingress
    config: {{format: csv, path: "{root}/events.csv", options: {{header: "true", inferSchema: "true"}}}}
  - id: recent
    type: Channel
    config:
      op: sql
      query: "SELECT * FROM events WHERE id > @aq.depot.get('last_id', '0')"
  - id: out
    type: Egress
    config: {{format: parquet, path: "{root}/out", mode: append}}
  - id: save_last_id
    type: Egress
    config: {{format: depot, key: last_id, value_expr: "MAX(id)"}}
  - id: save_run
    type: Egress
    config: {{format: depot, key: last_run, value: "@aq.run.id()"}}
edges:
  - {{from: events, to: recent}}
  - {{from: recent, to: out}}
  - {{from: recent, to: save_last_id}}
  - {{from: recent, to: save_run}}
"""


@pytest.mark.spark
def test_depot_egress_values_are_read_back_by_the_next_run(spark, tmp_path):
    depot = Depot(DuckDBStore(tmp_path / "state.duckdb"), "kv")
    _events(tmp_path / "events.csv", (1, "2026-01-01", 1), (4, "2026-01-01", 1))

    def run(run_id: str):
        manifest = compile_text(KV.format(root=tmp_path), source_path="kv.yml")
        manifest = bind_runtime(manifest, RunInfo(run_id=run_id, started_at=datetime.now(UTC)))
        return depot.run(manifest, run_id, lambda bound: run_manifest(spark, bound))

    first = run("run-1")
    assert first.depot == {"last_id": "4", "last_run": "run-1"}
    assert (depot.get("last_id"), depot.get("last_run")) == ("4", "run-1")

    _events(tmp_path / "events.csv", (1, "2026-01-01", 1), (4, "2026-01-01", 1), (7, "2026-01-02", 1))
    run("run-2")  # reads last_id = 4: only row 7 is new
    assert _ids(tmp_path / "out") == [1, 4, 7]
    assert (depot.get("last_id"), depot.get("last_run")) == ("7", "run-2")


def test_depot_get_without_a_value_or_default_names_the_module(tmp_path):
    depot = Depot(DuckDBStore(tmp_path / "state.duckdb"), "kv")
    text = KV.format(root=tmp_path).replace("@aq.depot.get('last_id', '0')", "@aq.depot.get('last_id')")
    manifest = compile_text(text, source_path="kv.yml")

    with pytest.raises(BlueprintError) as raised:
        depot.run(manifest, "r1", lambda bound: pytest.fail("must not run"))
    error = raised.value
    assert error.module_id == "recent" and error.location.file == "kv.yml"
    assert "no value for 'last_id'" in str(error) and "@aq.depot.get('last_id', '...')" in error.hint


@pytest.mark.spark
def test_watermark_column_missing_from_the_output_is_a_clear_failure(spark, tmp_path, depot):
    _events(tmp_path / "events.csv", (1, "2026-01-01 10:00:00", 5))
    text = INCREMENTAL.format(root=tmp_path, limit=1000).replace("SELECT id, event_ts, value", "SELECT id, value")
    manifest = compile_text(text, source_path="events_inc.yml")

    with pytest.raises(ModuleFailed) as raised:
        depot.run(manifest, "r1", lambda bound: run_manifest(spark, bound))
    assert raised.value.module_id == "new_events"
    assert raised.value.error.condition == "AQ_WATERMARK_COLUMN_MISSING"
    assert depot.get(watermark_key("new_events")) is None
