"""The Dagster instance of DAGSTER_HOME, for the commands that read runs or write heals.

Its own module so the commands that need no instance (validate, compile, lineage) never import Dagster.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from aqueduct_dagster.errors import EnvironmentProblem


def dagster_instance():
    """The Dagster instance of DAGSTER_HOME; a clean environment error when there is none."""
    home = os.environ.get("DAGSTER_HOME")
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
