"""The Spark engine: sessions, module executors, error extraction, and the Manifest runner.

The names below are imported on first use (PEP 562): a code location that loads definitions
needs `engine.errors` only, not every executor, the runner and the session code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it.
_EXPORTS = {
    "AssertionFailed": "errors",
    "ConditionError": "errors",
    "ModuleFailed": "errors",
    "SparkErrorInfo": "errors",
    "extract_spark_error": "errors",
    "is_transient": "errors",
    "evaluate_assert": "modules.assertion",
    "split_quarantine": "modules.assertion",
    "probe_signals": "modules.probe",
    "RegulatorDecision": "modules.regulator",
    "evaluate_regulator": "modules.regulator",
    "poll_regulator": "modules.regulator",
    "ERROR_COLUMNS": "modules.spillway",
    "filter_spillway": "modules.spillway",
    "EXECUTORS": "registry",
    "execute_module": "registry",
    "AssertOutcome": "results",
    "ModuleResult": "results",
    "ProbeSignals": "results",
    "RuleResult": "results",
    "RunResult": "runner",
    "run_manifest": "runner",
    "reveal_secrets": "secrets",
    "create_base_session": "session",
    "jars_dir": "session",
    "run_session": "session",
}

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


def __getattr__(name: str) -> Any:
    submodule = _EXPORTS.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
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
