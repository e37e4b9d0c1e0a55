"""Framework state stores: DuckDB by default, PostgreSQL when configured."""

from __future__ import annotations

import os
from pathlib import Path

from aqueduct_dagster.stores.base import HealTurn, Store
from aqueduct_dagster.stores.duckdb_store import DuckDBStore


def default_store(state_dir: str | Path | None = None) -> Store:
    """The store for this project: `<state dir>/aqueduct.duckdb` unless configured otherwise."""
    folder = Path(state_dir or os.environ.get("AQUEDUCT_STATE_DIR", ".aqueduct"))
    return DuckDBStore(folder / "aqueduct.duckdb")


__all__ = ["DuckDBStore", "HealTurn", "Store", "default_store"]
