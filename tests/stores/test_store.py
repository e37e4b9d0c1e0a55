"""Store behaviour, including two processes writing the DuckDB file at once."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest

from aqueduct_dagster.stores import DuckDBStore, HealTurn


@pytest.fixture
def store(tmp_path):
    return DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")


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


def _writer(path: str, prefix: str, count: int) -> None:
    store = DuckDBStore(path)
    for index in range(count):
        store.start_heal(f"{prefix}-{index}", "bp", None, "SIG")


def test_concurrent_writer_processes_do_not_fail(tmp_path):
    path = str(tmp_path / "aqueduct.duckdb")
    DuckDBStore(path).migrate()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, name, 15)) for name in ("daemon", "cli")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(DuckDBStore(path).heal_attempts("bp")) == 30
