"""`aqueduct run BLUEPRINT.yml` or `aqueduct run JOB`: one Dagster run, in this process.

The run goes to the Dagster instance of DAGSTER_HOME (so the UI, the heal sensor and the
Depot see it), or to a temporary instance with a warning when DAGSTER_HOME is unset. It
prints a line per module as its step ends and a summary. Relative data paths resolve
against the working directory, as Aqueduct resolves them: run it from the Blueprint's
folder, as the gallery READMEs do. Exit codes: 0 the run succeeded; 1 it failed; 2 bad
input (an invalid Blueprint, an unknown job, a bad option); 3 environment.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
import dagster as dg

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.cli.common import context_overrides
from aqueduct_dagster.cli.instance import dagster_instance
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.factory import find_blueprint_files, job_name_for
from aqueduct_dagster.dagster.loading import compile_folder
from aqueduct_dagster.dagster.translator import is_dagster_tag_key, safe_name
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.settings import Settings, current_settings

#: The Dagster logger key that prints the run's progress.
_PROGRESS_LOGGER = "aqueduct_progress"
_BLUEPRINT_SUFFIXES = (".yml", ".yaml")


@click.command("run")
@click.argument("target")
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None, help="Context profile to apply.")
@click.option("--tags", "tags", multiple=True, help="Dagster run tag KEY=VALUE (repeatable).")
def run_command(target: str, ctx: tuple[str, ...], profile: str | None, tags: tuple[str, ...]) -> None:
    """Run a Blueprint file, or a job of the blueprints folder, as one Dagster run.

    TARGET is a Blueprint file (blueprint.yml) or a job name (a Blueprint id in
    AQUEDUCT_BLUEPRINTS_DIR, else ./blueprints). Exit 0 when the run succeeds, 1 when it
    fails, 2 on bad input, 3 on an environment problem.
    """


    overrides = context_overrides(ctx)
    run_tags = _run_tags(tags)
    settings = current_settings()  # a bad aqueduct.yml is bad input (exit 2), not a failed first step
    manifest = _manifest_for(target, overrides, profile, settings.blueprints_dir)
    definitions = build_definitions(manifests=[manifest], strict=True, settings=settings)
    job = definitions.resolve_job_def(job_name_for(manifest))
    steps = _step_modules(manifest)
    progress = _Progress(steps)
    job = job.with_logger_defs({_PROGRESS_LOGGER: progress.logger_definition()})
    with ExitStack() as stack:
        instance, temporary = _instance(settings)
        stack.callback(instance.dispose)
        click.echo(f"run {manifest.blueprint_id} ({len(manifest.modules)} modules) from {manifest.source_path}")
        started = time.monotonic()
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            tags=run_tags,
            run_config={"loggers": {_PROGRESS_LOGGER: {"config": {}}}},
        )
        elapsed = time.monotonic() - started
    progress.never_ran(job.graph.node_names())
    status = dg.DagsterRunStatus.SUCCESS.value if result.success else dg.DagsterRunStatus.FAILURE.value
    where = "a temporary instance, not kept" if temporary else f"instance {instance.root_directory}"
    click.echo(f"{status}  run {result.run_id} of job {job.name}: {progress.summary()} in {elapsed:.1f} s ({where})")
    if not result.success:
        if not temporary:
            click.echo(f"  heal it: aqueduct heal --run-id {result.run_id}   (or see it in the Dagster UI)")
        sys.exit(1)


def _run_tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--tags")
        if not is_dagster_tag_key(key):
            raise click.BadParameter(
                f"'{key}' is not a Dagster tag key (letters, digits, '_', '-', '.', one '/' "
                "namespace, 63 characters a part)", param_hint="--tags",
            )  # fmt: skip
        tags[key] = value
    return tags


def _manifest_for(target: str, overrides: dict[str, str], profile: str | None, folder: Path) -> Any:
    """The compiled Blueprint TARGET names: a file, else a job of the blueprints folder."""
    path = Path(target)
    if path.is_file() or target.endswith(_BLUEPRINT_SUFFIXES) or os.sep in target:
        if not path.is_file():
            raise AqueductError(
                f"no Blueprint file {target}",
                hint="check the path (relative to the current folder), or give a job name",
            )
        return compile_blueprint(path, context_overrides=overrides, profile=profile)
    return _manifest_of_job(target, overrides, profile, folder)


def _manifest_of_job(job: str, overrides: dict[str, str], profile: str | None, folder: Path) -> Any:
    if not folder.is_dir():
        raise AqueductError(
            f"'{job}' is not a Blueprint file, and there is no blueprints folder ({folder}) to find "
            "a job of that name in",
            hint="give a Blueprint file (aqueduct run blueprint.yml) or set AQUEDUCT_BLUEPRINTS_DIR",
        )
    manifests, problems = compile_folder(find_blueprint_files(folder), overrides, profile)
    for manifest in manifests:
        if job_name_for(manifest) == job:
            return manifest
    known = sorted(job_name_for(m) for m in manifests)
    message = f"no job '{job}' in {folder}" + did_you_mean(job, known)
    if problems:
        message += f"\n  {len(problems)} Blueprint(s) there did not load:"
        message += "".join(f"\n  - {p.message.splitlines()[0]}" for p in problems)
    raise AqueductError(message, hint=f"jobs: {', '.join(known) or 'none'}")


def _instance(settings: Settings) -> tuple[Any, bool]:
    """(the Dagster instance, whether it is a temporary one)."""
    if settings.dagster_home:
        return dagster_instance(settings.dagster_home), False
    click.secho(
        "warning: DAGSTER_HOME is not set: this run uses a temporary Dagster instance (not in the "
        "UI, never healed, its Depot values discarded); export DAGSTER_HOME to keep runs",
        fg="yellow", err=True,
    )  # fmt: skip
    return dg.DagsterInstance.ephemeral(), True


def _step_modules(manifest: Any) -> dict[str, str]:
    """Dagster step key -> the module (or Arcade path) it runs."""
    return {
        safe_name(f"{manifest.blueprint_id}__{module.id}"): "/".join([*module.arcade, module.local_id])
        for module in manifest.modules.values()
    }


class _Progress:
    """Turns the run's Dagster events into one line per module step and a tally."""
    def __init__(self, steps: dict[str, str]) -> None:
        self.steps = steps
        self.counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        self.ended: set[str] = set()

    def logger_definition(self) -> Any:

        progress = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    progress.on_record(record)
                except Exception:  # noqa: BLE001 - printing progress must never break the run
                    self.handleError(record)

        @dg.logger(description="aqueduct run: one line per module step")
        def progress_logger(_init_context: Any) -> logging.Logger:
            logger = logging.Logger(_PROGRESS_LOGGER, level=logging.DEBUG)
            logger.addHandler(_Handler())
            return logger

        return progress_logger

    def on_record(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            # Dagster's own "Dependencies ... failed ... Not executing." is told as `skipped`.
            if record.levelno >= logging.WARNING and "Not executing" not in record.getMessage():
                click.secho(f"  warning: {meta.get('orig_message') or record.getMessage()}", fg="yellow", err=True)
            return
        kind = event.event_type_value
        module = self.steps.get(event.step_key or "", event.step_key)
        if kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self.ended.add(event.step_key)
        if kind == "STEP_SUCCESS":
            self.counts["succeeded"] += 1
            seconds = (event.event_specific_data.duration_ms or 0) / 1000
            click.echo(f"  {click.style('ok', fg='green')}      {module}  ({seconds:.1f} s)")
        elif kind == "STEP_FAILURE":
            self.counts["failed"] += 1
            click.secho(f"  FAILED  {module}: {_failure_text(event)}", fg="red")
        elif kind == "STEP_SKIPPED":
            self.counts["skipped"] += 1
            click.echo(f"  skipped {module}")
        elif kind == "STEP_UP_FOR_RETRY":
            click.echo(f"  retry   {module}")
        elif kind == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            check = event.event_specific_data
            click.secho(f"  check   {check.check_name} failed ({check.severity.value})", fg="yellow")

    def never_ran(self, step_keys: Any) -> None:
        """Steps that never started (downstream of a failure) are skipped as well."""
        for step in step_keys:
            if step not in self.ended:
                self.counts["skipped"] += 1
                click.echo(f"  skipped {self.steps.get(step, step)}")

    def summary(self) -> str:
        return ", ".join(f"{count} {what}" for what, count in self.counts.items())


def _failure_text(event: Any) -> str:
    """The failure's own message: the Failure's description, else the error's first line."""
    data = event.event_specific_data
    user = getattr(data, "user_failure_data", None)
    if user is not None and user.description:
        return user.description.strip().splitlines()[0]
    error = getattr(data, "error", None)
    while error is not None and error.cause is not None and "Error occurred while executing" in error.message:
        error = error.cause
    return error.message.strip().splitlines()[0] if error is not None else "failed"
