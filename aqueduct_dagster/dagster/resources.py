"""The run's SparkSession, as a Dagster resource.

One SparkSession per run: the base session is created on first use (with the Blueprint's
engine block) and every run works in its own session (`newSession()` on a classic JVM, a new
server-side session on Spark Connect), so temp views and SQL conf never leak between runs
that share a JVM (tests, a warm server).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from aqueduct_dagster.blueprint.manifest import Manifest

_log = logging.getLogger(__name__)


class SparkResource(dg.ConfigurableResource):
    """Gives assets the SparkSession of the current run."""

    master: str | None = None
    state_dir: str = ".aqueduct"

    _session: Any = PrivateAttr(default=None)
    _bound: dict[tuple[str, str], Manifest] = PrivateAttr(default_factory=dict)
    _store: Any = PrivateAttr(default=None)
    _lineage_recorded: set[str] = PrivateAttr(default_factory=set)
    _started_at: datetime | None = PrivateAttr(default=None)
    _writer: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _store_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    #: Why the store did not open on the writer thread, for the run's log.
    _store_problems: list[Exception] = PrivateAttr(default_factory=list)

    def bound_manifest(
        self,
        manifest: Manifest,
        run_id: str,
        prev_run_id: str | None,
        instance: dg.DagsterInstance | None = None,
        partition_key: str | None = None,
    ) -> Manifest:
        """The Manifest bound for this run, once per run: run tokens (`@aq.run.*`,
        `@aq.date.*`), then Depot reads (`@aq.depot.get`, `${ctx._watermark}`).

        Before reading the Depot, values staged by earlier runs are settled by their outcome
        in the Dagster instance: committed if the run succeeded, discarded if it failed.
        """
        from aqueduct_dagster.blueprint import RunInfo, bind_runtime
        from aqueduct_dagster.blueprint.depot import bind_depot, uses_depot

        if self._started_at is None:
            self._started_at = datetime.now(UTC)
        key = (manifest.fingerprint or manifest.blueprint_id, run_id)
        if key not in self._bound:
            from aqueduct_dagster.dagster.scheduling import logical_start

            run = RunInfo(run_id=run_id, started_at=self._started_at, prev_run_id=prev_run_id,
                          partition_key=partition_key, logical_at=logical_start(manifest, partition_key))  # fmt: skip
            bound = bind_runtime(manifest, run)
            if uses_depot(bound):
                depot = self.depot(bound)
                depot.settle(run_outcome_in(instance), current_run=run_id)
                bound = bind_depot(bound, depot.get)
            self._bound[key] = bound
        return self._bound[key]

    def depot(self, manifest: Manifest) -> Any:
        """The Blueprint's Depot in the framework store (errors propagate: state must not be lost)."""
        from aqueduct_dagster.stores.depot import Depot

        return Depot(self._framework_store(), manifest.blueprint_id)

    def _framework_store(self) -> Any:
        # The writer thread and a step (the Depot) may both ask first: one store per run.
        with self._store_lock:
            if self._store is None:
                from aqueduct_dagster.config import load_config
                from aqueduct_dagster.stores import default_store

                config = load_config()
                self._store = default_store(config.state_path, config)
            return self._store

    def session_for(self, manifest: Manifest) -> Any:
        from aqueduct_dagster.engine.session import create_base_session, run_session
        from aqueduct_dagster.engine.udfs import register_udfs

        if self._session is None:
            base = create_base_session(
                manifest.engine, master=self.master, state_dir=Path(self.state_dir)
            )
            # One run is one Blueprint: its runtime conf applies to this run's session only.
            self._session = run_session(base, manifest.engine.spark.conf)
            register_udfs(self._session, manifest)
        return self._session

    def record(self, log: Any, manifest: Manifest, write: Any) -> None:
        """Write run facts to the framework store, off the step's path: opening the store
        (importing its driver, connecting) and each write happen on a writer thread; the
        run's end waits for them. A store problem never fails a pipeline: a store that does
        not open is a warning in the run's log, on the next step that records, or at the
        run's end."""
        self._warn_unopened_store(log)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aqueduct-store")
        self._writer.submit(self._write_facts, manifest, write)

    def _warn_unopened_store(self, log: Any) -> None:
        with self._store_lock:
            problems, self._store_problems = self._store_problems, []
        for error in problems:
            (log or _log).warning(f"could not record run facts in the aqueduct store: {error}")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """The run's end: pending store writes finish; a Spark Connect run session is
        released on the server (a classic one holds nothing of its own)."""
        from aqueduct_dagster.engine.session import release_run_session

        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
            self._warn_unopened_store(getattr(context, "log", None))
        if self._session is not None:
            release_run_session(self._session)
            self._session = None

    def _write_facts(self, manifest: Manifest, write: Any) -> None:
        try:
            store = self._framework_store()
        except Exception as error:  # noqa: BLE001 - observability must not break the run
            with self._store_lock:
                self._store_problems.append(error)
            return
        try:
            if manifest.fingerprint not in self._lineage_recorded:
                edges = [
                    (module.id, column, source.module, source.column)
                    for module in manifest.modules.values()
                    for column, sources in module.column_lineage.items()
                    for source in sources
                ]
                store.record_lineage(manifest.blueprint_id, manifest.fingerprint, edges)
                self._lineage_recorded.add(manifest.fingerprint)
            write(store)
        except Exception as error:  # noqa: BLE001 - observability must not break the run
            # Not the step's Dagster log: that step may be over by now.
            _log.warning("could not record run facts in the aqueduct store: %s", error)


def run_outcome_in(instance: dg.DagsterInstance | None):
    """A run id -> its outcome for the Depot, read from the Dagster instance."""
    finished_ok = {dg.DagsterRunStatus.SUCCESS}
    finished_bad = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

    def outcome(run_id: str) -> str | None:
        run = instance.get_run_by_id(run_id) if instance is not None else None
        if run is None:
            return "unknown"
        if run.status in finished_ok:
            return "success"
        return "failure" if run.status in finished_bad else None

    return outcome
