"""The embedded default store: one DuckDB file under the project's state dir."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.stores.base import Store


class FileLocked(Exception):
    """Another process holds the DuckDB file's write lock (retried by the base class)."""


#: Threads of one process share a DuckDB instance (and its MVCC), so the file lock that keeps
#: other processes out does not order them: heal starts in one process take this lock too.
_HEAL_START_LOCK = threading.Lock()


class DuckDBStore(Store):
    lock_errors = (FileLocked,)

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def description(self) -> str:
        return f"duckdb:{self.path}"

    def _being_created(self, error: Exception) -> bool:
        """Another process is creating the file right now: it reads as invalid for a moment."""
        if "not a valid duckdb database file" not in str(error).lower():
            return False
        try:
            return time.time() - self.path.stat().st_mtime < 10
        except OSError:
            return True

    @contextmanager
    def _heal_serialization(self) -> Iterator[None]:
        # Across processes, DuckDB's file lock already admits one writing connection at a time.
        with _HEAL_START_LOCK:
            yield

    def _connect(self) -> Any:
        try:
            return duckdb.connect(str(self.path))
        except duckdb.ResourceInUseException as error:
            # Another store object of this process (the run's writer thread, a step's Depot)
            # is attaching the same file this instant: its connection lasts one operation.
            raise FileLocked(str(error)) from error
        except duckdb.IOException as error:
            # Only a lock held elsewhere is worth waiting for; a permission error is not.
            if "lock" in str(error).lower() or self._being_created(error):
                raise FileLocked(str(error)) from error
            raise ConfigError(f"cannot open the DuckDB store {self.path}: {error}",
                              hint="check the state dir (AQUEDUCT_STATE_DIR) is writable") from error
