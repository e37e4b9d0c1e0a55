"""`aqueduct heal`: heal a failed run now, in this process (what the failure sensor launches)."""

from __future__ import annotations

import sys

import click
import dagster as dg

from aqueduct_dagster.cli.boundary import EXIT_FAILED
from aqueduct_dagster.cli.common import echo_json
from aqueduct_dagster.cli.instance import dagster_instance
from aqueduct_dagster.dagster.healing import aqueduct_heal_job
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.settings import current_settings

#: Heal outcomes that are a success of the command: something was staged, applied or handed
#: on, or there was nothing to heal (skipped).
_HEAL_DONE = ("staged", "escalated", "applied", "branch", "suppressed", "skipped")


@click.command()
@click.option("--run-id", default=None, help="The failed run to heal.")
@click.option("--latest-failure", "job", default=None, help="Heal the latest failed run of this job.")
@click.option("--json", "as_json", is_flag=True, help="The heal's summary as JSON.")
def heal(run_id: str | None, job: str | None, as_json: bool) -> None:
    """Heal a failed run now, in this process (what the failure sensor launches).

    Exit 0 when a patch was staged/applied/escalated or there was nothing to heal (skipped),
    1 when the heal ran and failed, 2 when there is no such run, 3 without DAGSTER_HOME.
    """


    if run_id is None and job is None:
        raise click.UsageError("give --run-id or --latest-failure JOB")
    instance = dagster_instance(current_settings().dagster_home)
    if run_id is None:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
        if not runs:
            raise AqueductError(f"no failed run of job '{job}' in {instance.root_directory}",
                                hint="check the job name (`aqueduct runs` lists recent runs)")  # fmt: skip
        run_id = runs[0].run_id
    elif instance.get_run_by_id(run_id) is None:
        raise AqueductError(f"no run '{run_id}' in {instance.root_directory}",
                            hint="check the run id (`aqueduct runs` lists recent runs)")  # fmt: skip
    result = aqueduct_heal_job.execute_in_process(
        run_config={
            "ops": {"heal": {"config": {"run_id": run_id}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        instance=instance, raise_on_error=False, tags={"aqueduct/heal_of": run_id},
    )  # fmt: skip
    if not result.success:
        if as_json:
            echo_json({"run_id": run_id, "status": "failed", "message": "the heal run failed; see its logs in Dagster"})
        click.secho("the heal run failed; see its logs in Dagster", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    summary = dict(result.output_for_node("heal") or {})
    status = summary.get("status") or "skipped"
    if as_json:
        echo_json({"run_id": run_id, **summary, "status": status})
    elif "heal_id" not in summary:  # nothing was healed: say why
        click.echo(f"heal of run {run_id}: {status}: {summary.get('message') or 'nothing to heal'}")
    else:
        click.echo(f"heal {summary['heal_id']}: {status}: {summary.get('message', '')}")
        for gate in summary.get("gates", []):
            click.echo(f"  gate {gate}")
        if summary.get("pending_path"):
            click.echo(f"  pending patch: {summary['pending_path']}")
    sys.exit(0 if status in _HEAL_DONE else EXIT_FAILED)
