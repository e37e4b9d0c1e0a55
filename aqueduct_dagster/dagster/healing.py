"""Healing in Dagster: the failure sensor, the heal job, patch approval and revisions.

The sensor is deliberately thin (a `run_key` per failed run, no I/O beyond the event it was
handed): an exception in a sensor body loses that run's request. All the work happens in
the `aqueduct_heal` job, whose run shows up in the UI like any other, with its logs.

The healing machinery (stores, rules, gates, the LLM client) is imported inside the ops: this
module loads with every code location, and only a heal run needs them.
"""


from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.config import AqueductConfig
from aqueduct_dagster.dagster.assets import ERROR_METADATA_KEY, revision_asset_key
from aqueduct_dagster.dagster.hooks import announce_heal, announce_review
from aqueduct_dagster.dagster.tags import (
    BLUEPRINT_PATH_TAG,
    BLUEPRINT_TAG,
    HEAL_TAG,
    is_blueprint_run,
)
from aqueduct_dagster.dagster.translator import safe_name
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.settings import DEFAULT_SENSOR_INTERVAL, Settings, current_settings

HEAL_JOB = "aqueduct_heal"
APPROVE_JOB = "aqueduct_approve_patch"
REJECT_JOB = "aqueduct_reject_patch"


def revision_asset_specs(manifests: Sequence[Manifest]) -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            key=revision_asset_key(m.blueprint_id),
            group_name=safe_name(m.blueprint_id),
            description=f"Revisions of {Path(m.source_path).name}: each materialization is an applied patch or a "
            "rollback. Its Ingress assets read downstream of it: after a revision, the outputs are stale.",
            kinds={"yaml"},
            metadata={"aqueduct/blueprint": Path(m.source_path).name},
        )
        for m in manifests
    ]


# --------------------------------------------------------------------------- shared settings


def _store(settings: Settings):
    from aqueduct_dagster.stores import default_store

    return default_store(settings.state_dir, settings.config)


def _queue(settings: Settings):
    from aqueduct_dagster.healing.heal import PatchQueue

    return PatchQueue.from_settings(settings)


def _revision_event(revision, redactor: Any = None) -> dg.AssetMaterialization:
    redact = redactor.text if redactor is not None else str
    return dg.AssetMaterialization(
        asset_key=revision_asset_key(revision.blueprint_id),
        description=redact(revision.summary),
        metadata={
            "revision": revision.number,
            "patch_id": revision.patch_id or "",
            "reason": redact(revision.reason),
            "blueprint": dg.MetadataValue.path(revision.blueprint_path),
            "diff": dg.MetadataValue.md(redact(f"```diff\n{revision.diff}\n```")),
        },
    )


def reload_code_location(log: Any, settings: Settings | None = None) -> bool:
    """Ask the webserver (AQUEDUCT_DAGSTER_URL) to reload the code location, so the UI shows
    the new definitions; `settings` default to the process's.

    Best effort: a revision is already applied, so every failure is logged, never raised.
    """
    from dagster_graphql import DagsterGraphQLClient, ReloadRepositoryLocationStatus

    settings = settings or current_settings()
    url, location = settings.dagster_url, settings.code_location
    if not url:
        log.info("AQUEDUCT_DAGSTER_URL is not set: reload the code location to see the new revision")
        return False
    try:
        parts = urlsplit(url)
        client = DagsterGraphQLClient(
            parts.hostname or "", port_number=parts.port, use_https=parts.scheme == "https",
            timeout=120, path_prefix=parts.path.rstrip("/"),
        )  # fmt: skip
        info = client.reload_repository_location(location)
    except Exception as error:  # noqa: BLE001 - connection, HTTP or GraphQL errors, a malformed URL
        detail = " ".join(str(error).split())[:300]  # the client's errors quote the whole query
        log.warning(f"could not reload code location '{location}' at {url}: {type(error).__name__}: {detail}")
        return False
    if info.status != ReloadRepositoryLocationStatus.SUCCESS:
        log.warning(f"could not reload code location '{location}' at {url}: {info.failure_type}: {info.message}")
        return False
    log.info(f"reloaded code location '{location}'")
    return True


# --------------------------------------------------------------------------- heal job


class HealRunConfig(dg.Config):
    run_id: str


def _failure_from_run(instance: dg.DagsterInstance, run_id: str) -> FailureRecord | None:
    """The FailureRecord the failed step (or check) recorded, or None when it has none."""
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    for record in records:
        data = record.dagster_event.event_specific_data
        user = getattr(data, "user_failure_data", None)
        if user is not None and ERROR_METADATA_KEY in (user.metadata or {}):
            return FailureRecord.from_json(user.metadata[ERROR_METADATA_KEY].value)
    return None


