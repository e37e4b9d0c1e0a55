"""The Spark engine: sessions, module executors, error extraction, and the Manifest runner."""

from aqueduct_dagster.engine.errors import (
    AssertionFailed,
    ConditionError,
    ModuleFailed,
    SparkErrorInfo,
    extract_spark_error,
    is_transient,
)
from aqueduct_dagster.engine.modules.assertion import evaluate_assert
from aqueduct_dagster.engine.registry import EXECUTORS, execute_module
from aqueduct_dagster.engine.results import AssertOutcome, ModuleResult, RuleResult
from aqueduct_dagster.engine.runner import RunResult, run_manifest
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.session import create_base_session, jars_dir, run_session

__all__ = [
    "EXECUTORS",
    "AssertOutcome",
    "AssertionFailed",
    "ConditionError",
    "ModuleFailed",
    "ModuleResult",
    "RuleResult",
    "RunResult",
    "SparkErrorInfo",
    "create_base_session",
    "evaluate_assert",
    "execute_module",
    "extract_spark_error",
    "is_transient",
    "jars_dir",
    "reveal_secrets",
    "run_manifest",
    "run_session",
]
