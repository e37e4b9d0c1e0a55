"""The `aqueduct` command line (entry point `aqueduct_dagster.cli:main`)."""

from aqueduct_dagster.cli.main import main

__all__ = ["main"]
