"""Run tags the framework sets and reads (sensors find a run's Blueprint through them)."""

from __future__ import annotations

from collections.abc import Collection

import dagster as dg

BLUEPRINT_TAG = "aqueduct/blueprint"
BLUEPRINT_PATH_TAG = "aqueduct/blueprint_path"
HEAL_TAG = "aqueduct/heal_of"


def is_blueprint_run(run: dg.DagsterRun, job_names: Collection[str]) -> bool:
    """A run of one of these Blueprint jobs (not a heal or approval run, which carry the
    Blueprint's tag too). The sensors watch runs of every origin, so they ask this."""
    return run.job_name in job_names and bool(run.tags.get(BLUEPRINT_TAG))
