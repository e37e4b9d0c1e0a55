"""Run a whole Manifest on one SparkSession, module by module, frames handed over lazily.

Only Egress writes, Assert rules and Probe signals run Spark jobs. Every input takes the
frame its edge names, `outputs[port]` of its source (a Junction's branches, a spillway); a
spillway edge's `error_types` keeps only the rows of those `_aq_error_type`s. A frame that two
or more modules (or actions) consume is persisted once, so its lineage is not computed twice,
and unpersisted when the run ends; Assert, Junction and Regulator outputs are filters of
their input, so it is their input that gets persisted.

A Probe's signals reach a Regulator on its `signal` edge. A Regulator that stays closed
with `on_block: skip` skips everything downstream of it (recorded in `RunResult.skipped`
and `RunResult.blocked`); a Regulator with `timeout_seconds` re-evaluates its Probe by
rebuilding the Probe's input from the sources up (Egress and Assert passed through).
Disabled modules never get here: the compiler drops them, with everything downstream.

This is the one place where ports are routed: a real run and the heal gates' replays (their
writes redirected to a scratch folder, their input optionally sampled) differ only in the
hooks they pass, so a sandbox verdict is the verdict of a real run.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import (
    AssertionFailed,
    ConditionError,
    location_of,
    module_failure,
)
from aqueduct_dagster.engine.modules.assertion import split_quarantine
from aqueduct_dagster.engine.modules.probe import probe_signals
from aqueduct_dagster.engine.modules.spillway import filter_spillway
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.results import AssertOutcome, ModuleResult, ProbeSignals
from aqueduct_dagster.engine.udfs import register_udfs
from aqueduct_dagster.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest

log = logging.getLogger(__name__)


def _hands_input_on(module: CompiledModule) -> bool:
    """A check (its frame passes through) or a write (a side effect only): when not selected
    by `only`, it hands its input on without running."""
    return module.is_quality_check or module.writes_sink

SIGNAL, SPILLWAY = "signal", "spillway"

Key = tuple[str, str]  # (module id, port)


@dataclass
class RunResult:
    """Per-module results of one run, in execution order."""

    modules: dict[str, ModuleResult] = field(default_factory=dict)
    assertions: dict[str, AssertOutcome] = field(default_factory=dict)
    #: Disabled modules and their downstream consumers, then the modules behind a closed
    #: Regulator (on_block: skip).
    skipped: list[str] = field(default_factory=list)
    #: Regulators that stayed closed with on_block skip -> why.
    blocked: dict[str, str] = field(default_factory=dict)
    #: Probe id -> its signal entries.
    signals: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Ancestors run only to feed the selected modules (Assert/Egress among them did nothing).
    prepared: list[str] = field(default_factory=list)
    #: "module.port" of every frame the runner persisted because several modules read it.
    cached: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: Depot values the run's modules want kept (watermarks, `format: depot` Egress):
    #: the caller stages them and commits them only if the whole run succeeded.
    depot: dict[str, str] = field(default_factory=dict)
    #: A sampled run's limit per Ingress (None: the run read all of its input).
    sample_rows: int | None = None
    #: A sampled run's Ingress id -> its main output limited to one row past the sample:
    #: counting it tells whether the sample was all of that input (`whole_input`).
    past_sample: dict[str, DataFrame] = field(default_factory=dict)

    def output(self, module_id: str, port: str = "main") -> DataFrame:
        return self.modules[module_id].outputs[port]

    def whole_input(self) -> bool:
        """Whether the run read every input row: no Ingress had more rows than the sample.

        One bounded job per Ingress, on the frame the run itself read (the source is not
        opened again), and only when asked: most sampled runs never need to know.
        """
        if self.sample_rows is None:
            return True
        return all(frame.count() <= self.sample_rows for frame in self.past_sample.values())

    @property
    def warnings(self) -> list[str]:
        return [o.summary() for o in self.assertions.values() if not o.passed]


#: Runs one module on its inputs (the hooks that change what runs are applied inside).
Execute = Callable[["CompiledModule", dict[str, Any]], ModuleResult]


def run_manifest(
    spark: SparkSession,
    manifest: Manifest,
    *,
    only: Iterable[str] | None = None,
    sample_rows: int | None = None,
    redirect: Callable[[CompiledModule], CompiledModule] | None = None,
    on_module_start: Callable[[CompiledModule, dict[str, Any]], None] | None = None,
    on_module_end: Callable[[CompiledModule, ModuleResult], None] | None = None,
    frames_only: bool = False,
) -> RunResult:
    """Execute the Manifest's modules in order; raise on the first failure.

    `only` limits the run to those modules: their ancestors still build the frames they
    read (lazily), but ancestor Egress and Assert modules neither write nor check. Raises
    ModuleFailed for a failing module and AssertionFailed for a blocking Assert.

    Hooks (the heal gates replay a patched Blueprint through them):
    `sample_rows` limits each Ingress's main output to that many rows (a Probe that a
    Regulator re-polls is rebuilt on the same sample); `redirect` turns each Egress into
    the one that actually writes (a scratch target), right before it executes;
    `on_module_start(module, inputs)` sees each module's routed inputs (alias -> frame)
    right before it executes or is passed through;
    `on_module_end(module, outcome)` sees every module that executed, with the module as
    the Manifest has it, once its outputs are routed (a blocking Assert's outcome too,
    before AssertionFailed is raised).
    `frames_only` builds frames and nothing else (blame's replay): `only`'s modules are
    prepared like their ancestors (no Egress writes, no Assert checks), and Probes are
    passed over, so their Regulators stay passive.
    """
    order = list(manifest.modules.values())
    selected = _selected(manifest, only)
    needed = _with_ancestors(manifest, selected)
    runnable = [m for m in order if m.id in needed]
    active = set() if frames_only else {m.id for m in runnable if m.id in selected}
    uses = _uses(runnable, active)

    result = RunResult(sample_rows=sample_rows)
    register_udfs(spark, manifest)
    frames: dict[Key, Any] = {}
    persisted: list[DataFrame] = []
    gated: set[str] = set()  # behind a closed Regulator

    def execute(module: CompiledModule, inputs: dict[str, Any]) -> ModuleResult:
        if redirect is not None and module.writes_sink:
            module = redirect(module)
        outcome = execute_module(spark, module, inputs)
        if sample_rows is not None and module.reads_source and "main" in outcome.outputs:
            # Limited before it is cached or read, so every reader sees the same sample; one
            # row more is kept aside to tell, if asked, whether the sample was all the input.
            result.past_sample[module.id] = outcome.outputs["main"].limit(sample_rows + 1)
            sampled = {**outcome.outputs, "main": result.past_sample[module.id].limit(sample_rows)}
            outcome = replace(outcome, outputs=sampled)
        return outcome

    try:
        for module in runnable:
            if module.id in gated:
                continue
            inputs = route_inputs(module, frames)
            if on_module_start is not None:
                on_module_start(module, inputs)
            if module.id not in active:
                result.prepared.append(module.id)
                if _hands_input_on(module) or (frames_only and module.emits_signals):
                    frames.update(_passed_through(module, inputs))
                    continue
            started = time.perf_counter()
            outcome = execute(module, inputs)
            result.seconds[module.id] = round(time.perf_counter() - started, 3)
            if module.id in active:
                result.modules[module.id] = outcome
            result.depot.update(outcome.metadata.get("depot") or {})
            if outcome.metadata.get("persisted"):  # a Channel `cache` op
                persisted.extend(outcome.outputs.values())
            if module.emits_signals:
                signals = outcome.metadata.get("signals", [])
                result.signals[module.id] = signals
                frames[(module.id, SIGNAL)] = ProbeSignals(
                    module.id, signals, _recompute(execute, manifest, module, signals)
                )
            if outcome.metadata.get("skipped"):  # a closed Regulator, on_block: skip
                behind = _downstream(manifest, module.id)
                gated |= behind
                result.blocked[module.id] = str(outcome.metadata.get("reason", ""))
                result.skipped += [m.id for m in runnable if m.id in behind]
                log.warning(
                    "Regulator '%s' is closed (%s): skipping %s",
                    module.id,
                    result.blocked[module.id],
                    ", ".join(m.id for m in runnable if m.id in behind) or "nothing",
                )
            for port, frame in outcome.outputs.items():
                key = (module.id, port)
                if module.filters_its_input:
                    # Filters of the module's input: that input is cached if it needs to be.
                    frames[key] = frame
                    continue
                if uses[key] > 1 and not _is_persisted(frame):
                    frame = frame.persist()
                    persisted.append(frame)
                    result.cached.append(f"{module.id}.{port}")
                frames[key] = frame
            if on_module_end is not None:
                on_module_end(module, outcome)
            if outcome.assertion is not None:
                result.assertions[module.id] = outcome.assertion
                if outcome.assertion.blocking:
                    raise AssertionFailed(
                        module.id, outcome.assertion, location=location_of(module)
                    )
                if not outcome.assertion.passed:
                    log.warning(outcome.assertion.summary())
    finally:
        for frame in persisted:
            try:
                frame.unpersist(blocking=False)
            except Exception:  # noqa: BLE001 - a dead session must not hide the real error
                pass
    return result


def _is_persisted(frame: DataFrame) -> bool:
    level = frame.storageLevel
    return bool(level.useMemory or level.useDisk or level.useOffHeap)


def _selected(manifest: Manifest, only: Iterable[str] | None) -> set[str]:
    if only is None:
        return set(manifest.modules)
    chosen = {only} if isinstance(only, str) else set(only)
    unknown = sorted(chosen - set(manifest.modules))
    if unknown:
        name = unknown[0]
        raise EngineError(
            f"`only` names unknown module '{name}'{did_you_mean(name, manifest.modules)}",
            hint=f"modules of this Blueprint: {', '.join(manifest.modules)}",
        )
    return chosen


def _with_ancestors(manifest: Manifest, selected: set[str]) -> set[str]:
    needed = set(selected)
    stack = list(selected)
    while stack:
        for source in manifest.modules[stack.pop()].inputs:
            if source.source not in needed and source.source in manifest.modules:
                needed.add(source.source)
                stack.append(source.source)
    return needed


def _uses(runnable: list[CompiledModule], active: set[str]) -> Counter[Key]:
    """How many readers each (module, port) frame has. Readers of an Assert, Junction or
    Regulator output read that module's input; an Assert (or a Probe) reads its input once
    itself, a Junction or Regulator does not. Signals are no frames: not counted."""
    by_id = {m.id: m for m in runnable}
    uses: Counter[Key] = Counter()

    def origin(key: Key) -> Key:
        module = by_id.get(key[0])
        if module is None:
            return key
        data = _data_inputs(module)
        derived = module.filters_its_input or (
            _hands_input_on(module) and module.id not in active and key[1] == "main"
        )
        if derived and len(data) == 1:
            return origin((data[0].source, data[0].port))
        return key

    for module in runnable:
        if module.filters_its_input and not module.is_quality_check:
            continue  # a Junction's or a Regulator's split runs no job on its input
        for source in _data_inputs(module):
            uses[origin((source.source, source.port))] += 1
    return uses


def _data_inputs(module: CompiledModule) -> list[Any]:
    return [i for i in module.inputs if i.port != SIGNAL]


def _downstream(manifest: Manifest, module_id: str) -> set[str]:
    """Every module that reads `module_id`'s data (or runs after it), directly or not."""
    behind: set[str] = set()
    stack = [module_id]
    while stack:
        current = stack.pop()
        for other in manifest.modules.values():
            if other.id in behind:
                continue
            reads = any(i.source == current and i.port != SIGNAL for i in other.inputs)
            if reads or current in other.after:
                behind.add(other.id)
                stack.append(other.id)
    return behind


def route_inputs(module: CompiledModule, frames: Mapping[Key, Any]) -> dict[str, Any]:
    """A module's inputs by alias, from the frames of (module, port) it reads: the one place an
    edge's port, alias and spillway `error_types` are applied (a whole run here, one Dagster
    step in dagster/assets.py). A missing signal port leaves a Regulator passive."""
    inputs: dict[str, Any] = {}
    for source in module.inputs:
        frame = frames.get((source.source, source.port))
        if frame is None:
            if source.port == SIGNAL:
                continue  # its Probe did not run: the Regulator is passive
            available = [port for (mid, port) in frames if mid == source.source]
            error = ConditionError(
                "AQ_INPUT_NOT_FOUND",
                f"input '{source.source}.{source.port}' has no frame"
                + (f" (that module produced: {', '.join(available)})" if available else ""),
                {"source": source.source, "port": source.port},
                hint="check the edge's `port`; Channels with a spillway_condition have "
                "'main' and 'spillway', Junctions one port per branch",
            )
            raise module_failure(module, error)
        if source.port == SPILLWAY and source.error_types:
            frame = filter_spillway(frame, source.error_types)
        inputs[source.alias] = frame
    return inputs


def _passed_through(module: CompiledModule, inputs: dict[str, Any]) -> dict[Key, Any]:
    """An unselected Assert or Egress (or a Probe, in a frames-only run): its input handed on
    (an Assert's quarantine still splits it, lazily, so that readers see the same rows as in
    a full run)."""
    frame = _only_input(module, inputs)
    if not module.is_quality_check:
        return {(module.id, "main"): frame}
    try:
        passed, quarantined = split_quarantine(module, frame)
    except Exception as exc:  # noqa: BLE001 - reported like any module failure
        raise module_failure(module, exc, inputs) from exc
    frames = {(module.id, "main"): passed}
    if quarantined is not None:
        frames[(module.id, SPILLWAY)] = quarantined
    return frames


def _recompute(
    execute: Execute, manifest: Manifest, probe: CompiledModule, first: list[dict[str, Any]]
) -> Callable[[], list[dict[str, Any]]]:
    """How a polling Regulator re-evaluates `probe`: its input rebuilt from the sources up
    (so new source data is seen), then its signals computed again. If the rebuild fails,
    the last signals stand."""
    last = {"signals": first}

    def recompute() -> list[dict[str, Any]]:
        persisted: list[DataFrame] = []
        try:
            inputs = _rebuilt_inputs(execute, manifest, probe, {}, persisted)
            last["signals"], _ = probe_signals(probe, _only_input(probe, inputs))
        except Exception as exc:  # noqa: BLE001 - the gate keeps its last verdict
            log.warning("Probe '%s' could not be re-evaluated: %s", probe.id, exc)
        finally:
            for frame in persisted:
                frame.unpersist(blocking=False)
        return last["signals"]

    return recompute


def _rebuilt_inputs(
    execute: Execute,
    manifest: Manifest,
    module: CompiledModule,
    fresh: dict[Key, Any],
    persisted: list[DataFrame],
) -> dict[str, Any]:
    """`module`'s data inputs, rebuilt by running its ancestors again without side effects."""
    for source in _data_inputs(module):
        if any(built == source.source for built, _ in fresh):
            continue
        upstream = manifest.modules[source.source]
        upstream_inputs = _rebuilt_inputs(execute, manifest, upstream, fresh, persisted)
        if _hands_input_on(upstream):
            fresh.update(_passed_through(upstream, upstream_inputs))
        elif upstream.gates_on_signals:  # it was open, or we would not be polling
            data = [upstream_inputs[i.alias] for i in _data_inputs(upstream)]
            fresh[(upstream.id, "main")] = data[0]
        else:
            outcome = execute(upstream, upstream_inputs)
            if outcome.metadata.get("persisted"):
                persisted.extend(outcome.outputs.values())
            fresh.update({(upstream.id, port): f for port, f in outcome.outputs.items()})
    return route_inputs(module, fresh)


def _only_input(module: CompiledModule, inputs: dict[str, Any]) -> Any:
    if len(inputs) != 1:
        error = ConditionError(
            "AQ_INPUT_COUNT",
            f"a {module.type} module takes exactly one input; it got {len(inputs)}",
            {"expected": 1, "actual": len(inputs)},
        )
        raise module_failure(module, error)
    return next(iter(inputs.values()))
