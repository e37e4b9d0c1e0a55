"""The `aqueduct` command line: validate, compile, run, heal and review patches.

Exit codes: 0 success; 1 the work ran and failed (a failed run, a rejected patch);
2 bad input (invalid Blueprint or config, unknown patch); 3 environment problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.errors import AqueductError, ConfigError

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 1, 2, 3


def _fail(error: Exception) -> None:
    click.secho(f"error: {error}", fg="red", err=True)
    code = EXIT_ENVIRONMENT if isinstance(error, ConfigError) else EXIT_BAD_INPUT
    sys.exit(code)


def _context_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--ctx")
        key, value = pair.split("=", 1)
        overrides[key] = value
    return overrides


@click.group()
@click.version_option(package_name="aqueduct-dagster")
def main() -> None:
    """Self-healing declarative Spark pipelines on Dagster."""


@main.command()
@click.argument("blueprints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None, help="Context profile to apply.")
def validate(blueprints: tuple[Path, ...], ctx: tuple[str, ...], profile: str | None) -> None:
    """Check Blueprints: YAML, schema, templating, graph. Exit 2 on the first invalid one."""
    from aqueduct_dagster.blueprint import compile_blueprint

    for path in blueprints:
        try:
            manifest = compile_blueprint(path, context_overrides=_context_overrides(ctx), profile=profile)
        except AqueductError as error:
            _fail(error)
        click.echo(f"ok  {path}  ({manifest.blueprint_id}: {len(manifest.modules)} modules)")
        for warning in manifest.warnings:
            click.secho(f"    warning: {warning}", fg="yellow")


@main.command("compile")
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None)
@click.option("--show", type=click.Choice(["manifest", "provenance", "lineage"]), default="manifest")
def compile_command(blueprint: Path, ctx: tuple[str, ...], profile: str | None, show: str) -> None:
    """Print the compiled Manifest, where each value came from, or column lineage."""
    from aqueduct_dagster.blueprint import compile_blueprint

    try:
        manifest = compile_blueprint(blueprint, context_overrides=_context_overrides(ctx), profile=profile)
    except AqueductError as error:
        _fail(error)
    if show == "provenance":
        for path, source in sorted(manifest.provenance.items()):
            detail = f" ({source.detail})" if source.detail else ""
            where = f"  @ {source.location}" if source.location else ""
            click.echo(f"{path}: {source.source}{detail}{where}")
    elif show == "lineage":
        for module in manifest.modules.values():
            for column, sources in module.column_lineage.items():
                click.echo(f"{module.id}.{column} <- " + ", ".join(f"{s.module}.{s.column}" for s in sources))
    else:
        click.echo(manifest.model_dump_json(indent=2, by_alias=True, exclude_defaults=True))


@main.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--column", default=None, help="Only this output column (module.column).")
def lineage(blueprint: Path, column: str | None) -> None:
    """Column-level lineage of a Blueprint, traced back to its Ingress columns."""
    from aqueduct_dagster.blueprint import compile_blueprint

    try:
        manifest = compile_blueprint(blueprint)
    except AqueductError as error:
        _fail(error)

    def roots(module_id: str, name: str, seen: frozenset = frozenset()) -> list[str]:
        sources = manifest.modules[module_id].column_lineage.get(name, ()) if module_id in manifest.modules else ()
        if not sources or (module_id, name) in seen:
            return [f"{module_id}.{name}"]
        return [r for s in sources for r in roots(s.module, s.column, seen | {(module_id, name)})]

    shown = 0
    for module in manifest.modules.values():
        for name, sources in module.column_lineage.items():
            if column and column != f"{module.id}.{name}":
                continue
            direct = ", ".join(f"{s.module}.{s.column}" for s in sources)
            origin = ", ".join(sorted(set(roots(module.id, name))))
            click.echo(f"{module.id}.{name} <- {direct}" + (f"   (from {origin})" if origin != direct else ""))
            shown += 1
    if not shown:
        click.echo("no column lineage known (SQL Channels with known upstream columns have it)")


@main.command()
@click.option("--blueprint", "blueprint_id", default=None, help="Only this blueprint's runs.")
@click.option("--limit", default=10, show_default=True)
def runs(blueprint_id: str | None, limit: int) -> None:
    """Recent blueprint runs: Dagster status and per-module metrics from the store."""
    import dagster as dg

    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.stores import default_store

    config = load_config()
    store = default_store(config.state_path, config)
    instance = dg.DagsterInstance.get()
    for run in store.runs(blueprint_id, limit=limit):
        record = instance.get_run_by_id(run["run_id"])
        status = record.status.value if record else "unknown"
        click.echo(f"{run['run_id']}  {run['blueprint_id']}  {status:<8}  modules ok={run['modules_ok']} "
                   f"failed={run['modules_failed']}  {run['duration_ms'] or 0} ms  started {run['started_at']}")  # fmt: skip
        for metric in store.module_metrics(run["run_id"]):
            rows = f"  rows={metric['rows_written']}" if metric["rows_written"] is not None else ""
            click.echo(f"    {metric['module_id']:<24} {metric['status']:<8} {metric['duration_ms']} ms{rows}")


@main.command()
@click.argument("blueprint_id")
def depot(blueprint_id: str) -> None:
    """A blueprint's Depot: committed values and values staged by unfinished runs.

    Values staged by runs that have finished are settled first (committed when the Dagster
    instance reports the run SUCCESS, discarded when it failed), as the next run would.
    """
    import os

    import dagster as dg

    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.dagster.resources import run_outcome_in
    from aqueduct_dagster.stores import default_store
    from aqueduct_dagster.stores.depot import Depot

    config = load_config()
    store = Depot(default_store(config.state_path, config), blueprint_id)
    if os.environ.get("DAGSTER_HOME"):
        for run_id, action in store.settle(run_outcome_in(dg.DagsterInstance.get())).items():
            click.echo(f"settled run {run_id}: {action}")
    items = store.store.depot_items(blueprint_id)
    if not items:
        click.echo(f"the Depot of '{blueprint_id}' is empty")
        return
    for key, value, run_id, committed in items:
        state = "committed" if committed else "staged   "
        click.echo(f"{state}  {key} = {value}   (run {run_id})")


@main.command()
@click.argument("job")
@click.option("-w", "--workspace", default="workspace.yaml", show_default=True)
def run(job: str, workspace: str) -> None:
    """Run a blueprint's Dagster job (thin wrapper around `dagster job execute`)."""
    import subprocess

    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run([str(dagster), "job", "execute", "-w", workspace, "-j", job])
    sys.exit(0 if done.returncode == 0 else EXIT_FAILED)


