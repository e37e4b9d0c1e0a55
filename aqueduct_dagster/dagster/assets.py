"""One Dagster asset per Manifest module; Asserts become blocking checks on what they guard.

An Assert does not produce data of its own: it guards the frame flowing into it. So it is
modelled as an asset check on the nearest upstream non-Assert module, evaluated in the same
step right after the frame is built (no second Spark plan), and its consumers read the
guarded asset directly. A failed `abort` rule is an ERROR-severity blocking check: Dagster
fails the step and skips everything downstream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.dagster.io_manager import CHECKPOINT_METADATA_KEY, CONSUMERS_METADATA_KEY
from aqueduct_dagster.dagster.metadata import (
    COLUMN_LINEAGE_KEY,
    column_lineage_markdown,
    materialization_metadata,
    metadata_value,
)
from aqueduct_dagster.dagster.retry import effective_retry
from aqueduct_dagster.dagster.scheduling import automation_condition_of, partitions_def_of
from aqueduct_dagster.dagster.translator import BlueprintTranslator, ModuleAssetData, safe_name
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.redaction import Redactor, install_log_redaction

SPARK_RESOURCE_KEY = "aqueduct_spark"
#: Each Blueprint's revision asset (dagster/healing.py materializes it when a patch applies):
#: upstream of the Blueprint's Ingress assets, so an applied patch marks the outputs stale.
REVISION_ASSET_NAME = "blueprint_revision"


def revision_asset_key(blueprint_id: str) -> dg.AssetKey:
    return dg.AssetKey([blueprint_id, REVISION_ASSET_NAME])
IO_MANAGER_KEY = "aqueduct_io_manager"
ERROR_METADATA_KEY = "aqueduct/error"


def collapses_into_check(manifest: Manifest, module: CompiledModule) -> bool:
    """An Assert that only checks (no quarantine, no spillway reader) is a check, not an asset."""
    if not module.is_quality_check:
        return False
    quarantines = any(rule.action == "quarantine" for rule in module.spec.config.rules)
    spilled = any(i.source == module.id and i.port == "spillway" for m in manifest.modules.values() for i in m.inputs)
    # Checks attach to an asset's main output; an Assert on a branch or spillway is an asset.
    on_a_port = bool(module.inputs) and module.inputs[0].port != "main"
    return not quarantines and not spilled and not on_a_port


def guarded_module(manifest: Manifest, module: CompiledModule) -> CompiledModule:
    """The module whose output a checking Assert (or a chain of them) guards."""
    current = module
    while collapses_into_check(manifest, current) and current.inputs:
        current = manifest.module(current.inputs[0].source)
    return current


def output_ports(manifest: Manifest, module: CompiledModule) -> list[str]:
    """The ports a module's asset publishes: branches for a Junction, main (+ spillway if read)."""
    read = {i.port for m in manifest.modules.values() for i in m.inputs if i.source == module.id}
    ports = list(module.output_ports)
    return ports + (["spillway"] if "spillway" in read and "spillway" not in ports else [])


def _out_name(port: str) -> str:
    return "result" if port == "main" else f"port_{safe_name(port)}"


def build_blueprint_assets(
    manifest: Manifest,
    translator: BlueprintTranslator | None = None,
    upstream: Mapping[str, dg.AssetKey] | None = None,
) -> list[dg.AssetsDefinition]:
    """`upstream`: Ingress id -> the asset (of another Blueprint) whose output it reads."""
    translator = translator or BlueprintTranslator()
    producers = [m for m in manifest.modules.values() if not collapses_into_check(manifest, m)]
    specs = {m.id: translator.get_asset_spec(ModuleAssetData(manifest, m)) for m in producers}

    def key_of(module_id: str, port: str = "main") -> dg.AssetKey:
        module = guarded_module(manifest, manifest.module(module_id))
        base = specs[module.id].key
        # A Probe publishes one thing (its signals), whatever port the edge names.
        if port == "main" or module.emits_signals:
            return base
        return dg.AssetKey([*base.path, port])

    consumer_count = _consumer_counts(manifest)
    guards: dict[str, list[CompiledModule]] = {}
    for module in manifest.modules.values():
        if collapses_into_check(manifest, module):
            guards.setdefault(guarded_module(manifest, module).id, []).append(module)

    return [
        _module_asset(manifest, module, specs[module.id], key_of, guards.get(module.id, []),
                      consumer_count.get(module.id, 0), _external_deps(manifest, module, upstream))  # fmt: skip
        for module in producers
    ]


