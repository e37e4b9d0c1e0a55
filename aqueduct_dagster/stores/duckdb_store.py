"""The embedded default store: one DuckDB file under the project's state dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from aqueduct_dagster.stores.base import Store


class DuckDBStore(Store):
    # Another process holding the file's write lock raises IOException; retried by the base.
    lock_errors = (duckdb.IOException,)

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def description(self) -> str:
        return f"duckdb:{self.path}"

    def _connect(self) -> Any:
        return duckdb.connect(str(self.path))
