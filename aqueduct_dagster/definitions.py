"""The code location `workspace.yaml` loads: every Blueprint under AQUEDUCT_BLUEPRINTS_DIR."""

from aqueduct_dagster.dagster.factory import load_code_location

defs = load_code_location()
