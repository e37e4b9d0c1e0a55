"""The Dagster instance of DAGSTER_HOME, for the commands that read runs or write heals.

Its own module so the commands that need no instance (validate, compile, lineage) never import Dagster.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from aqueduct_dagster.errors import EnvironmentProblem


def dagster_instance(home: Path | None):
    """The Dagster instance of DAGSTER_HOME (`Settings.dagster_home`, passed in); a clean
    environment error when there is none. Dagster reads the same variable to open it."""
    if not home:
        raise EnvironmentProblem(
            "DAGSTER_HOME is not set, so there is no Dagster instance to read runs from or "
            "write heals to",
            hint="export DAGSTER_HOME=$PWD/.dagster_home (a folder holding dagster.yaml; "
            "`make dev` uses .dagster_home)",
        )
    if not Path(home).is_dir():
        raise EnvironmentProblem(
            f"DAGSTER_HOME={home} is not a folder", hint="create it and copy dagster.yaml there"
        )
    return dg.DagsterInstance.get()
