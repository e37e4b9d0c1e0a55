"""Run a whole Manifest on one SparkSession, module by module, frames handed over lazily.

Only Egress writes and Assert rules run Spark jobs. A frame that two or more modules (or
actions) consume is persisted once, so its lineage is not computed twice, and unpersisted
when the run ends. Disabled modules are skipped together with everything downstream of them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import (
    AssertionFailed,
    ConditionError,
    location_of,
    module_failure,
)
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.results import AssertOutcome, ModuleResult
from aqueduct_dagster.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest

log = logging.getLogger(__name__)

#: Module types whose frame passes through unchanged (Assert), or that are side effects only
#: (Egress): when not selected by `only`, they hand their input on without running.
_PASS_THROUGH = ("Assert", "Egress")

Key = tuple[str, str]  # (module id, port)


@dataclass
class RunResult:
    """Per-module results of one run, in execution order."""

    modules: dict[str, ModuleResult] = field(default_factory=dict)
    assertions: dict[str, AssertOutcome] = field(default_factory=dict)
    #: Disabled modules and their downstream consumers.
    skipped: list[str] = field(default_factory=list)
    #: Ancestors run only to feed the selected modules (Assert/Egress among them did nothing).
    prepared: list[str] = field(default_factory=list)
    #: "module.port" of every frame the runner persisted because several modules read it.
    cached: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def output(self, module_id: str, port: str = "main") -> DataFrame:
        return self.modules[module_id].outputs[port]

    @property
    def warnings(self) -> list[str]:
        return [o.summary() for o in self.assertions.values() if not o.passed]


def run_manifest(
    spark: SparkSession, manifest: Manifest, *, only: Iterable[str] | None = None
) -> RunResult:
    """Execute the Manifest's modules in order; raise on the first failure.

    `only` limits the run to those modules: their ancestors still build the frames they
    read (lazily), but ancestor Egress and Assert modules neither write nor check. Raises
    ModuleFailed for a failing module and AssertionFailed for a blocking Assert.
    """
    order = list(manifest.modules.values())
    selected = _selected(manifest, only)
    needed = _with_ancestors(manifest, selected)
    skipped = _disabled_with_descendants(order)
    runnable = [m for m in order if m.id in needed and m.id not in skipped]
    active = {m.id for m in runnable if m.id in selected}
    uses = _uses(runnable, active)

    result = RunResult(skipped=[m.id for m in order if m.id in skipped])
    frames: dict[Key, DataFrame] = {}
    persisted: list[DataFrame] = []
    try:
        for module in runnable:
            inputs = _inputs(module, frames)
            if module.id not in active:
                result.prepared.append(module.id)
                if module.type in _PASS_THROUGH:
                    frames[(module.id, "main")] = _only_input(module, inputs)
                    continue
            started = time.perf_counter()
            outcome = execute_module(spark, module, inputs)
            result.seconds[module.id] = round(time.perf_counter() - started, 3)
            if module.id in active:
                result.modules[module.id] = outcome
            if outcome.metadata.get("persisted"):  # a Channel `cache` op
                persisted.extend(outcome.outputs.values())
            for port, frame in outcome.outputs.items():
                key = (module.id, port)
                if module.type == "Assert" and port == "main":
                    # The same frame as the Assert's input: already cached if it needs to be.
                    frames[key] = frame
                    continue
                if uses[key] > 1 and not _is_persisted(frame):
                    frame = frame.persist()
                    persisted.append(frame)
                    result.cached.append(f"{module.id}.{port}")
                frames[key] = frame
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


def _disabled_with_descendants(order: list[CompiledModule]) -> set[str]:
    skipped: set[str] = set()
    for module in order:
        if not _enabled(module.spec.enabled) or any(i.source in skipped for i in module.inputs):
            skipped.add(module.id)
    return skipped


def _enabled(value: bool | str) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off", "")
    return bool(value)


def _uses(runnable: list[CompiledModule], active: set[str]) -> Counter[Key]:
    """How many readers each (module, port) frame has; an Assert reads its input once itself,
    and its readers read that same frame."""
    by_id = {m.id: m for m in runnable}
    uses: Counter[Key] = Counter()

    def origin(key: Key) -> Key:
        module = by_id.get(key[0])
        passes_through = (
            module is not None
            and key[1] == "main"
            and (
                module.type == "Assert"
                or (module.type in _PASS_THROUGH and module.id not in active)
            )
        )
        if passes_through and len(module.inputs) == 1:
            source = module.inputs[0]
            return origin((source.source, source.port))
        return key

    for module in runnable:
        for source in module.inputs:
            uses[origin((source.source, source.port))] += 1
    return uses


def _inputs(module: CompiledModule, frames: dict[Key, DataFrame]) -> dict[str, DataFrame]:
    inputs: dict[str, DataFrame] = {}
    for source in module.inputs:
        frame = frames.get((source.source, source.port))
        if frame is None:
            available = [port for (mid, port) in frames if mid == source.source]
            error = ConditionError(
                "AQ_INPUT_NOT_FOUND",
                f"input '{source.source}.{source.port}' has no frame"
                + (f" (that module produced: {', '.join(available)})" if available else ""),
                {"source": source.source, "port": source.port},
                hint="check the edge's `port`; Channels with a spillway_condition have "
                "'main' and 'spillway'",
            )
            raise module_failure(module, error)
        inputs[source.alias] = frame
    return inputs


def _only_input(module: CompiledModule, inputs: dict[str, Any]) -> Any:
    if len(inputs) != 1:
        error = ConditionError(
            "AQ_INPUT_COUNT",
            f"a {module.type} module takes exactly one input; it got {len(inputs)}",
            {"expected": 1, "actual": len(inputs)},
        )
        raise module_failure(module, error)
    return next(iter(inputs.values()))