def _failed_trigger_checks(instance: dg.DagsterInstance, run_id: str) -> list[FailureRecord]:
    """A record per failed check of the run with a `trigger_agent` rule among its failed rules."""
    failed = []
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        metadata = evaluation.metadata or {}
        rules = metadata.get("aqueduct/rules")
        failed_rules = [r for r in (rules.value if rules else []) if not r.get("passed")]
        if not any(r.get("action") == "trigger_agent" for r in failed_rules):
            continue
        module_id = metadata["aqueduct/module_id"].value if "aqueduct/module_id" in metadata else evaluation.check_name
        failed.append(FailureRecord.for_assert(module_id, failed_rules))
    return failed


@dg.op(name="heal", description="Diagnose the failed run, gate a patch, and stage or apply it")
def heal_op(context: dg.OpExecutionContext, config: HealRunConfig) -> dict[str, Any]:
    from aqueduct_dagster.healing.failure import build_failure_package
    from aqueduct_dagster.healing.heal import Healer, HealSettings
    from aqueduct_dagster.healing.redaction import install_log_redaction

    instance = context.instance
    failed_run = instance.get_run_by_id(config.run_id)
    if failed_run is None:
        raise dg.Failure(f"run {config.run_id} does not exist in this Dagster instance")
    blueprint_path = failed_run.tags.get(BLUEPRINT_PATH_TAG)
    if not blueprint_path:
        raise dg.Failure(f"run {config.run_id} is not a blueprint run (no {BLUEPRINT_PATH_TAG} tag)")
    failure = _failure_from_run(instance, config.run_id)
    if failure is None:
        checks = _failed_trigger_checks(instance, config.run_id)
        if not checks:
            context.log.info("the run failed without a Spark error or a trigger_agent Assert: nothing to heal")
            return {"status": "skipped", "message": "no healable failure in the run"}
        failure = checks[0]
    if failure.error.transient:
        context.log.info("transient failure: retried by the run's retry policy, never healed")
        return {"status": "skipped", "message": "transient failure"}

    # The heal's master and state folder are resolved as the failed run's were (Settings), so
    # the sandbox checks the patch against the same warehouse and store.
    project = current_settings()
    config_file = project.config
    manifest = compile_blueprint(blueprint_path)
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=failed_run.job_name), limit=5)
    session = _lazy_session(manifest, project)
    fault = _blame(manifest, failure.module_id, failure.error.to_dict(), session, context.log)
    # The recorded schemas are those of the surfacing module's inputs.
    input_schemas = fault.input_schemas if fault.moved else failure.input_schemas
    last_good, evidence = _last_good_evidence(instance, failed_run, _store(project))
    drift = _drift(manifest, fault.module_id, evidence, input_schemas, session, context.log)
    package = build_failure_package(
        manifest=manifest,
        blueprint_text=Path(blueprint_path).read_text(encoding="utf-8"),
        failure=failure,
        failed_module=fault.module_id,
        surfaced_in=fault.surfaced_in,
        fault=fault.to_dict(),
        input_schemas=input_schemas,
        last_good_run=last_good,
        drift=drift,
        contracts={mid: e["contract"] for mid, e in evidence.items() if e.get("contract")},
        run_id=config.run_id,
        recent_runs=[{"run_id": r.run_id, "status": r.status.value} for r in runs],
    )
    # One Redactor for this heal, built with the package: every log line, output and
    # event below passes it (so do the heal loop's store rows, prompts and PR text).
    redactor = package.redactor
    install_log_redaction(redactor)
    settings = HealSettings(
        store=_store(project),
        patches_dir=project.patches_dir,
        revisions_dir=project.state_dir / "revisions",
        spark_factory=_spark_factory(manifest, project),
        diagnosers=_diagnosers(config_file),
        max_heals_per_hour=config_file.agent.max_heal_attempts_per_hour,
        operator_guardrails=config_file.agent.guardrails,
    )
    try:
        outcome = Healer(settings).heal(package, blueprint_path, manifest.agent)
    except Exception as error:  # noqa: BLE001 - any error: the event log would keep its raw text
        # Dagster records an exception's cause chain: the raw one is dropped, its text redacted.
        reason = redactor.text(f"heal {package.heal_id} failed: {type(error).__name__}: {error}")
        raise dg.Failure(description=reason) from None
    context.log.info(redactor.text(f"heal {outcome.heal_id}: {outcome.status}: {outcome.message}"))
    if outcome.pending_path is not None and outcome.patch is not None:
        offer_for_review(context.instance, outcome.patch.patch_id)
    announce_heal(outcome, package, manifest, config_file, context.log)
    if outcome.revision is not None:
        context.log_event(_revision_event(outcome.revision, redactor))
        reload_code_location(context.log, project)
    summary = {
        "heal_id": outcome.heal_id,
        "status": outcome.status,
        "message": outcome.message,
        "patch_id": outcome.patch.patch_id if outcome.patch else None,
        "pending_path": str(outcome.pending_path) if outcome.pending_path else None,
        "branch": outcome.branch,
        "gates": [f"{r.gate}: {'pass' if r.passed else 'reject'} {r.message}".strip() for r in outcome.gate_results],
    }
    summary = redactor.data(summary)
    context.add_output_metadata(
        {"status": outcome.status, "diff": dg.MetadataValue.md(redactor.text(f"```diff\n{outcome.diff}\n```")),
         "summary": dg.MetadataValue.json(summary)}  # fmt: skip
    )
    return summary


