"""The offline heal benchmark: simulated failures (`*.aqscenario.yml`), graded by a patch's effect.

    report = run_benchmark(Path("gallery/aqscenarios"), healer="rules")
    report = run_benchmark(path, healer="openai_compat/qwen2.5-coder:7b", connection=AgentConnection(base_url=...))

A scenario names a Blueprint, a failure to inject into one of its modules (the error text Spark
would print, optionally Spark's structured fields) and what a good heal achieves. Each scenario
becomes a `FailurePackage`, a diagnoser (the offline rules, or an LLM) proposes a patch, the
non-Spark gates (guardrails, compile, lineage) judge it, and the grader checks the post-patch
Blueprint (`expected_patch.effect`) and the scenario's `assertions`. No Spark is needed unless
`execute=True`, which also runs the healed pipeline on generated data.

Grading is by effect, not by operation name: any patch that lands the expected end state
passes. Gating assertions (`patch_is_valid`, `patch_applies`, `patch_refused`, `gate_status`,
`allow_defer`) decide pass/fail with the effect; scoring assertions (`root_cause_contains`,
`expected_category`, `max_attempts`, `min_confidence`) are recorded and never flip the verdict.
An assertion this grader does not know fails as "unsupported assertion X".
"""

from __future__ import annotations

from aqueduct_dagster.healing.benchmark.attempt import HealAttempt, heal_scenario, llm_connection
from aqueduct_dagster.healing.benchmark.execution import (
    Execution,
    execute_scenario,
    ingress_columns,
    not_executable_reason,
    runnable_text,
    write_input_data,
)
from aqueduct_dagster.healing.benchmark.grading import (
    SQL_CONFIG_KEYS,
    BlueprintState,
    Check,
    config_contains,
    config_not_contains,
    engine_config_status,
    gate_statuses,
    grade,
    grade_effect,
    grade_operations,
    normalize_sql,
    refusal,
    sql_contains,
    stop_reason,
)
from aqueduct_dagster.healing.benchmark.injection import (
    build_scenario_package,
    error_from_injection,
    input_schemas_for,
    plan_schemas,
    scenario_failure,
)
from aqueduct_dagster.healing.benchmark.report import BenchmarkReport, ScenarioResult
from aqueduct_dagster.healing.benchmark.runner import run_benchmark, run_scenario
from aqueduct_dagster.healing.benchmark.scenario import (
    RULES,
    SCENARIO_SUFFIX,
    Effect,
    ExpectedPatch,
    InjectedFailure,
    LoadedScenario,
    ModuleMatch,
    RootException,
    Scenario,
    ScenarioError,
    StructuredError,
    discover_scenarios,
    load_scenario,
)

__all__ = [
    "RULES", "SCENARIO_SUFFIX", "SQL_CONFIG_KEYS", "BenchmarkReport", "BlueprintState", "Check", "Effect",
    "Execution", "ExpectedPatch", "HealAttempt", "InjectedFailure", "LoadedScenario", "ModuleMatch",
    "RootException", "Scenario", "ScenarioError", "ScenarioResult", "StructuredError", "build_scenario_package",
    "config_contains", "config_not_contains", "discover_scenarios", "engine_config_status", "error_from_injection",
    "execute_scenario", "gate_statuses", "grade", "grade_effect", "grade_operations", "heal_scenario",
    "ingress_columns", "input_schemas_for", "llm_connection", "load_scenario", "normalize_sql",
    "not_executable_reason", "plan_schemas", "refusal", "run_benchmark", "run_scenario", "runnable_text",
    "scenario_failure", "sql_contains", "stop_reason", "write_input_data",
]  # fmt: skip
