"""The code location `workspace.yaml` loads: every Blueprint under AQUEDUCT_BLUEPRINTS_DIR."""

from aqueduct_dagster.dagster import build_definitions

defs = build_definitions()