#: Input rows per Ingress for blame's replay and its evidence (the sandbox gate's sample size).
BLAME_SAMPLE_ROWS = 1000


def _lazy_session(manifest: Manifest, settings: Settings) -> Any:
    """One session for blame, drift and the measure, started only when one of them needs it."""
    sessions: list[Any] = []

    def session() -> Any:
        if not sessions:
            sessions.append(_spark_factory(manifest, settings)())
        return sessions[0]

    return session


def _last_good_evidence(instance: dg.DagsterInstance, failed_run: Any, store: Any) -> tuple[str | None, dict[str, Any]]:
    """The newest successful run of the same job that recorded evidence, and that evidence."""
    good = instance.get_runs(
        filters=dg.RunsFilter(job_name=failed_run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20
    )
    blueprint_id = failed_run.tags.get(BLUEPRINT_TAG, "")
    found = store.run_evidence(blueprint_id, [r.run_id for r in good]) if good and blueprint_id else None
    return found if found is not None else (None, {})


def _drift(manifest: Manifest, module_id: str, evidence: dict[str, Any], input_schemas: Any, session: Any,
           log: Any) -> dict[str, Any]:  # fmt: skip
    """What changed in the inputs since the last good run (healing/drift.py); {} without one."""
    from aqueduct_dagster.healing import blame, drift

    if not evidence or module_id not in manifest.modules:
        return {}
    try:
        reader = drift.SparkReader(session())
        return drift.compute_drift(blame.bound_for_replay(manifest), module_id, evidence, input_schemas, reader)
    except Exception as error:  # noqa: BLE001 - drift only adds evidence; the heal goes on without it
        log.warning(f"drift against the last good run could not be measured ({type(error).__name__})")
        return {}


def _blame(manifest: Manifest, surfaced_in: str, spark_error: dict[str, Any], session: Any,
           log: Any) -> Any:  # fmt: skip
    """The module that holds the fault, decided here rather than in the failed step.

    Why here: one place serves a failed step and a failed check alike (both record the same
    structured error); the heal job has the whole Manifest and can rebuild any upstream
    frame on sampled input in its own session, while a step only holds its direct inputs and
    a run that nobody heals should not pay for sample replays. For runtime faults (a CAST, a
    division) it also measures what the safe rewrite would leave of the column: the rules
    refuse a try_cast that would turn a whole column NULL.
    """
    from aqueduct_dagster.healing import blame

    if surfaced_in not in manifest.modules:
        return blame.Blame(surfaced_in, surfaced_in, "surfaced", "not a module of the compiled Blueprint")
    try:
        replayable = blame.bound_for_replay(manifest)
        found = blame.blame(replayable, surfaced_in, spark_error, spark_factory=session, sample_rows=BLAME_SAMPLE_ROWS)
        if blame.is_runtime_fault(spark_error):  # without a fragment it says so, and the rules refuse
            spark = session() if found.fragment else None
            found = blame.measure_safe_rewrite(spark, replayable, found, sample_rows=BLAME_SAMPLE_ROWS)
    except Exception as error:  # noqa: BLE001 - blame only narrows the heal; the failure is still healed
        log.warning(f"blame of the failure in '{surfaced_in}' failed ({type(error).__name__}); healing it where it surfaced")
        return blame.Blame(surfaced_in, surfaced_in, "undecided", f"blame failed: {type(error).__name__}")
    log.info(f"fault in '{found.module_id}' (surfaced in '{found.surfaced_in}'): {found.method}: {found.reason}")
    return found


def _spark_factory(manifest: Manifest, settings: Settings):
    def factory():
        from aqueduct_dagster.engine.session import run_session

        return run_session(settings.base_session(manifest.engine))

    return factory


def _diagnosers(config: AqueductConfig) -> list[Any]:
    from aqueduct_dagster.healing.heal import RuleDiagnoser

    diagnosers: list[Any] = [RuleDiagnoser()]
    if config.agent.llm_enabled:
        from aqueduct_dagster.healing.agent import LLMDiagnoser

        diagnosers.append(LLMDiagnoser.from_config(config.agent))
    return diagnosers


@dg.job(name=HEAL_JOB, executor_def=dg.in_process_executor, description="Heal a failed blueprint run")
def aqueduct_heal_job() -> None:
    heal_op()


# --------------------------------------------------------------------------- approval
# Every staged patch is a partition of the approve and reject jobs: the launchpad's partition
# picker lists what waits for review, so approving is choosing the patch (after reading its
# diff on the heal run) and launching. A patch id given as config works as well (the CLI's way).

PENDING_PATCHES = dg.DynamicPartitionsDefinition(name="aqueduct_pending_patches")
#: The sensor that launches a heal run for every failed Blueprint run.
HEAL_SENSOR = "aqueduct_heal_on_failure"


def offer_for_review(instance: dg.DagsterInstance, patch_id: str) -> None:
    instance.add_dynamic_partitions(PENDING_PATCHES.name, [patch_id])


def _withdraw(instance: dg.DagsterInstance, patch_id: str) -> None:
    if instance.has_dynamic_partition(PENDING_PATCHES.name, patch_id):
        instance.delete_dynamic_partition(PENDING_PATCHES.name, patch_id)


class PatchIdConfig(dg.Config):
    #: Empty: the run's partition (the patch picked in the launchpad).
    patch_id: str = ""
    reason: str = ""


def _patch_id(context: dg.OpExecutionContext, config: PatchIdConfig) -> str:
    patch_id = config.patch_id or (context.partition_key if context.has_partition_key else "")
    if not patch_id:
        raise dg.Failure("no patch chosen: pick a pending patch as the partition, or give config patch_id")
    return patch_id


@dg.op(name="approve_patch", description="Apply a pending patch as a new Blueprint revision")
def approve_patch_op(context: dg.OpExecutionContext, config: PatchIdConfig) -> dict[str, Any]:
    patch_id = _patch_id(context, config)
    try:
        queue = _queue(current_settings())
        record = queue.get(patch_id).record
        revision = queue.apply(patch_id)
    except AqueductError as error:
        if "not pending" in str(error) or "no pending patch" in str(error).lower():
            _withdraw(context.instance, patch_id)  # applied or rejected elsewhere (the CLI)
        raise dg.Failure(str(error)) from None
    _withdraw(context.instance, patch_id)
    context.log_event(_revision_event(revision))
    reload_code_location(context.log)
    context.log.info(revision.summary)
    announce_review("patch_applied", record, revision.summary, context.log, revision=revision.number)
    return {"revision": revision.number, "blueprint_id": revision.blueprint_id, "patch_id": revision.patch_id}


@dg.op(name="reject_patch", description="Reject a pending patch")
def reject_patch_op(context: dg.OpExecutionContext, config: PatchIdConfig) -> str:
    patch_id = _patch_id(context, config)
    try:
        queue = _queue(current_settings())
        record = queue.get(patch_id).record
        target = queue.reject(patch_id, config.reason)
    except AqueductError as error:
        raise dg.Failure(str(error)) from None
    _withdraw(context.instance, patch_id)
    context.log.info(f"rejected {patch_id}: {target}")
    announce_review("patch_rejected", record, config.reason or "rejected by a reviewer", context.log)
    return str(target)


@dg.job(name=APPROVE_JOB, executor_def=dg.in_process_executor, partitions_def=PENDING_PATCHES,
        description="Apply a pending patch: pick it as the partition")  # fmt: skip
def approve_patch_job() -> None:
    approve_patch_op()


@dg.job(name=REJECT_JOB, executor_def=dg.in_process_executor, partitions_def=PENDING_PATCHES,
        description="Reject a pending patch: pick it as the partition")  # fmt: skip
def reject_patch_job() -> None:
    reject_patch_op()


# --------------------------------------------------------------------------- sensors


def build_failure_sensor(blueprint_jobs: Sequence[Any],
                         interval_seconds: int = DEFAULT_SENSOR_INTERVAL) -> dg.SensorDefinition:  # fmt: skip
    names = {job.name for job in blueprint_jobs}

    @dg.run_failure_sensor(
        name=HEAL_SENSOR,
        # Failures of every origin, filtered below: a run `aqueduct run` made in its own process
        # has no code-location origin, and Dagster only matches monitored jobs by origin.
        monitor_all_code_locations=True,
        request_job=aqueduct_heal_job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches a heal run for every failed blueprint run",
    )
    def heal_on_failure(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        if not is_blueprint_run(run, names):
            return dg.SkipReason(f"run {run.run_id} of '{run.job_name}' is no run of a Blueprint of this code location")
        return dg.RunRequest(
            run_key=f"heal-{run.run_id}",
            run_config={"ops": {"heal": {"config": {"run_id": run.run_id}}}},
            tags={HEAL_TAG: run.run_id, BLUEPRINT_TAG: run.tags.get(BLUEPRINT_TAG, "")},
        )

    return heal_on_failure
