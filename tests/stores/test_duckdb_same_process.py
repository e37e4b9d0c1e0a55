"""Two store objects of one process on the same DuckDB file at once (a run's writer thread
and a step's Depot): each operation waits for the other instead of failing the step."""

from __future__ import annotations

import threading

from aqueduct_dagster.stores.duckdb_store import DuckDBStore


def test_two_store_objects_in_one_process_share_the_file_without_failing(tmp_path):
    path = tmp_path / "aqueduct.duckdb"
    DuckDBStore(path).migrate()
    errors: list[BaseException] = []

    def work(name: str) -> None:
        store = DuckDBStore(path)
        try:
            for index in range(25):
                store.record_module_metric(run_id=f"{name}-{index}", blueprint_id="bp", module_id="m",
                                           module_type="Channel", status="success", duration_ms=1)  # fmt: skip
                store.depot_get("bp", "key")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in ("writer", "depot")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(DuckDBStore(path).runs("bp", limit=100)) == 50
