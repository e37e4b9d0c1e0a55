"""The framework's own state behind one small interface: heals, turns, patches, failures.

One SQL schema serves every backend. DuckDB (the embedded default) allows one writing process
at a time, and the Dagster daemon, run workers and the CLI all write: so a connection is held
only for the length of one operation, and a lock conflict is retried with backoff instead of
failing the caller.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

SCHEMA_VERSION = 2

#: Upgrades from each older version, in order; each statement runs on DuckDB and PostgreSQL alike.
MIGRATIONS: dict[int, list[str]] = {
    # 2: the digest of each staged patch record, checked before the patch is applied.
    2: ["ALTER TABLE aq_patches ADD COLUMN IF NOT EXISTS record_sha256 VARCHAR"],
}

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS aq_schema_version (version INTEGER NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS aq_failures (
        heal_id VARCHAR PRIMARY KEY, blueprint_id VARCHAR NOT NULL, run_id VARCHAR,
        module_id VARCHAR, signature VARCHAR, package_json VARCHAR, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS aq_heal_attempts (
        heal_id VARCHAR PRIMARY KEY, blueprint_id VARCHAR NOT NULL, run_id VARCHAR,
        signature VARCHAR, outcome VARCHAR, patch_id VARCHAR, stop_reason VARCHAR,
        started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS aq_heal_turns (
        turn_id VARCHAR PRIMARY KEY, heal_id VARCHAR NOT NULL, turn INTEGER NOT NULL,
        diagnoser VARCHAR NOT NULL, prompt_version VARCHAR, signature VARCHAR,
        patch_json VARCHAR, rejected_by VARCHAR, message VARCHAR,
        input_tokens INTEGER, output_tokens INTEGER, latency_ms INTEGER, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS aq_patches (
        patch_id VARCHAR PRIMARY KEY, blueprint_id VARCHAR NOT NULL, signature VARCHAR,
        status VARCHAR NOT NULL, path VARCHAR, heal_id VARCHAR, updated_at TIMESTAMP NOT NULL,
        record_sha256 VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS aq_module_metrics (
        run_id VARCHAR NOT NULL, blueprint_id VARCHAR NOT NULL, module_id VARCHAR NOT NULL,
        module_type VARCHAR, status VARCHAR NOT NULL, duration_ms INTEGER, rows_written BIGINT,
        detail_json VARCHAR, recorded_at TIMESTAMP NOT NULL, PRIMARY KEY (run_id, module_id))""",
    """CREATE TABLE IF NOT EXISTS aq_column_lineage (
        blueprint_id VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, module_id VARCHAR NOT NULL,
        column_name VARCHAR NOT NULL, source_module VARCHAR NOT NULL, source_column VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS aq_depot (
        namespace VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR, run_id VARCHAR,
        committed BOOLEAN NOT NULL, updated_at TIMESTAMP NOT NULL, PRIMARY KEY (namespace, key, committed))""",
    """CREATE TABLE IF NOT EXISTS aq_benchmark_results (
        result_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, scenario_id VARCHAR NOT NULL,
        healer VARCHAR NOT NULL, passed BOOLEAN NOT NULL, attempts INTEGER, input_tokens INTEGER,
        output_tokens INTEGER, duration_ms INTEGER, stop_reason VARCHAR, details_json VARCHAR,
        recorded_at TIMESTAMP NOT NULL)""",
]


