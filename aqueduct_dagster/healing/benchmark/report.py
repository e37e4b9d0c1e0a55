"""One scenario's result and the report of a benchmark run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from aqueduct_dagster.healing.benchmark.execution import Execution
from aqueduct_dagster.healing.benchmark.grading import Check


@dataclass
class ScenarioResult:
    scenario_id: str
    path: str
    healer: str
    passed: bool
    stop_reason: str
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    patch: dict[str, Any] | None = None
    diagnosis: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)
    execution: Execution | None = None
    #: The engine would call this failure transient: production retries it and never heals it.
    transient: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.gating and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = self.tokens
        data["failures"] = self.failures
        return data


@dataclass
class BenchmarkReport:
    run_id: str
    results: list[ScenarioResult]

    def summary(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for result in self.results:
            row = table.setdefault(result.healer, {"passed": 0, "total": 0})
            row["total"] += 1
            row["passed"] += int(result.passed)
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "summary": self.summary(), "results": [r.to_dict() for r in self.results]}

    def table(self) -> str:
        header = ("scenario", "healer", "pass", "attempts", "tokens", "seconds", "stop reason")
        rows = [
            (r.scenario_id, r.healer, "PASS" if r.passed else "FAIL", str(r.attempts), str(r.tokens),
             f"{r.seconds:.2f}", r.stop_reason + (f" [run: {_execution_cell(r.execution)}]" if r.execution else ""))
            for r in self.results
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
            for row in [header, *rows]
        ]
        lines.append("")
        lines += [f"{healer}: {s['passed']}/{s['total']} passed" for healer, s in self.summary().items()]
        return "\n".join(lines)


def _execution_cell(execution: Execution) -> str:
    if not execution.executed:
        return execution.reason
    verdict = "ok" if execution.passed else "FAILED"
    return f"{verdict}{'' if execution.reproduced else ', bug not reproduced'}"
