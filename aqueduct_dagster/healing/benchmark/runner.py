"""Running scenarios: heal, grade, optionally execute, record."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aqueduct_dagster.config import AgentConnection
from aqueduct_dagster.errors import SourceLocation
from aqueduct_dagster.healing.benchmark.attempt import diagnoser_for, heal_scenario, llm_connection
from aqueduct_dagster.healing.benchmark.execution import Execution, execute_scenario
from aqueduct_dagster.healing.benchmark.grading import grade, stop_reason
from aqueduct_dagster.healing.benchmark.injection import build_scenario_package
from aqueduct_dagster.healing.benchmark.report import BenchmarkReport, ScenarioResult
from aqueduct_dagster.healing.benchmark.scenario import (
    RULES,
    LoadedScenario,
    ScenarioError,
    discover_scenarios,
    load_scenario,
)


def run_scenario(loaded: LoadedScenario, *, healer: str = RULES, connection: AgentConnection | None = None,
                 execute: bool = False, spark: Any = None) -> ScenarioResult:  # fmt: skip
    """Heal and grade one scenario; an unexpected error is a failed result, never a crash."""
    started = time.monotonic()
    result = ScenarioResult(loaded.id, str(loaded.path), healer, False, "")
    try:
        package = build_scenario_package(loaded)
        result.transient = package.error.transient
        attempt = heal_scenario(loaded, package, diagnoser_for(healer, connection))
        checks = grade(loaded, attempt)
    except Exception as error:  # noqa: BLE001 - one broken scenario must not stop the suite
        result.stop_reason = f"error: {type(error).__name__}: {error}"[:300]
        result.seconds = time.monotonic() - started
        return result
    result.attempts = attempt.attempts
    result.input_tokens, result.output_tokens = attempt.input_tokens, attempt.output_tokens
    result.checks = checks
    result.patch = attempt.patch.model_dump(mode="json") if attempt.patch else None
    result.diagnosis = attempt.reason
    result.gates = [{"gate": r.gate, "passed": r.passed, "message": r.message} for r in attempt.gate_results]
    result.stop_reason = stop_reason(healer, attempt, checks)
    result.passed = result.stop_reason == "ok"
    result.seconds = time.monotonic() - started
    if execute:
        scratch = Path(tempfile.mkdtemp(prefix="aq-benchmark-"))
        try:
            result.execution = execute_scenario(loaded, attempt, spark, scratch)
        except Exception as error:  # noqa: BLE001 - data generation is best effort
            result.execution = Execution(False, reason=f"could not run: {type(error).__name__}: {error}"[:300])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if result.execution.executed and not result.execution.passed:
            result.passed, result.stop_reason = False, "run failed"
    return result


def run_benchmark(path: str | Path, *, healer: str = RULES, connection: AgentConnection | None = None,
                  execute: bool = False, spark: Any = None, store: Any = None,
                  progress: Callable[[str], None] | None = None, run_id: str | None = None) -> BenchmarkReport:  # fmt: skip
    """Run every scenario at `path` with one healer: "rules" or an LLM as "provider/name".

    All scenarios are validated before any runs (ScenarioError on bad input). `execute=True`
    needs `spark` (a SparkSession). With a `store`, every result is recorded there.
    """
    if healer != RULES:
        llm_connection(healer, connection)  # a bad provider/name is bad input, before any work
    if execute and spark is None:
        raise ScenarioError("execute=True needs a SparkSession (spark=...)")
    scenarios = [load_scenario(p) for p in discover_scenarios(path)]
    _check_unique_ids(scenarios)
    run_id = run_id or uuid.uuid4().hex[:12]
    results = []
    for index, loaded in enumerate(scenarios, start=1):
        result = run_scenario(loaded, healer=healer, connection=connection, execute=execute, spark=spark)
        results.append(result)
        if progress is not None:
            verdict = "PASS" if result.passed else f"FAIL ({result.stop_reason})"
            progress(f"[{index}/{len(scenarios)}] {healer} {loaded.id}: {verdict} {result.seconds:.2f}s")
        if store is not None:
            store.record_benchmark(
                run_id=run_id, scenario_id=result.scenario_id, healer=healer, passed=result.passed,
                attempts=result.attempts, input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                duration_ms=int(result.seconds * 1000), stop_reason=result.stop_reason, details=result.to_dict(),
            )  # fmt: skip
    return BenchmarkReport(run_id, results)


def _check_unique_ids(scenarios: Sequence[LoadedScenario]) -> None:
    seen: dict[str, Path] = {}
    for loaded in scenarios:
        if loaded.id in seen:
            raise ScenarioError(
                f"id: '{loaded.id}' is also the id of {seen[loaded.id]}",
                location=SourceLocation(str(loaded.path)),
                hint="scenario ids name benchmark rows; make them unique",
            )
        seen[loaded.id] = loaded.path
