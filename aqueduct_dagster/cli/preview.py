"""`aqueduct patch preview PATCH.json --blueprint BLUEPRINT [--sandbox] [--json]`.

Runs the gates on a patch file without staging or applying anything and prints each gate's
verdict. Exit 0 when every gate passes, 1 when one rejects, 2 on bad input (an unreadable or
invalid patch file, a PatchSpec that does not validate, a missing Blueprint) and 3 when the
environment (aqueduct.yml) is broken.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from aqueduct_dagster.errors import AqueductError, ConfigError
from aqueduct_dagster.healing.preview import PreviewInputError, preview_patch
from aqueduct_dagster.settings import current_settings

EXIT_PASSED, EXIT_REJECTED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 0, 1, 2, 3

_ORDER = ("guardrails", "compile", "effect", "lineage", "sandbox")


@click.command("preview")
@click.argument("patch_file", metavar="PATCH.json", type=click.Path(path_type=Path))
@click.option("--blueprint", "blueprint", required=True, type=click.Path(path_type=Path),
              help="The Blueprint the patch is for (its file as it is now).")  # fmt: skip
@click.option("--sandbox", is_flag=True, help="Also replay the patched pipeline on sampled input (Spark).")
@click.option("--json", "as_json", is_flag=True, help="The verdicts as JSON.")
def preview_command(patch_file: Path, blueprint: Path, sandbox: bool, as_json: bool) -> None:
    """Judge a patch file with the gates; nothing is staged or written."""
    try:
        settings = current_settings()
    except ConfigError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_ENVIRONMENT)
    try:
        report = preview_patch(patch_file, blueprint, sandbox=sandbox, settings=settings)
    except PreviewInputError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except AqueductError as error:  # pragma: no cover - the gates answer verdicts, not errors
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"patch      {report.patch_id}")
        click.echo(f"blueprint  {report.blueprint_path}")
        for result in report.results:
            if result.passed:
                note = f"  ({result.message})" if result.message else ""
                click.secho(f"PASS    {result.gate}{note}", fg="yellow" if result.escalate else "green")
            else:
                click.secho(f"REJECT  {result.gate}: {result.message}", fg="red")
        ran = {r.gate for r in report.results}
        later = [g for g in _ORDER if g not in ran and (g != "sandbox" or sandbox)]
        if report.rejected_by is not None and later:
            click.echo(f"not run  {', '.join(later)}")
    sys.exit(EXIT_PASSED if report.passed else EXIT_REJECTED)