def _external_deps(manifest: Manifest, module: CompiledModule,
                   upstream: Mapping[str, dg.AssetKey] | None) -> list[dg.AssetKey]:  # fmt: skip
    if not module.reads_source:
        return []
    found = [revision_asset_key(manifest.blueprint_id)]
    if module.id in (upstream or {}):
        found.append(upstream[module.id])  # type: ignore[index]
    return found


def _consumer_counts(manifest: Manifest) -> dict[str, int]:
    """Readers of each producer's frame. A check reads the frame it guards too (one
    aggregate, in the guarded asset's step): with a downstream reader as well, the frame is
    persisted, or the check's job and the reader's would each compute it from the sources."""
    counts: dict[str, int] = {}
    for module in manifest.modules.values():
        if collapses_into_check(manifest, module):
            guarded = guarded_module(manifest, module).id
            counts[guarded] = counts.get(guarded, 0) + 1
            continue
        for source in {guarded_module(manifest, manifest.module(i.source)).id for i in module.inputs}:
            counts[source] = counts.get(source, 0) + 1
    return counts


def _module_asset(
    manifest: Manifest,
    module: CompiledModule,
    spec: dg.AssetSpec,
    key_of,
    asserts: list[CompiledModule],
    consumers: int,
    external: list[dg.AssetKey] | None = None,
) -> dg.AssetsDefinition:
    # Dagster hands each input by name; the runner routes them (alias, spillway error_types).
    input_names = {f"in_{index}": (inp.source, inp.port) for index, inp in enumerate(module.inputs)}
    ins = {
        name: dg.AssetIn(key=key_of(inp.source, inp.port), input_manager_key=IO_MANAGER_KEY)
        for name, inp in zip(input_names, module.inputs, strict=True)
    }
    after = [key_of(dep) for dep in module.after if key_of(dep) not in {i.key for i in ins.values()}]
    after += external or []  # another Blueprint's output this Ingress reads
    metadata = dict(spec.metadata or {})
    metadata[CONSUMERS_METADATA_KEY] = consumers
    if (manifest.checkpoint or module.spec.checkpoint) and module.checkpointable:
        metadata[CHECKPOINT_METADATA_KEY] = True
    metadata.update(_column_lineage(module, key_of))
    ports = output_ports(manifest, module)
    automation = automation_condition_of(manifest)
    outs = {}
    for port in ports:
        port_spec = spec.replace_attributes(deps=[], metadata={**metadata, "aqueduct/port": port},
                                            automation_condition=automation)  # fmt: skip
        if port != "main":
            port_spec = port_spec.replace_attributes(
                key=key_of(module.id, port), description=f"{module.label}: {port}",
            )  # fmt: skip
        # Branches and spillways may be absent (a skipped Regulator publishes nothing):
        # Dagster then skips what reads them instead of failing.
        required = port == "main" and not module.gates_on_signals
        outs[_out_name(port)] = dg.AssetOut.from_spec(port_spec, io_manager_key=IO_MANAGER_KEY, is_required=required)
    check_targets = [(check, spec.key) for check in asserts]
    if module.is_quality_check:
        check_targets.append((module, spec.key))
    check_specs = [
        dg.AssetCheckSpec(
            name=safe_name(check.id),
            asset=target,
            blocking=True,
            description=check.spec.description or check.spec.label or f"Assert '{check.id}'",
            metadata={"aqueduct/module_id": check.id},
        )
        for check, target in check_targets
    ]

    @dg.multi_asset(
        name=safe_name(f"{manifest.blueprint_id}__{module.id}"),
        outs=outs,
        ins=ins,
        deps=after,
        check_specs=check_specs,
        required_resource_keys={SPARK_RESOURCE_KEY},
        can_subset=False,
        retry_policy=effective_retry(manifest, module),
        partitions_def=partitions_def_of(manifest),
    )
    def _compute(context, **inputs):  # annotations stay off: Dagster inspects them at runtime
        yield from run_module_step(
            context, manifest, module, {input_names[n]: f for n, f in inputs.items()}, asserts,
            ports=ports, key_of=key_of,
        )  # fmt: skip

    return _compute


