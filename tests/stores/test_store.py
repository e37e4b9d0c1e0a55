"""Store behaviour on both backends, including two processes writing or migrating at once."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

from aqueduct_dagster.stores import HealTurn
from aqueduct_dagster.stores.base import SCHEMA_VERSION
from tests.stores.conftest import open_store

_SPAWN = multiprocessing.get_context("spawn")


def test_heal_attempts_turns_and_patch_index(store):
    store.start_heal("h1", "bp", "run-1", "SIG")
    store.record_turn(HealTurn(heal_id="h1", turn=1, diagnoser="rules", signature="SIG", rejected_by="lineage"))
    store.record_turn(HealTurn(heal_id="h1", turn=2, diagnoser="rules", signature="SIG", input_tokens=10))
    store.finish_heal("h1", "staged", patch_id="p1")
    store.index_patch("p1", "bp", "SIG", "pending", "patches/pending/p1.json", "h1")
    assert [t["rejected_by"] for t in store.turns("h1")] == ["lineage", None]
    assert store.heal_attempts("bp")[0]["outcome"] == "staged"
    assert store.pending_patch_for("bp", "SIG") == "p1"
    store.set_patch_status("p1", "applied")
    assert store.pending_patch_for("bp", "SIG") is None
    assert store.heal_attempts_since("bp", timedelta(hours=1)) == 1
    assert store.heal_attempts_since("other", timedelta(hours=1)) == 0


def test_failures_and_patch_listing(store):
    store.record_failure("h1", "bp", "run-1", "clean", "SIG", {"error": "boom", "rows": 3})
    store.index_patch("p1", "bp", "SIG", "pending", None)
    store.index_patch("p1", "bp", "SIG", "rejected", None)  # re-indexing replaces the row
    assert store.patches("bp") == [
        {"patch_id": "p1", "blueprint_id": "bp", "signature": "SIG", "status": "rejected", "path": None,
         "heal_id": None}
    ]  # fmt: skip
    rows = store.execute("SELECT module_id, package_json FROM aq_failures WHERE heal_id = ?", ("h1",))
    assert rows[0][0] == "clean" and '"boom"' in rows[0][1]


def _writer(backend: str, location: str, prefix: str, count: int) -> None:
    store = open_store(backend, location)
    for index in range(count):
        store.start_heal(f"{prefix}-{index}", "bp", None, "SIG")


def test_concurrent_writer_processes_do_not_fail(store_target):
    store_target.open().migrate()
    workers = [_SPAWN.Process(target=_writer, args=(store_target.backend, store_target.location, name, 15))
               for name in ("daemon", "cli")]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(store_target.open().heal_attempts("bp")) == 30


def _migrator(backend: str, location: str, start) -> None:
    store = open_store(backend, location)
    start.wait(timeout=60)
    store.migrate()


def test_migrate_from_two_processes_at_once(store_target):
    start = _SPAWN.Barrier(2)
    workers = [_SPAWN.Process(target=_migrator, args=(store_target.backend, store_target.location, start))
               for _ in range(2)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    store = store_target.open()
    assert store.execute("SELECT version FROM aq_schema_version") == [(SCHEMA_VERSION,)]
    assert store.heal_attempts() == []


def test_module_metrics_and_runs(store):
    store.record_module_metric(run_id="r1", blueprint_id="bp", module_id="raw", module_type="Ingress",
                               status="success", duration_ms=120)  # fmt: skip
    store.record_module_metric(run_id="r1", blueprint_id="bp", module_id="out", module_type="Egress",
                               status="failure", duration_ms=80, detail={"condition": "PATH_NOT_FOUND"})  # fmt: skip
    store.record_module_metric(run_id="r1", blueprint_id="bp", module_id="out", module_type="Egress",
                               status="success", duration_ms=90, rows_written=7)  # a retry replaces the attempt
    assert [(m["module_id"], m["status"], m["rows_written"]) for m in store.module_metrics("r1")] == [
        ("raw", "success", None), ("out", "success", 7)]  # fmt: skip
    [run] = store.runs("bp")
    assert (run["run_id"], run["modules_ok"], run["modules_failed"], run["duration_ms"]) == ("r1", 2, 0, 210)


def test_column_lineage_is_recorded_once_per_version(store):
    edges = [("clean", "amount", "raw", "amount"), ("clean", "id", "raw", "order_id")]
    store.record_lineage("bp", "fp1", edges)
    store.record_lineage("bp", "fp1", edges)
    assert store.lineage("bp", "fp1") == sorted(edges)
    assert store.lineage("bp", "fp2") == []


def test_depot_values_are_visible_only_after_commit(store):
    store.depot_stage("bp", {"watermark": "2026-01-01"}, "r1")
    assert store.depot_get("bp", "watermark", "1900-01-01") == "1900-01-01"
    assert store.depot_commit("bp", "r1") == 1
    assert store.depot_get("bp", "watermark") == "2026-01-01"
    store.depot_stage("bp", {"watermark": "2026-02-01"}, "r2")
    store.depot_discard("bp", "r2")  # the run failed: the watermark does not advance
    assert store.depot_get("bp", "watermark") == "2026-01-01"


def test_a_runs_writes_open_the_store_once_each(store, monkeypatch):
    """Each write is one transaction on one connection: a DuckDB file costs ~20 ms to open
    and close, and the run's end waits for the last write (it opened it per statement, per
    lineage edge)."""
    store.migrate()
    opened = []
    connect = store._connect
    monkeypatch.setattr(store, "_connect", lambda: opened.append(1) or connect())
    store.record_module_metric(run_id="r1", blueprint_id="bp", module_id="out", module_type="Egress",
                               status="success", duration_ms=90, rows_written=7)  # fmt: skip
    assert len(opened) == 1
    edges = [("clean", f"c{i}", "raw", f"c{i}") for i in range(25)]
    store.record_lineage("bp", "fp1", edges)
    assert len(opened) == 2
    assert len(store.lineage("bp", "fp1")) == 25
