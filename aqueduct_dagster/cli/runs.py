"""`aqueduct runs` and `aqueduct depot`: what recent runs did, and the values a Blueprint keeps between runs."""

from __future__ import annotations

import click

from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.cli.common import echo_json, known_blueprint_ids
from aqueduct_dagster.cli.instance import dagster_instance
from aqueduct_dagster.dagster.resources import run_outcome_in
from aqueduct_dagster.errors import AqueductError, EnvironmentProblem
from aqueduct_dagster.settings import current_settings
from aqueduct_dagster.stores import default_store
from aqueduct_dagster.stores.depot import Depot


@click.command()
@click.option("--blueprint", "blueprint_id", default=None, help="Only this blueprint's runs.")
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The runs as JSON.")
def runs(blueprint_id: str | None, limit: int, as_json: bool) -> None:
    """Recent blueprint runs: Dagster status and per-module metrics from the store.

    Without DAGSTER_HOME the store's runs are still listed, with status `unknown`.
    """
    settings = current_settings()
    store = default_store(settings.state_dir, settings.config)
    try:
        instance = dagster_instance(settings.dagster_home)
    except EnvironmentProblem as error:
        instance = None
        click.secho(f"note: {error.message}: Dagster status shown as unknown ({error.hint})", fg="yellow", err=True)
    listed = []
    for run in store.runs(blueprint_id, limit=limit):
        record = instance.get_run_by_id(run["run_id"]) if instance is not None else None
        listed.append({**run, "status": record.status.value if record else "unknown",
                       "modules": store.module_metrics(run["run_id"])})  # fmt: skip
    if as_json:
        echo_json({"runs": listed})
        return
    if not listed:
        click.echo("no runs recorded" + (f" for blueprint '{blueprint_id}'" if blueprint_id else ""))
    for run in listed:
        click.echo(f"{run['run_id']}  {run['blueprint_id']}  {run['status']:<8}  modules ok={run['modules_ok']} "
                   f"failed={run['modules_failed']}  {run['duration_ms'] or 0} ms  started {run['started_at']}")  # fmt: skip
        for metric in run["modules"]:
            rows = f"  rows={metric['rows_written']}" if metric["rows_written"] is not None else ""
            click.echo(f"    {metric['module_id']:<24} {metric['status']:<8} {metric['duration_ms']} ms{rows}")


@click.command()
@click.argument("blueprint_id")
def depot(blueprint_id: str) -> None:
    """A blueprint's Depot: committed values and values staged by unfinished runs.

    Values staged by runs that have finished are settled first (committed when the Dagster
    instance reports the run SUCCESS, discarded when it failed), as the next run would.
    """
    settings = current_settings()
    store = Depot(default_store(settings.state_dir, settings.config), blueprint_id)
    if settings.dagster_home:
        for run_id, action in store.settle(run_outcome_in(dagster_instance(settings.dagster_home))).items():
            click.echo(f"settled run {run_id}: {action}")
    items = store.store.depot_items(blueprint_id)
    if not items:
        known = known_blueprint_ids(settings.blueprints_dir)
        if blueprint_id not in known and not store.store.runs(blueprint_id, limit=1):
            raise AqueductError(
                f"no Blueprint '{blueprint_id}': no Blueprint file has this id and the store "
                "has no runs of it" + did_you_mean(blueprint_id, known),
                hint="give a Blueprint's `id:` (AQUEDUCT_BLUEPRINTS_DIR, else ./blueprints)",
            )
        click.echo(f"the Depot of '{blueprint_id}' is empty")
        return
    for key, value, run_id, committed in items:
        state = "committed" if committed else "staged   "
        click.echo(f"{state}  {key} = {value}   (run {run_id})")
