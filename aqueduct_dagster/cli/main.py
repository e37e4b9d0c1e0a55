"""The `aqueduct` command group: each command lives in its own module and loads when it runs.

Loading a command's module only when it is asked for keeps `aqueduct validate` free of
Dagster and Spark imports, while every module still imports what it needs at its top.
"""

from __future__ import annotations

import importlib

import click

from aqueduct_dagster.cli.boundary import Boundary

#: Command name -> (module under aqueduct_dagster.cli, the click command in it).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "validate"),
    "compile": ("manifest", "compile_command"),
    "lineage": ("manifest", "lineage"),
    "run": ("run", "run_command"),
    "runs": ("runs", "runs"),
    "depot": ("runs", "depot"),
    "heal": ("heal", "heal"),
    "test": ("aqtest", "test_command"),
    "patch": ("patch", "patch"),
    "benchmark": ("benchmark", "benchmark_command"),
    "doctor": ("doctor", "doctor_command"),
    "spark": ("spark", "spark_command"),
    "jars": ("jars", "jars_command"),
}


class _Commands(Boundary):
    """The error boundary, with commands looked up in COMMANDS on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name]
        return getattr(importlib.import_module(f"aqueduct_dagster.cli.{module}"), attribute)


@click.group(cls=_Commands)
@click.version_option(package_name="aqueduct-dagster")
def main() -> None:
    """Self-healing declarative Spark pipelines on Dagster."""


if __name__ == "__main__":  # pragma: no cover
    main()
