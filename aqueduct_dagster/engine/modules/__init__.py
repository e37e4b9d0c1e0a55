"""Module executors, one small file per module type; `registry.EXECUTORS` lists them."""

from __future__ import annotations

from typing import Any

from aqueduct_dagster.engine.modules.assertion import evaluate_assert
from aqueduct_dagster.engine.results import AssertOutcome, ModuleResult, RuleResult

__all__ = ["AssertOutcome", "ModuleResult", "RuleResult", "evaluate_assert", "execute_module"]


def __getattr__(name: str) -> Any:
    # The registry imports the executors from this package; import it lazily to avoid a cycle.
    if name == "execute_module":
        from aqueduct_dagster.engine.registry import execute_module

        return execute_module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
