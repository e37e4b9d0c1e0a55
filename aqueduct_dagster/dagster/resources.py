"""The run's SparkSession, as a Dagster resource.

One SparkSession per run: the base session is created on first use (with the Blueprint's
engine block) and every run works in its own session (`newSession()` on a classic JVM, a new
server-side session on Spark Connect), so temp views and SQL conf never leak between runs
that share a JVM (tests, a warm server).

The resource carries what `Settings` resolved where the definitions were built
(`SparkResource.from_settings`), as plain fields: Dagster rebuilds a resource from its fields
for every run, so they are all it keeps.
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

from aqueduct_dagster.blueprint import RunInfo, bind_runtime
from aqueduct_dagster.blueprint.depot import bind_depot, uses_depot
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.config import AqueductConfig, load_config
from aqueduct_dagster.engine.session import (
    DEFAULT_STATE_DIR,
    create_base_session,
    release_run_session,
    run_session,
)
from aqueduct_dagster.engine.spark_conf import conf_text
from aqueduct_dagster.settings import Settings, master_by_precedence

_log = logging.getLogger(__name__)


class SparkResource(dg.ConfigurableResource):
    """Gives assets the SparkSession of the current run."""

    #: A master given to the code location (the Component's `spark_master`): beats a Blueprint's.
    master: str | None = None
    #: AQUEDUCT_SPARK_MASTER, else aqueduct.yml's: a Blueprint's engine.spark.master_url beats it.
    operator_master: str | None = None
    #: aqueduct.yml's engine.spark.conf: a Blueprint's conf beats it key by key.
    operator_conf: dict[str, str] = {}
    #: Absolute once built from Settings: warehouse, checkpoints, store, the managed server.
    state_dir: str = str(DEFAULT_STATE_DIR)
    jars_dir: str | None = None
    #: The aqueduct.yml the store's settings come from; None: none was read (defaults).
    config_path: str | None = None

    _session: Any = PrivateAttr(default=None)
    _bound: dict[tuple[str, str], Manifest] = PrivateAttr(default_factory=dict)
    _store: Any = PrivateAttr(default=None)
    _lineage_recorded: set[str] = PrivateAttr(default_factory=set)
    _started_at: datetime | None = PrivateAttr(default=None)
    _writer: ThreadPoolExecutor | None = PrivateAttr(default=None)
    _store_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    #: Why the store did not open on the writer thread, for the run's log.
    _store_problems: list[Exception] = PrivateAttr(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings, *, master: str | None = None) -> SparkResource:
        """The resource for runs under `settings`; `master` is an argument (beats a Blueprint's)."""
        return cls(
            master=master or settings.spark_master_argument,
            operator_master=settings.spark_master,
            operator_conf={str(key): conf_text(value) for key, value in settings.spark_conf.items()},
            state_dir=str(settings.state_dir),
            jars_dir=str(settings.jars_dir) if settings.jars_dir else None,
            config_path=str(settings.config_path) if settings.config_path else None,
        )

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve()

    def master_for(self, engine: EngineBlock | None) -> str:
        """argument > Blueprint > environment > aqueduct.yml > local[2], as `Settings.spark_master_for`."""
        blueprint = engine.spark.master_url if engine is not None else None
        return master_by_precedence(self.master, blueprint, self.operator_master)

    def base_session(self, engine: EngineBlock | None = None) -> Any:
        """The process's base session for a Blueprint with `engine` (None: not known, as when a
        checkpoint is read back before the step's Blueprint is)."""
        return create_base_session(
            master=self.master_for(engine),
            conf={**self.operator_conf, **(engine.spark.conf if engine is not None else {})},
            state_dir=self.state_path,
            jars_dir=Path(self.jars_dir) if self.jars_dir else None,
        )

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
                # Imported here, on the writer thread: the store's driver (duckdb, psycopg2) is
                # slow to import and the step must not wait for it.
                from aqueduct_dagster.stores import default_store

                # The file Settings chose, read again here: the resource keeps only plain fields.
                config = load_config(self.config_path) if self.config_path else AqueductConfig()
                self._store = default_store(self.state_path, config)
            return self._store

    def session_for(self, manifest: Manifest) -> Any:
        from aqueduct_dagster.engine.udfs import register_udfs

        if self._session is None:
            base = self.base_session(manifest.engine)
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