def run_module_step(
    context: dg.AssetExecutionContext,
    manifest: Manifest,
    module: CompiledModule,
    upstream: Mapping[tuple[str, str], Any],
    asserts: list[CompiledModule],
    *,
    ports: list[str] | None = None,
    key_of=None,
) -> Iterator[Any]:
    from aqueduct_dagster.dagster.webhooks import notify_assert_failures, notify_module_failure
    from aqueduct_dagster.engine import ModuleFailed, evaluate_assert, execute_module
    from aqueduct_dagster.engine.runner import route_inputs

    resource = getattr(context.resources, SPARK_RESOURCE_KEY)
    bound = resource.bound_manifest(
        manifest, context.run_id, _previous_run_id(context), context.instance,
        partition_key=context.partition_key if context.has_partition_key else None,
    )
    spark = resource.session_for(bound)
    module = bound.module(module.id)
    # Built before the module runs: a secret too short to redact refuses the run up front,
    # rather than leaking when the step fails. Console logs of this process pass it too.
    redactor = _run_redactor(context.run_id, bound)
    started = time.monotonic()

    def record(status: str, rows: Any = None, detail: dict[str, Any] | None = None) -> None:
        elapsed = int((time.monotonic() - started) * 1000)
        resource.record(context.log, bound, lambda store: store.record_module_metric(
            run_id=context.run_id, blueprint_id=bound.blueprint_id, module_id=module.id,
            module_type=module.type, status=status, duration_ms=elapsed,
            rows_written=int(rows) if isinstance(rows, (int, float)) else None, detail=detail,
        ))  # fmt: skip

    frames: dict[str, Any] = {}
    try:
        frames = route_inputs(module, upstream)
        result = execute_module(spark, module, frames)
    except ModuleFailed as failure:
        record("failure", detail={"condition": failure.error.condition, "signature": failure.error.signature()})
        error = _redacted_failure(redactor, module, failure, frames)
        notify_module_failure(bound, module, error.description, run_id=context.run_id, redactor=redactor)
        raise error from None
    if result.metadata.get("depot"):
        # Staged under this run: later runs read it only once the whole run succeeded.
        resource.depot(bound).stage(context.run_id, result.metadata["depot"])
    record("success", result.metadata.get("rows_written"), detail=run_evidence(module, result.metadata))
    metadata = materialization_metadata(module, result.metadata)
    if module.emits_signals:
        signals = result.metadata.get("signals", [])
        if key_of is not None and module.spec.attach_to:
            context.log_event(dg.AssetObservation(
                asset_key=key_of(module.spec.attach_to),
                description=f"Probe '{module.id}': {len(signals)} signal(s)",
                metadata={"aqueduct/probe": module.id, "signals": dg.MetadataValue.json(_jsonable(signals)),
                          **{f"signal/{s.get('id') or s.get('type')}": _metadata_value(s.get("value")) for s in signals}},
            ))  # fmt: skip
        yield dg.Output(signals, output_name="result", metadata={"signals": dg.MetadataValue.json(_jsonable(signals))})
        return
    if result.assertion is not None and result.assertion.quarantined is not None:
        metadata["aqueduct/quarantined_rows"] = int(result.assertion.quarantined)
    if module.gates_on_signals and result.metadata.get("skipped"):
        context.log.info(f"Regulator '{module.id}' is closed ({result.metadata.get('reason')}): downstream skipped")
    for port in ports or ["main"]:
        if port not in result.outputs and not (port == "main" and module.writes_sink):
            continue
        frame = result.outputs.get(port)
        port_metadata = dict(metadata)
        if frame is not None:
            port_metadata["dagster/column_schema"] = _table_schema(frame)
        yield dg.Output(frame, output_name=_out_name(port), metadata=port_metadata)
    frame = result.outputs.get("main")
    target = key_of(module.id) if key_of is not None else context.assets_def.key
    if module.is_quality_check and result.assertion is not None:
        notify_assert_failures(bound, module, result.assertion, run_id=context.run_id, redactor=redactor)
        yield _check_result(target, module, result.assertion)
    for check in asserts:
        checked = bound.module(check.id)
        try:
            outcome = evaluate_assert(spark, checked, frame)
        except ModuleFailed as failure:
            # The check's aggregate is the first action on the guarded frame: a lazy fault of
            # an upstream plan (a CAST, a division) raises here. Recorded exactly as a step's
            # failure is, under the Assert's id (where it surfaced), so the heal job finds it.
            record("failure", detail={"condition": failure.error.condition, "signature": failure.error.signature(),
                                      "check": check.id})  # fmt: skip
            aliases = [edge.alias for edge in checked.inputs] or [module.id]
            raise _redacted_failure(redactor, checked, failure, {aliases[0]: frame}) from None
        notify_assert_failures(bound, checked, outcome, run_id=context.run_id, redactor=redactor)
        yield _check_result(target, check, outcome)


