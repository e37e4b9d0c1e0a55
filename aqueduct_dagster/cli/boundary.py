"""The error boundary of the `aqueduct` command line.

Every command runs inside it (`Boundary.invoke`), so whatever goes wrong
ends in one line on stderr and one of these exit codes, never in a traceback:

0 success; 1 the work ran and failed (a failed run, heal or test); 2 bad input (an invalid
Blueprint or aqueduct.yml, a missing file, something asked for that does not exist, bad
options); 3 environment problem (DAGSTER_HOME, Java, Spark, a server); 4 internal error (a
bug: rerun with AQUEDUCT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from aqueduct_dagster.errors import AqueductError, ConfigError, EngineError, EnvironmentProblem
from aqueduct_dagster.settings import debug_enabled

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL = 1, 2, 3, 4


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error that ended a command."""
    if isinstance(error, (EnvironmentProblem,)) or type(error).__name__ == "DagsterHomeNotSetError":
        return EXIT_ENVIRONMENT
    if isinstance(error, EngineError):
        return EXIT_FAILED
    if isinstance(error, (AqueductError, ConfigError, OSError)):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def describe(error: BaseException) -> str:
    """One message for any error: project errors render themselves, others get a fix."""
    if isinstance(error, AqueductError):
        return str(error)
    if type(error).__name__ == "DagsterHomeNotSetError":
        return (
            "DAGSTER_HOME is not set, so there is no Dagster instance to read runs from or "
            "write heals to\n  hint: export DAGSTER_HOME=$PWD/.dagster_home (a folder holding "
            "dagster.yaml; `make dev` uses .dagster_home)"
        )
    if isinstance(error, OSError):
        name = error.filename if error.filename is not None else ""
        return f"{name}: {error.strerror or error}" if name else str(error)
    first = str(error).splitlines()[0] if str(error) else ""
    return (
        f"internal error: {type(error).__name__}: {first}\n"
        "  hint: this is a bug in aqueduct; rerun with AQUEDUCT_DEBUG=1 for the traceback"
    )


class Boundary(click.Group):
    """Maps every error a command raises to a message and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.secho("interrupted", fg="red", err=True)
            sys.exit(130)
        except RecursionError as error:  # a bug: a limit should have caught the input first
            _report(error)
        except Exception as error:  # noqa: BLE001 - the boundary: one line, never a traceback
            _report(error)


def _report(error: BaseException) -> None:
    if debug_enabled():
        traceback.print_exception(error)
    click.secho(f"error: {describe(error)}", fg="red", err=True)
    sys.exit(exit_code_for(error))
