"""The shared store: one PostgreSQL database that many processes and machines write at once.

A connection is opened per operation, as with DuckDB, rather than pooled: the store writes a
handful of rows per heal (never a hot path), and the Dagster daemon, every run worker and the
CLI each hold a store, so a per-process pool would keep idle connections open against the
server's `max_connections` for the whole life of each process. A loopback connect costs a
few milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg2
from psycopg2.extensions import parse_dsn

from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.stores.base import Store

#: Arbitrary, fixed key of the advisory lock that serialises schema migrations.
_MIGRATION_LOCK_KEY = 7_301_842_113

#: Connection failures worth a retry: the server is up but cannot take us right now.
_BUSY_MARKERS = ("too many clients", "remaining connection slots", "the database system is starting up")


def _heal_lock_key(blueprint_id: str) -> int:
    """A stable signed 64-bit advisory-lock key for one Blueprint's heal starts."""
    digest = hashlib.sha256(f"aqueduct-heal-start:{blueprint_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresBusy(Exception):
    """The server refused a connection for a passing reason; retried by the base."""


def normalize_url(url: str) -> str:
    """Accept SQLAlchemy spellings (`postgresql+psycopg2://`) as well as libpq's own."""
    return re.sub(r"^postgres(?:ql)?\+[a-z0-9_]+://", "postgresql://", url.strip())


class PostgresStore(Store):
    placeholder = "%s"
    # MVCC: writers do not block each other, so only a busy server is worth retrying.
    lock_errors = (PostgresBusy,)

    def __init__(self, url: str, *, connect_timeout: int = 5) -> None:
        super().__init__()
        self.url = normalize_url(url)
        try:
            params = parse_dsn(self.url)
        except psycopg2.ProgrammingError as error:
            raise ConfigError(
                f"invalid PostgreSQL URL for the framework store: {self._scrub(str(error), url)}",
                hint="use postgresql://user:password@host:5432/database",
            ) from None
        self._password = params.get("password")
        self.host = params.get("host") or "localhost"
        self.port = params.get("port") or "5432"
        self.database = params.get("dbname") or params.get("user") or ""
        self.user = params.get("user")
        self._extra: dict[str, Any] = {} if "connect_timeout" in params else {"connect_timeout": connect_timeout}

    @property
    def description(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"postgres:{user}{self.host}:{self.port}/{self.database}"

    def _scrub(self, text: str, url: str | None = None) -> str:
        password = getattr(self, "_password", None)
        for secret in (password, url):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _connect(self) -> Any:
        try:
            return psycopg2.connect(self.url, **self._extra)
        except psycopg2.OperationalError as error:
            reason = " ".join(self._scrub(str(error)).split())
            if any(marker in reason for marker in _BUSY_MARKERS):
                raise PostgresBusy(reason) from None
            raise ConfigError(
                f"cannot connect to the PostgreSQL store at {self.host}:{self.port} "
                f"(database '{self.database}'): {reason}",
                hint="check stores.observability.url in aqueduct.yml and that the server is running",
            ) from None

    def _migration_lock(self, cursor: Any) -> None:
        # Held until the migration commits: a second process starting at the same moment waits,
        # then finds the tables and the version row (no duplicate-type race, no second row).
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))

    def _heal_lock(self, cursor: Any, blueprint_id: str) -> None:
        # MVCC lets concurrent transactions all count the same rows: a transaction-scoped advisory
        # lock per Blueprint makes the next heal start wait for this one's count and insert.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_heal_lock_key(blueprint_id),))

    def check_connection(self) -> str:
        """Connect once and return the server's version line; ConfigError when unreachable."""
        connection = self._connect()
        try:
            cursor = connection.cursor()
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0]}"
        finally:
            connection.close()
