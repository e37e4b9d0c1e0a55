"""A Blueprint's `partitions:`, `schedule:` and `automation:` as Dagster definitions.

Partitions make every asset of the Blueprint partitioned the same way, so Dagster's backfills
and per-partition re-runs work; a run of one partition binds `@aq.date.*` to the partition's
start (engine-side binding: blueprint/functions.py `RunInfo.logical_at`). A schedule on a
time-partitioned Blueprint runs each new partition at the partitions' cadence; on an
unpartitioned one it runs the job on the cron. `automation: eager` materializes the assets
when what they read changes (an upstream Blueprint's output, see dagster/cross_blueprint.py).
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.errors import BlueprintError


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as error:
        raise BlueprintError(f"partitions: '{text}' is not an ISO date or date-time (e.g. 2026-01-01)") from error


def partitions_def_of(manifest: Manifest) -> dg.PartitionsDefinition | None:
    spec = manifest.partitions
    if spec is None:
        return None
    if spec.type == "static":
        return dg.StaticPartitionsDefinition(list(spec.values))
    kind = dg.DailyPartitionsDefinition if spec.type == "daily" else dg.HourlyPartitionsDefinition
    end = _instant(spec.end) if spec.end else None
    return kind(start_date=_instant(spec.start or ""), end_date=end, timezone=spec.timezone)


def logical_start(manifest: Manifest, partition_key: str | None) -> datetime | None:
    """The start of a time partition (what `@aq.date.today()` means in its run)."""
    partitions = partitions_def_of(manifest)
    if partition_key is None or not isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return None
    return partitions.time_window_for_partition_key(partition_key).start


def automation_condition_of(manifest: Manifest) -> dg.AutomationCondition | None:
    if manifest.automation == "eager":
        return dg.AutomationCondition.eager()
    if manifest.automation == "on_cron":
        if not manifest.schedule:
            raise BlueprintError(f"{manifest.source_path}: automation: on_cron needs a `schedule:` (a cron expression)")
        return dg.AutomationCondition.on_cron(manifest.schedule)
    return None


def schedules_of(manifest: Manifest, job: dg.JobDefinition) -> list[dg.ScheduleDefinition]:
    """The Blueprint's schedule, running (the author asked for it in the Blueprint)."""
    if not manifest.schedule or manifest.automation == "on_cron":
        return []
    partitions = partitions_def_of(manifest)
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return [dg.build_schedule_from_partitioned_job(job, name=f"{job.name}_schedule",
                                                       default_status=dg.DefaultScheduleStatus.RUNNING)]  # fmt: skip
    if partitions is not None:
        raise BlueprintError(
            f"{manifest.source_path}: a schedule cannot pick one of static partitions; "
            "use daily or hourly partitions, or launch the partitions you want (a backfill)"
        )
    return [dg.ScheduleDefinition(name=f"{job.name}_schedule", job=job, cron_schedule=manifest.schedule,
                                  default_status=dg.DefaultScheduleStatus.RUNNING)]  # fmt: skip