def run_evidence(module: CompiledModule, metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a later heal compares against (healing/drift.py, healing/contract.py): the columns
    each module produced, what each Ingress read, and the row count each Egress published.
    All of it comes from the analysed plans and write metrics: no Spark job."""
    evidence: dict[str, Any] = {}
    if metadata.get("columns") is not None:
        evidence["columns"] = metadata["columns"]
    if module.reads_source and metadata.get("snapshot"):
        evidence["snapshot"] = metadata["snapshot"]
    if module.writes_sink and metadata.get("columns") is not None:
        evidence["contract"] = {"columns": metadata["columns"], "rows_written": metadata.get("rows_written"),
                                "mode": metadata.get("mode"), "profile": metadata.get("profile")}  # fmt: skip
    return evidence or None


#: One Redactor per (run, Blueprint): the steps of a run in one process share it.
_REDACTORS: dict[tuple[str, str], Redactor] = {}
_KEPT_REDACTORS = 16


def _run_redactor(run_id: str, manifest: Manifest) -> Redactor:
    key = (run_id, manifest.blueprint_id)
    redactor = _REDACTORS.get(key)
    if redactor is None:
        redactor = Redactor.for_manifest(manifest)
        install_log_redaction(redactor)
        while len(_REDACTORS) >= _KEPT_REDACTORS:
            _REDACTORS.pop(next(iter(_REDACTORS)))
        _REDACTORS[key] = redactor
    return redactor


def _redacted_failure(redactor: Redactor, module: CompiledModule, failure: Any,
                      frames: Mapping[str, Any]) -> dg.Failure:  # fmt: skip
    """The step's failure as the event log keeps it: one FailureRecord, redacted.

    Raised `from None`: Dagster records an exception's cause chain in the event log, and the
    ModuleFailed (with the Spark exception below it) holds the raw text, secrets and data
    values included. The structured record travels in the metadata instead.
    """
    # Column names come from the data: secrets out (`redacted`); the healer fences them as data.
    schemas = {alias: _schema_pairs(frame) for alias, frame in frames.items()}
    record = FailureRecord.from_failure(failure, schemas).model_copy(update={"module_id": module.id})
    record = record.redacted(redactor)
    return dg.Failure(
        description=record.message,
        metadata={ERROR_METADATA_KEY: dg.MetadataValue.json(json.loads(record.to_json()))},
        allow_retries=failure.transient,
    )


def _check_result(target: dg.AssetKey, check: CompiledModule, outcome: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=safe_name(check.id),
        asset_key=target,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking else dg.AssetCheckSeverity.WARN,
        description=outcome.summary(),
        metadata={
            "aqueduct/module_id": check.id,
            "aqueduct/rules": dg.MetadataValue.json([_jsonable(vars(rule)) for rule in outcome.results]),
            "aqueduct/failed_rules": [r.name for r in outcome.results if not r.passed],
        },
    )


def _metadata_value(value: Any) -> Any:
    return metadata_value(value)


def _previous_run_id(context: dg.AssetExecutionContext) -> str | None:
    runs = context.instance.get_runs(filters=dg.RunsFilter(job_name=context.job_name), limit=2)
    earlier = [run.run_id for run in runs if run.run_id != context.run_id]
    return earlier[0] if earlier else None


def _schema_pairs(frame: Any) -> list[list[str]]:
    try:
        return [[f.name, f.dataType.simpleString()] for f in frame.schema.fields]
    except Exception:  # noqa: BLE001 - an input whose plan no longer analyses
        return []


def _table_schema(frame: Any) -> dg.TableSchema:
    # df.schema only analyses the plan; it runs no Spark job.
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=f.name, type=f.dataType.simpleString()) for f in frame.schema.fields
        ]
    )


def _column_lineage(module: CompiledModule, key_of) -> dict[str, Any]:
    """`dagster/column_lineage` (rendered by Dagster+ only) and the same as a Markdown table
    that open-source Dagster shows. Upstream columns are named by asset: a column read
    through a checking Assert comes from the asset the Assert guards."""
    if not module.column_lineage:
        return {}
    deps = {
        column: [dg.TableColumnDep(asset_key=key_of(src.module), column_name=src.column) for src in sources]
        for column, sources in module.column_lineage.items()
    }
    return {
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
        COLUMN_LINEAGE_KEY: column_lineage_markdown(key_of(module.id), deps),
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
