"""`aqueduct jars fetch|path`: the Delta Lake and JDBC jars Spark needs, resolved with Maven.

Exit codes (the CLI's): 0 ok; 3 Maven is missing or could not resolve the jars, or (path)
there are no jars yet.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from aqueduct_dagster.engine.jars import fetch_jars, jars_dir
from aqueduct_dagster.errors import ConfigError, EnvironmentProblem
from aqueduct_dagster.settings import current_settings


@click.group("jars")
def jars_command() -> None:
    """Fetch the JVM jars (Delta Lake, PostgreSQL JDBC) Spark runs with."""


@jars_command.command("fetch")
@click.option(
    "--dest",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to fill (default: the user cache the engine reads). "
    "Another folder needs AQUEDUCT_JARS_DIR at run time.",
)
@click.option("--offline", is_flag=True, help="Use only the local Maven repository (~/.m2).")
def jars_fetch(dest: Path | None, offline: bool) -> None:
    """Resolve the jars with Maven, once (runs never reach Maven)."""
    started = time.perf_counter()
    folder = fetch_jars(dest, offline=offline)
    count = len(list(folder.glob("*.jar")))
    click.echo(f"{count} jars in {folder} ({time.perf_counter() - started:.1f} s)")


@jars_command.command("path")
def jars_path() -> None:
    """Print the jars folder runs use (exit 3 when it holds no jars)."""
    try:
        click.echo(jars_dir(current_settings().jars_dir))
    except ConfigError as error:  # missing jars are this machine's state, not bad input
        raise EnvironmentProblem(error.message, hint=error.hint) from None