def utc_now() -> datetime:
    # Stored naive in UTC: DuckDB and PostgreSQL TIMESTAMP columns agree on that.
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class HealTurn:
    heal_id: str
    turn: int
    diagnoser: str
    signature: str | None = None
    prompt_version: str | None = None
    patch_json: str | None = None
    rejected_by: str | None = None
    message: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: int | None = None
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Store(ABC):
    """SQL-backed state; subclasses supply connections and the parameter style."""

    placeholder = "?"
    lock_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._migrated = False

    @abstractmethod
    def _connect(self) -> Any: ...

    @property
    @abstractmethod
    def description(self) -> str: ...

    @contextmanager
    def _connection(self, attempts: int = 40) -> Iterator[Any]:
        delay = 0.05
        for attempt in range(attempts):
            try:
                connection = self._connect()
                break
            except self.lock_errors:
                if attempt == attempts - 1:
                    raise
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 1.5, 1.0)
        try:
            yield connection
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder) if self.placeholder != "?" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        self.migrate()
        return self._run(statement, params)

    def _run(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(self._sql(statement), tuple(params))
            try:
                return list(cursor.fetchall())
            except Exception:  # noqa: BLE001 - statements without a result set
                return []

    def execute_atomically(self, steps: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run `steps` in one transaction: all of them take effect, or none."""
        self.migrate()
        with self._connection() as connection:
            cursor = connection.cursor()
            for statement, params in steps:
                cursor.execute(self._sql(statement), tuple(params))

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to call from concurrent processes."""
        if self._migrated:
            return
        with self._connection() as connection:
            cursor = connection.cursor()
            self._migration_lock(cursor)
            for statement in SCHEMA:
                cursor.execute(statement)
            cursor.execute("SELECT version FROM aq_schema_version")
            rows = cursor.fetchall()
            if not rows:
                cursor.execute(self._sql("INSERT INTO aq_schema_version VALUES (?)"), (SCHEMA_VERSION,))
            elif int(rows[0][0]) < SCHEMA_VERSION:
                for version in range(int(rows[0][0]) + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS.get(version, []):
                        cursor.execute(statement)
                cursor.execute(self._sql("UPDATE aq_schema_version SET version = ?"), (SCHEMA_VERSION,))
        self._migrated = True

    def schema_version(self) -> int:
        return int(self.execute("SELECT MAX(version) FROM aq_schema_version")[0][0])

    def _migration_lock(self, cursor: Any) -> None:  # noqa: B027 - optional hook, empty by default
        """Serialise concurrent migrations inside the migration's transaction.

        Nothing to do where a connection already excludes other writers (DuckDB's file lock).
        """

    # ------------------------------------------------------------------ failures and heals

    def record_failure(self, heal_id: str, blueprint_id: str, run_id: str | None, module_id: str,
                       signature: str, package: dict[str, Any]) -> None:  # fmt: skip
        self.execute(
            "INSERT INTO aq_failures VALUES (?, ?, ?, ?, ?, ?, ?)",
            (heal_id, blueprint_id, run_id, module_id, signature, json.dumps(package, default=str), utc_now()),
        )

    def start_heal(self, heal_id: str, blueprint_id: str, run_id: str | None, signature: str) -> None:
        self.execute(
            "INSERT INTO aq_heal_attempts (heal_id, blueprint_id, run_id, signature, outcome, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (heal_id, blueprint_id, run_id, signature, "running", utc_now()),
        )

    def finish_heal(self, heal_id: str, outcome: str, *, patch_id: str | None = None,
                    stop_reason: str | None = None) -> None:  # fmt: skip
        self.execute(
            "UPDATE aq_heal_attempts SET outcome = ?, patch_id = ?, stop_reason = ?, finished_at = ? "
            "WHERE heal_id = ?",
            (outcome, patch_id, stop_reason, utc_now(), heal_id),
        )

    def try_start_heal(self, heal_id: str, blueprint_id: str, run_id: str | None, signature: str, *,
                       limit: int | None, window: timedelta) -> bool:  # fmt: skip
        """Record a heal of `blueprint_id` unless `limit` heals started within `window`; True when recorded.

        The count and the insert are one transaction under a per-Blueprint lock, so heals starting
        at the same moment in several processes cannot all see room for one more.
        """
        self.migrate()
        with self._heal_serialization(), self._connection() as connection:
            cursor = connection.cursor()
            self._heal_lock(cursor, blueprint_id)
            if limit is not None:
                cursor.execute(
                    self._sql("SELECT COUNT(*) FROM aq_heal_attempts WHERE blueprint_id = ? AND started_at >= ?"),
                    (blueprint_id, utc_now() - window),
                )
                if int(cursor.fetchall()[0][0]) >= limit:
                    return False
            cursor.execute(
                self._sql("INSERT INTO aq_heal_attempts (heal_id, blueprint_id, run_id, signature, outcome, "
                          "started_at) VALUES (?, ?, ?, ?, ?, ?)"),
                (heal_id, blueprint_id, run_id, signature, "running", utc_now()),
            )  # fmt: skip
            return True

    @contextmanager
    def _heal_serialization(self) -> Iterator[None]:
        """Held around `try_start_heal`'s transaction in this process (backends add their own lock)."""
        yield

    def _heal_lock(self, cursor: Any, blueprint_id: str) -> None:  # noqa: B027 - optional hook
        """Serialise heal starts of one Blueprint across processes, inside the transaction.

        Nothing to do where a connection already excludes other writers (DuckDB's file lock).
        """

    def heal_attempts_since(self, blueprint_id: str, since: timedelta) -> int:
        rows = self.execute(
            "SELECT COUNT(*) FROM aq_heal_attempts WHERE blueprint_id = ? AND started_at >= ?",
            (blueprint_id, utc_now() - since),
        )
        return int(rows[0][0])

    def heal_attempts(self, blueprint_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE blueprint_id = ?", (blueprint_id,)) if blueprint_id else ("", ())
        rows = self.execute(
            "SELECT heal_id, blueprint_id, run_id, signature, outcome, patch_id, stop_reason, started_at "
            f"FROM aq_heal_attempts {where} ORDER BY started_at",
            params,
        )
        keys = ("heal_id", "blueprint_id", "run_id", "signature", "outcome", "patch_id", "stop_reason", "started_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def record_turn(self, turn: HealTurn) -> None:
        self.execute(
            "INSERT INTO aq_heal_turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (turn.turn_id, turn.heal_id, turn.turn, turn.diagnoser, turn.prompt_version, turn.signature,
             turn.patch_json, turn.rejected_by, turn.message, turn.input_tokens, turn.output_tokens,
             turn.latency_ms, utc_now()),
        )  # fmt: skip

    def turns(self, heal_id: str) -> list[dict[str, Any]]:
        rows = self.execute(
            "SELECT turn, diagnoser, prompt_version, signature, patch_json, rejected_by, message, "
            "input_tokens, output_tokens, latency_ms FROM aq_heal_turns WHERE heal_id = ? ORDER BY turn",
            (heal_id,),
        )
        keys = ("turn", "diagnoser", "prompt_version", "signature", "patch_json", "rejected_by", "message",
                "input_tokens", "output_tokens", "latency_ms")  # fmt: skip
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ patch index

    def index_patch(self, patch_id: str, blueprint_id: str, signature: str | None, status: str,
                    path: str | None, heal_id: str | None = None, record_sha256: str | None = None) -> None:  # fmt: skip
        """Index a patch; `record_sha256` is the digest of its staged record, checked before applying."""
        self.execute_atomically([
            ("DELETE FROM aq_patches WHERE patch_id = ?", (patch_id,)),
            ("INSERT INTO aq_patches (patch_id, blueprint_id, signature, status, path, heal_id, updated_at, "
             "record_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             (patch_id, blueprint_id, signature, status, path, heal_id, utc_now(), record_sha256)),
        ])  # fmt: skip

    def set_patch_status(self, patch_id: str, status: str, path: str | None = None) -> None:
        if path is None:
            self.execute("UPDATE aq_patches SET status = ?, updated_at = ? WHERE patch_id = ?",
                         (status, utc_now(), patch_id))  # fmt: skip
        else:
            self.execute("UPDATE aq_patches SET status = ?, path = ?, updated_at = ? WHERE patch_id = ?",
                         (status, path, utc_now(), patch_id))  # fmt: skip

    def patch(self, patch_id: str) -> dict[str, Any] | None:
        """One indexed patch with its record digest, or None."""
        rows = self.execute(
            "SELECT patch_id, blueprint_id, signature, status, path, heal_id, record_sha256 FROM aq_patches "
            "WHERE patch_id = ?",
            (patch_id,),
        )
        keys = ("patch_id", "blueprint_id", "signature", "status", "path", "heal_id", "record_sha256")
        return dict(zip(keys, rows[0], strict=True)) if rows else None

    def pending_patch_for(self, blueprint_id: str, signature: str) -> str | None:
        rows = self.execute(
            "SELECT patch_id FROM aq_patches WHERE blueprint_id = ? AND signature = ? AND status = 'pending' "
            "ORDER BY updated_at DESC",
            (blueprint_id, signature),
        )
        return rows[0][0] if rows else None

    def patches(self, blueprint_id: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE blueprint_id = ?", (blueprint_id,)) if blueprint_id else ("", ())
        rows = self.execute(
            f"SELECT patch_id, blueprint_id, signature, status, path, heal_id FROM aq_patches {where} ORDER BY updated_at",
            params,
        )
        keys = ("patch_id", "blueprint_id", "signature", "status", "path", "heal_id")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ runs and modules

    def record_module_metric(self, *, run_id: str, blueprint_id: str, module_id: str, module_type: str,
                             status: str, duration_ms: int, rows_written: int | None = None,
                             detail: dict[str, Any] | None = None) -> None:  # fmt: skip
        """One module of one run (a retried module keeps its last attempt): one transaction,
        so the attempt is replaced, never lost, and the store is opened once."""
        self.execute_atomically([
            ("DELETE FROM aq_module_metrics WHERE run_id = ? AND module_id = ?", (run_id, module_id)),
            ("INSERT INTO aq_module_metrics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (run_id, blueprint_id, module_id, module_type, status, duration_ms, rows_written,
              json.dumps(detail or {}, default=str), utc_now())),
        ])  # fmt: skip

    def module_metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.execute(
            "SELECT module_id, module_type, status, duration_ms, rows_written FROM aq_module_metrics "
            "WHERE run_id = ? ORDER BY recorded_at, module_id",
            (run_id,),
        )
        keys = ("module_id", "module_type", "status", "duration_ms", "rows_written")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def run_evidence(self, blueprint_id: str, run_ids: Sequence[str]) -> tuple[str, dict[str, dict[str, Any]]] | None:
        """(run id, {module id: detail}) of the first of `run_ids` (newest first: the caller's
        successful runs) that recorded evidence (Ingress snapshots, Egress contracts)."""
        for run_id in run_ids:
            rows = self.execute(
                "SELECT module_id, detail_json FROM aq_module_metrics "
                "WHERE blueprint_id = ? AND run_id = ? AND status = 'success'",
                (blueprint_id, run_id),
            )
            evidence = {}
            for module_id, detail in rows:
                parsed = json.loads(detail or "{}")
                if isinstance(parsed, dict) and {"columns", "snapshot", "contract"} & set(parsed):
                    evidence[module_id] = parsed
            if evidence:
                return run_id, evidence
        return None

    def runs(self, blueprint_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Runs seen by the store, newest first, with per-run module counts."""
        where, params = ("WHERE blueprint_id = ?", (blueprint_id,)) if blueprint_id else ("", ())
        rows = self.execute(
            "SELECT run_id, blueprint_id, MIN(recorded_at) AS started, "
            "SUM(CASE WHEN status = 'success' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN status = 'failure' THEN 1 ELSE 0 END), SUM(duration_ms) "
            f"FROM aq_module_metrics {where} GROUP BY run_id, blueprint_id ORDER BY started DESC LIMIT {int(limit)}",
            params,
        )
        keys = ("run_id", "blueprint_id", "started_at", "modules_ok", "modules_failed", "duration_ms")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ column lineage

    def record_lineage(self, blueprint_id: str, fingerprint: str, edges: list[tuple[str, str, str, str]]) -> None:
        """(module, column, source module, source column) edges of one compiled Blueprint
        version, once: all of them in one transaction (the store opened once, not per edge)."""
        self.migrate()
        with self._connection() as connection:
            cursor = connection.cursor()
            cursor.execute(
                self._sql("SELECT COUNT(*) FROM aq_column_lineage WHERE blueprint_id = ? AND fingerprint = ?"),
                (blueprint_id, fingerprint),
            )
            if cursor.fetchall()[0][0]:
                return
            insert = self._sql("INSERT INTO aq_column_lineage VALUES (?, ?, ?, ?, ?, ?)")
            for module_id, column, source_module, source_column in edges:
                cursor.execute(insert, (blueprint_id, fingerprint, module_id, column, source_module, source_column))

    def lineage(self, blueprint_id: str, fingerprint: str) -> list[tuple[str, str, str, str]]:
        rows = self.execute(
            "SELECT module_id, column_name, source_module, source_column FROM aq_column_lineage "
            "WHERE blueprint_id = ? AND fingerprint = ? ORDER BY module_id, column_name, source_module",
            (blueprint_id, fingerprint),
        )
        return [tuple(row) for row in rows]

    # ------------------------------------------------------------------ depot (key/values, watermarks)

    def depot_stage(self, namespace: str, values: dict[str, str], run_id: str) -> None:
        """Write a run's values; readers see them only once the run commits them."""
        steps: list[tuple[str, Sequence[Any]]] = []
        for key, value in values.items():
            steps.append(("DELETE FROM aq_depot WHERE namespace = ? AND key = ? AND committed = ?", (namespace, key, False)))
            steps.append(("INSERT INTO aq_depot VALUES (?, ?, ?, ?, ?, ?)", (namespace, key, value, run_id, False, utc_now())))
        self.execute_atomically(steps)

    def depot_commit(self, namespace: str, run_id: str) -> int:
        """Promote the values a (successful) run staged, all in one transaction; returns how many."""
        staged = self.execute(
            "SELECT key, value FROM aq_depot WHERE namespace = ? AND run_id = ? AND committed = ?",
            (namespace, run_id, False),
        )
        steps: list[tuple[str, Sequence[Any]]] = []
        for key, value in staged:
            steps.append(("DELETE FROM aq_depot WHERE namespace = ? AND key = ?", (namespace, key)))
            steps.append(("INSERT INTO aq_depot VALUES (?, ?, ?, ?, ?, ?)", (namespace, key, value, run_id, True, utc_now())))
        self.execute_atomically(steps)
        return len(staged)

    def depot_discard(self, namespace: str, run_id: str) -> None:
        self.execute("DELETE FROM aq_depot WHERE namespace = ? AND run_id = ? AND committed = ?", (namespace, run_id, False))

    def depot_staged_runs(self, namespace: str) -> list[str]:
        """Runs whose staged values wait for their outcome (commit or discard)."""
        rows = self.execute(
            "SELECT DISTINCT run_id FROM aq_depot WHERE namespace = ? AND committed = ? ORDER BY run_id",
            (namespace, False),
        )
        return [row[0] for row in rows]

    def depot_items(self, namespace: str) -> list[tuple[str, str | None, str | None, bool]]:
        """(key, value, run id, committed) of every row in `namespace`."""
        rows = self.execute(
            "SELECT key, value, run_id, committed FROM aq_depot WHERE namespace = ? ORDER BY key, committed DESC",
            (namespace,),
        )
        return [(row[0], row[1], row[2], bool(row[3])) for row in rows]

    def depot_get(self, namespace: str, key: str, default: str | None = None) -> str | None:
        rows = self.execute(
            "SELECT value FROM aq_depot WHERE namespace = ? AND key = ? AND committed = ?", (namespace, key, True)
        )
        return rows[0][0] if rows else default

    # ------------------------------------------------------------------ benchmark

    def record_benchmark(self, *, run_id: str, scenario_id: str, healer: str, passed: bool,
                         attempts: int, input_tokens: int, output_tokens: int, duration_ms: int,
                         stop_reason: str, details: dict[str, Any]) -> None:  # fmt: skip
        """One scenario of one `aqueduct benchmark` run (healer: "rules" or provider/model)."""
        self.execute(
            "INSERT INTO aq_benchmark_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, run_id, scenario_id, healer, passed, attempts, input_tokens, output_tokens,
             duration_ms, stop_reason, json.dumps(details, default=str), utc_now()),
        )  # fmt: skip
