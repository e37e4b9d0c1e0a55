"""What running a module gives back: frames by port, JSON-able facts, Assert outcomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

#: Rule actions that stop the run when their rule fails.
BLOCKING_ACTIONS = frozenset({"abort", "trigger_agent"})


@dataclass
class RuleResult:
    """One Assert rule, evaluated."""

    name: str
    type: str
    passed: bool
    action: str
    observed: Any
    expected: Any
    message: str
    #: The rule's `error_type` label (matched by agent guardrails), when it has one.
    error_type: str | None = None

    @property
    def blocking(self) -> bool:
        return not self.passed and self.action in BLOCKING_ACTIONS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AssertOutcome:
    """Every rule of one Assert module, evaluated on one frame."""

    module_id: str
    results: list[RuleResult] = field(default_factory=list)
    #: Spark actions the evaluation ran (aggregates in one, sampled null rates in one more).
    actions: int = 0
    #: Rows that `on_fail: quarantine` rules route to the spillway (None: no such rules).
    quarantined: int | None = None

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def blocking(self) -> bool:
        return any(r.blocking for r in self.results)

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> str:
        if self.passed:
            return f"Assert '{self.module_id}': all {len(self.results)} rules passed"
        verdict = "blocked" if self.blocking else "warned"
        counts = f"{len(self.failed)} of {len(self.results)} rules failed"
        lines = [f"Assert '{self.module_id}' {verdict}: {counts}"]
        lines += [f"  - {r.name} [{r.action}]: {r.message}" for r in self.failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "module_id": self.module_id,
            "passed": self.passed,
            "blocking": self.blocking,
            "actions": self.actions,
            "quarantined": self.quarantined,
            "results": [r.to_dict() for r in self.results],
        }


@dataclass
class ModuleResult:
    """A module's output frames (port -> DataFrame, usually just "main") and its facts."""

    outputs: dict[str, DataFrame] = field(default_factory=dict)
    #: JSON-able facts: path, format, mode, Delta version, rows written, sql ...
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Set for Assert modules: the evaluated rules (`main` is the frame less its quarantined
    #: rows, `spillway` those rows, when the Assert has quarantine rules).
    assertion: AssertOutcome | None = None

    @property
    def main(self) -> DataFrame | None:
        return self.outputs.get("main")


@dataclass
class ProbeSignals:
    """What a Probe hands a Regulator on its `signal` port: its signal entries, and how to
    compute them again (a Regulator with `timeout_seconds` polls through `recompute`)."""

    probe_id: str
    signals: list[dict[str, Any]]
    recompute: Callable[[], list[dict[str, Any]]] | None = None
