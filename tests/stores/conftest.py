"""Store fixtures: every store test body runs against DuckDB and a real PostgreSQL.

The PostgreSQL server is started once per test session (`tests/support/postgres.py`: initdb +
pg_ctl on a free loopback port, under a second on these machines) and each test gets its own
database in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from aqueduct_dagster.stores import DuckDBStore, PostgresStore, Store
from tests.support.postgres import PostgresServer


@dataclass(frozen=True)
class StoreTarget:
    """Where a store lives, as plain strings a spawned process can receive."""

    backend: str  # "duckdb" | "postgres"
    location: str  # the DuckDB file, or the PostgreSQL URL

    def open(self) -> Store:
        return open_store(self.backend, self.location)


def open_store(backend: str, location: str) -> Store:
    return DuckDBStore(location) if backend == "duckdb" else PostgresStore(location)


@pytest.fixture(params=["duckdb", "postgres"])
def store_target(request, tmp_path) -> StoreTarget:
    if request.param == "duckdb":
        return StoreTarget("duckdb", str(tmp_path / "state" / "aqueduct.duckdb"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return StoreTarget("postgres", server.create_database())


@pytest.fixture
def store(store_target) -> Store:
    return store_target.open()
