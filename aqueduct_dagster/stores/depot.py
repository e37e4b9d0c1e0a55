"""The Depot of one Blueprint: cross-run key/values and watermarks, kept in the store.

A run never changes what other runs read: it *stages* its values under its run id, and
they are committed only once the run is known to have succeeded as a whole (a failed or
cancelled run's values are discarded). That is how an incremental Channel's watermark
advances only when every module of the run succeeded. Who knows a run's outcome differs:
the engine runner commits at the end of its own run; under Dagster, the next run that reads
the Depot asks the instance for the outcome of every run that left values staged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aqueduct_dagster.blueprint.depot import bind_depot
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.stores.base import Store

log = logging.getLogger(__name__)

R = TypeVar("R")

#: A run id -> "success", "failure" (failed or cancelled), "unknown" (the deciding system has
#: no record of it) or None (still running: leave its values staged).
Outcome = Callable[[str], "str | None"]


class Depot:
    """Committed and staged Depot values of one Blueprint (its id is the namespace)."""

    def __init__(self, store: Store, blueprint_id: str) -> None:
        self.store = store
        self.namespace = blueprint_id

    def get(self, key: str) -> str | None:
        return self.store.depot_get(self.namespace, key)

    def stage(self, run_id: str, values: dict[str, str]) -> None:
        if values:
            self.store.depot_stage(self.namespace, values, run_id)

    def commit(self, run_id: str) -> int:
        return self.store.depot_commit(self.namespace, run_id)

    def discard(self, run_id: str) -> None:
        self.store.depot_discard(self.namespace, run_id)

    def settle(self, outcome: Outcome, *, current_run: str | None = None) -> dict[str, str]:
        """Commit or discard what earlier runs staged, by their outcome; run id -> action."""
        actions: dict[str, str] = {}
        for run_id in self.store.depot_staged_runs(self.namespace):
            if run_id == current_run:
                continue
            result = outcome(run_id)
            if result == "success":
                count = self.commit(run_id)
                actions[run_id] = f"committed {count}"
            elif result in ("failure", "unknown"):
                if result == "unknown":
                    # Success cannot be shown, and re-reading a slice is safer than skipping
                    # one. Typically a run on a temporary Dagster instance: set DAGSTER_HOME.
                    log.warning(
                        "Depot of '%s': run %s is unknown to the Dagster instance; its staged "
                        "values are discarded (set DAGSTER_HOME so runs share one instance)",
                        self.namespace,
                        run_id,
                    )
                self.discard(run_id)
                actions[run_id] = "discarded"
            else:
                log.warning(
                    "Depot of '%s': run %s has not finished; its values stay staged and this "
                    "run reads the last committed ones",
                    self.namespace,
                    run_id,
                )
        return actions

    def run(self, manifest: Manifest, run_id: str, execute: Callable[[Manifest], R]) -> R:
        """Run `execute` on `manifest` with the Depot bound; keep its values only if it succeeds.

        For callers that see the whole run themselves (the engine runner): `execute` returns
        something with a `depot` mapping (a RunResult); any exception discards the run's values.
        """
        bound = bind_depot(manifest, self.get)
        try:
            result = execute(bound)
        except BaseException:
            self.discard(run_id)
            raise
        values: Any = getattr(result, "depot", None) or {}
        self.stage(run_id, dict(values))
        self.commit(run_id)
        return result
