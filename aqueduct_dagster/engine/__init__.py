"""The Spark engine: sessions, module executors, error extraction, and the Manifest runner."""

from aqueduct_dagster.engine.errors import (
    AssertionFailed,
    ConditionError,
    ModuleFailed,
    SparkErrorInfo,
    extract_spark_error,
    is_transient,
)
from aqueduct_dagster.engine.modules.assertion import evaluate_assert, split_quarantine
from aqueduct_dagster.engine.modules.probe import probe_signals
from aqueduct_dagster.engine.modules.regulator import (
    RegulatorDecision,
    evaluate_regulator,
    poll_regulator,
)
from aqueduct_dagster.engine.modules.spillway import ERROR_COLUMNS, filter_spillway
from aqueduct_dagster.engine.registry import EXECUTORS, execute_module
from aqueduct_dagster.engine.results import (
    AssertOutcome,
    ModuleResult,
    ProbeSignals,
    RuleResult,
)
from aqueduct_dagster.engine.runner import RunResult, run_manifest
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.session import create_base_session, jars_dir, run_session

__all__ = [
    "ERROR_COLUMNS",
    "EXECUTORS",
    "AssertOutcome",
    "AssertionFailed",
    "ConditionError",
    "ModuleFailed",
    "ModuleResult",
    "ProbeSignals",
    "RegulatorDecision",
    "RuleResult",
    "RunResult",
    "SparkErrorInfo",
    "create_base_session",
    "evaluate_assert",
    "evaluate_regulator",
    "execute_module",
    "extract_spark_error",
    "filter_spillway",
    "is_transient",
    "jars_dir",
    "poll_regulator",
    "probe_signals",
    "reveal_secrets",
    "run_manifest",
    "run_session",
    "split_quarantine",
]