@main.command()
@click.option("--run-id", default=None, help="The failed run to heal.")
@click.option("--latest-failure", "job", default=None, help="Heal the latest failed run of this job.")
def heal(run_id: str | None, job: str | None) -> None:
    """Heal a failed run now, in this process (what the failure sensor launches)."""
    import dagster as dg

    from aqueduct_dagster.dagster.healing import aqueduct_heal_job

    instance = dg.DagsterInstance.get()
    if run_id is None:
        if job is None:
            raise click.UsageError("give --run-id or --latest-failure JOB")
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
        if not runs:
            click.secho(f"no failed run of job '{job}' in {instance.root_directory}", fg="red", err=True)
            sys.exit(EXIT_BAD_INPUT)
        run_id = runs[0].run_id
    result = aqueduct_heal_job.execute_in_process(
        run_config={
            "ops": {"heal": {"config": {"run_id": run_id}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        instance=instance, raise_on_error=False, tags={"aqueduct/heal_of": run_id},
    )  # fmt: skip
    if not result.success:
        click.secho("the heal run failed; see its logs in Dagster", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    summary = result.output_for_node("heal")
    click.echo(f"heal {summary['heal_id']}: {summary['status']}: {summary['message']}")
    for gate in summary.get("gates", []):
        click.echo(f"  gate {gate}")
    if summary.get("pending_path"):
        click.echo(f"  pending patch: {summary['pending_path']}")
    sys.exit(0 if summary["status"] in ("staged", "escalated", "applied", "branch", "suppressed") else EXIT_FAILED)


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--blueprint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Use this blueprint instead of the one the aqtest file names.")
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
def test_command(paths: tuple[Path, ...], blueprint: Path | None, ctx: tuple[str, ...]) -> None:
    """Run *.aqtest.yml files: single modules against inline rows, on local Spark."""
    from aqueduct_dagster.engine.session import create_base_session, run_session
    from aqueduct_dagster.testing import find_aqtests, run_aqtest_file

    files = [f for p in paths for f in find_aqtests(p)]
    if not files:
        click.secho("no *.aqtest.yml files found", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    spark = run_session(create_base_session(app_name="aqueduct-test"))
    passed = failed = 0
    for file in files:
        click.echo(f"{file}", err=True)
        try:
            results = run_aqtest_file(file, spark, blueprint=blueprint, context_overrides=_context_overrides(ctx))
        except AqueductError as error:
            _fail(error)
        for result in results:
            mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
            click.echo(f"  {mark}  {result.test_id}  ({result.module})")
            for failure in result.failures:
                click.echo(f"        {failure}")
            passed, failed = passed + result.passed, failed + (not result.passed)
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else EXIT_FAILED)


# --------------------------------------------------------------------------- patches


def _queue():
    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.healing.heal import PatchQueue

    return PatchQueue.from_config(load_config())


@main.group()
def patch() -> None:
    """Review patches: list, show, apply, reject, rollback."""


@patch.command("list")
@click.option("--status", type=click.Choice(["pending", "applied", "rejected"]), default="pending")
def patch_list(status: str) -> None:
    """Patches with a status (pending by default)."""
    patches = _queue().list(status)
    if not patches:
        click.echo(f"no {status} patches")
    for item in patches:
        record: dict[str, Any] = item.record
        confidence = item.patch.confidence if item.patch.confidence is not None else "-"
        click.echo(f"{item.patch_id}  {record['blueprint_id']}  module={record['failed_module']}  "
                   f"confidence={confidence}  {item.patch.rationale}")  # fmt: skip


@patch.command("show")
@click.argument("patch_id")
@click.option("--json", "as_json", is_flag=True, help="The full staged record as JSON.")
def patch_show(patch_id: str, as_json: bool) -> None:
    """A pending patch: root cause, operations and the diff it makes."""
    try:
        item = _queue().get(patch_id)
    except AqueductError as error:
        _fail(error)
    if as_json:
        click.echo(json.dumps(item.record, indent=2))
        return
    record = item.record
    click.echo(f"patch      {item.patch_id}")
    click.echo(f"blueprint  {record['blueprint_path']}  (module {record['failed_module']})")
    click.echo(f"error      {record['error'].get('condition') or record['error'].get('exception_class')}")
    click.echo(f"root cause {item.patch.root_cause}")
    click.echo(f"confidence {item.patch.confidence}")
    if record.get("escalation"):
        click.secho(f"escalated  {record['escalation']}", fg="yellow")
    click.echo("")
    for line in record["diff"].splitlines():
        color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        click.secho(line, fg=color)


@patch.command("apply")
@click.argument("patch_id")
def patch_apply(patch_id: str) -> None:
    """Apply a pending patch as a new Blueprint revision."""
    try:
        revision = _queue().apply(patch_id)
    except AqueductError as error:
        _fail(error)
    click.echo(f"applied: {revision.summary}")


@patch.command("reject")
@click.argument("patch_id")
@click.option("--reason", default="")
def patch_reject(patch_id: str, reason: str) -> None:
    """Reject a pending patch."""
    try:
        target = _queue().reject(patch_id, reason)
    except AqueductError as error:
        _fail(error)
    click.echo(f"rejected: {target}")


@patch.command("rollback")
@click.argument("blueprint", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "number", type=int, required=True, help="Undo this revision (and everything after it).")
def patch_rollback(blueprint: Path, number: int) -> None:
    """Restore a Blueprint as it was before revision N, as a new revision."""
    try:
        revision = _queue().revisions.rollback(blueprint, number)
    except AqueductError as error:
        _fail(error)
    click.echo(f"rolled back: {revision.summary}")


def _register_commands() -> None:
    from aqueduct_dagster.cli_benchmark import benchmark_command
    from aqueduct_dagster.cli_doctor import doctor_command
    from aqueduct_dagster.cli_spark import spark_command

    main.add_command(benchmark_command)
    main.add_command(doctor_command)
    main.add_command(spark_command)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
