"""Regulator: a gate on one frame, opened or closed by the Probe signals wired to it.

The gate is open when every signal that carries a `passed` verdict passed (signals without
one, such as metrics or signals that errored, do not gate), and when no signal edge is wired
at all: the Regulator is then passive, as if compiled away. When it is closed, `on_block`
decides (default `skip`):

- `skip`: no output frame; `metadata["skipped"]` tells the caller to skip everything
  downstream (the runner does, and records it);
- `abort`: ConditionError `AQ_REGULATOR_BLOCKED`;
- `trigger_agent`: ConditionError `AQ_REGULATOR_TRIGGER_AGENT` (healing picks it up).

With `timeout_seconds`, a closed gate re-evaluates its signals every `poll_seconds` (default:
5 s, at most the timeout) through a `recompute` callable until they pass or the time is up;
still closed then, `on_block` applies (the gate never opens by itself). Without a `recompute`
(the default) there is nothing to wait for, and the first verdict stands.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import RegulatorConfig
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.modules.common import single_input
from aqueduct_dagster.engine.results import ModuleResult, ProbeSignals

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

SIGNAL_PORT = "signal"
DEFAULT_POLL_SECONDS = 5.0

Signals = list[dict[str, Any]]
Recompute = Callable[[], Signals]


@dataclass(frozen=True)
class RegulatorDecision:
    """Whether a Regulator lets its frame through, why, and what happens when it does not."""

    open: bool
    reason: str
    on_block: str
    #: Ids of the signals whose `passed` verdict was false.
    failed: tuple[str, ...] = ()
    #: Ids of the signals that carried a verdict (the ones that gate).
    gating: tuple[str, ...] = ()
    #: How many times the signals were evaluated (more than 1 only when polling).
    evaluations: int = 1
    timed_out: bool = False
    #: Signals that errored (they carry no verdict, so they do not gate): id -> error.
    errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"], data["gating"] = list(self.failed), list(self.gating)
        return data


def evaluate_regulator(
    module: CompiledModule, signals: Iterable[Mapping[str, Any]] | None
) -> RegulatorDecision:
    """The gate's verdict on `signals` (None: no signal edge is wired, so it is passive)."""
    config: RegulatorConfig = module.config
    on_block = config.on_block or "skip"
    if signals is None:
        return RegulatorDecision(
            True, "no signal edge is wired: the Regulator is passive", on_block
        )
    entries = list(signals)
    errors = {_id(s, i): str(s["error"]) for i, s in enumerate(entries) if s.get("error")}
    verdicts = [
        (_id(s, i), bool(s["passed"])) for i, s in enumerate(entries) if s.get("passed") is not None
    ]
    failed = tuple(sid for sid, passed in verdicts if not passed)
    gating = tuple(sid for sid, _ in verdicts)
    if not verdicts:
        reason = f"none of the {len(entries)} signal(s) carries a passed verdict: nothing gates"
    elif failed:
        reason = f"signal(s) {', '.join(repr(s) for s in failed)} did not pass"
    else:
        reason = f"all {len(verdicts)} gating signal(s) passed"
    if errors:
        reason += f"; errored, so not gating: {', '.join(repr(s) for s in errors)}"
    return RegulatorDecision(not failed, reason, on_block, failed, gating, errors=errors)


