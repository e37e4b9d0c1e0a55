"""`aqueduct test`: run *.aqtest.yml files (single modules against inline rows) on local Spark."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from aqueduct_dagster.cli.boundary import EXIT_BAD_INPUT, EXIT_FAILED
from aqueduct_dagster.cli.common import context_overrides
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.settings import current_settings
from aqueduct_dagster.testing import find_aqtests, run_aqtest_file


@click.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--blueprint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Use this blueprint instead of the one the aqtest file names.")
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
def test_command(paths: tuple[Path, ...], blueprint: Path | None, ctx: tuple[str, ...]) -> None:
    """Run *.aqtest.yml files: single modules against inline rows, on local Spark."""
    files = [f for p in paths for f in find_aqtests(p)]
    if not files:
        click.secho("no *.aqtest.yml files found", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    spark = run_session(current_settings().base_session(app_name="aqueduct-test"))
    passed = failed = 0
    for file in files:
        click.echo(f"{file}", err=True)
        results = run_aqtest_file(file, spark, blueprint=blueprint, context_overrides=context_overrides(ctx))
        for result in results:
            mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
            click.echo(f"  {mark}  {result.test_id}  ({result.module})")
            for failure in result.failures:
                click.echo(f"        {failure}")
            passed, failed = passed + result.passed, failed + (not result.passed)
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else EXIT_FAILED)