def poll_regulator(
    module: CompiledModule,
    signals: Iterable[Mapping[str, Any]] | None,
    recompute: Recompute | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RegulatorDecision:
    """`evaluate_regulator`, then, while closed and `timeout_seconds` is set, re-evaluate
    `recompute()` every `poll_seconds` until the gate opens or the timeout ends.

    A timeout is a fallback, as Aqueduct documents it: when no passing signal arrives in
    time, the gate opens (`timed_out` says so). `on_block` applies to gates without one.
    """
    config: RegulatorConfig = module.config
    decision = evaluate_regulator(module, signals)
    timeout = config.timeout_seconds or 0
    if decision.open or timeout <= 0:
        return decision
    if recompute is None:
        # Nothing can change the signals while we wait: take the fallback now.
        return replace(
            decision, open=True, timed_out=True,
            reason=decision.reason + f"; opened by the timeout fallback (timeout_seconds={timeout:g}, "
            "nothing re-evaluates the signals)",
        )  # fmt: skip
    poll = min(config.poll_seconds or DEFAULT_POLL_SECONDS, timeout)
    deadline = clock() + timeout
    evaluations = 1
    while (remaining := deadline - clock()) > 0:
        sleep(max(min(poll, remaining), 0.001))
        decision = evaluate_regulator(module, recompute())
        evaluations += 1
        if decision.open:
            return replace(decision, evaluations=evaluations)
    return replace(
        decision,
        open=True,
        evaluations=evaluations,
        timed_out=True,
        reason=f"{decision.reason}; opened by the timeout fallback after {timeout:g} s ({evaluations} evaluations)",
    )


def execute_regulator(
    spark: SparkSession,
    module: CompiledModule,
    inputs: Mapping[str, Any],
    *,
    recompute: Recompute | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ModuleResult:
    """The Regulator module. `inputs` holds its data frame and, on its signal edge(s), a
    ProbeSignals (as the runner passes it) or a plain list of signal entries.

    Open: `{"main": frame}`. Closed with on_block skip: no outputs, `metadata["skipped"]`.
    """
    data, signals, wired_recompute = _split_inputs(module, inputs)
    frame = single_input(module, data)
    recompute = recompute or wired_recompute
    decision = poll_regulator(module, signals, recompute, sleep=sleep, clock=clock)
    metadata: dict[str, Any] = {
        "regulator": "open" if decision.open else "blocked",
        "reason": decision.reason,
        "on_block": decision.on_block,
        "decision": decision.to_dict(),
    }
    if decision.open:
        return ModuleResult(outputs={"main": frame}, metadata=metadata)
    if decision.on_block == "skip":
        metadata["skipped"] = True
        return ModuleResult(outputs={}, metadata=metadata)
    condition = (
        "AQ_REGULATOR_TRIGGER_AGENT"
        if decision.on_block == "trigger_agent"
        else "AQ_REGULATOR_BLOCKED"
    )
    raise ConditionError(
        condition,
        f"Regulator '{module.id}' is closed: {decision.reason}",
        {
            "regulator": module.id,
            "on_block": decision.on_block,
            "failed": ", ".join(decision.failed),
        },
        hint="fix what the Probe's failing signal measures upstream; or set on_block: skip to "
        "skip the gated branch instead of stopping the run",
    )


def _split_inputs(
    module: CompiledModule, inputs: Mapping[str, Any]
) -> tuple[dict[str, DataFrame], Signals | None, Recompute | None]:
    """(data frames by alias, every signal entry (None: no signal wired), their recompute)."""
    signal_aliases = {i.alias for i in module.inputs if i.port == SIGNAL_PORT}
    data: dict[str, DataFrame] = {}
    sources: list[ProbeSignals] = []
    for alias, value in inputs.items():
        if isinstance(value, ProbeSignals):
            sources.append(value)
        elif isinstance(value, (list, tuple)):
            sources.append(ProbeSignals(alias, list(value)))
        elif alias in signal_aliases:
            raise ConditionError(
                "AQ_REGULATOR_SIGNAL_INVALID",
                f"signal input '{alias}' holds a {type(value).__name__}, not Probe signals",
                {"input": alias, "kind": type(value).__name__},
                hint="pass the Probe's ProbeSignals (or its metadata['signals'] list) on the "
                "signal edge",
            )
        else:
            data[alias] = value
    if not sources:
        return data, None, None
    signals = [entry for source in sources for entry in source.signals]
    if all(source.recompute is None for source in sources):
        return data, signals, None

    def recompute() -> Signals:
        # Sources that cannot recompute keep their first signals.
        return [
            entry
            for source in sources
            for entry in (source.recompute() if source.recompute else source.signals)
        ]

    return data, signals, recompute


def _id(signal: Mapping[str, Any], index: int) -> str:
    return str(signal.get("id") or signal.get("type") or f"signal_{index + 1}")
