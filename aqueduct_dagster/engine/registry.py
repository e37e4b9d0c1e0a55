"""The one table from module type to Spark executor, and `execute_module` around it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from aqueduct_dagster.engine.errors import ConditionError, module_failure
from aqueduct_dagster.engine.modules.assertion import execute_assertion
from aqueduct_dagster.engine.modules.channel import execute_channel
from aqueduct_dagster.engine.modules.egress import execute_egress
from aqueduct_dagster.engine.modules.funnel import execute_funnel
from aqueduct_dagster.engine.modules.ingress import execute_ingress
from aqueduct_dagster.engine.modules.junction import execute_junction
from aqueduct_dagster.engine.modules.probe import execute_probe
from aqueduct_dagster.engine.modules.regulator import execute_regulator
from aqueduct_dagster.engine.results import ModuleResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

Executor = Callable[["SparkSession", "CompiledModule", Mapping[str, "DataFrame"]], ModuleResult]

#: Module type -> executor. Adding a module type adds one line here.
EXECUTORS: dict[str, Executor] = {
    "Ingress": execute_ingress,
    "Channel": execute_channel,
    "Egress": execute_egress,
    "Assert": execute_assertion,
    "Junction": execute_junction,
    "Funnel": execute_funnel,
    "Probe": execute_probe,
    "Regulator": execute_regulator,
}


def execute_module(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    """Run one module on `inputs` (keyed by input alias); every failure becomes ModuleFailed.

    Frames stay lazy: only Egress writes, Assert rules and Probe signals run Spark jobs. An
    Assert's blocking outcome is returned in `result.assertion`, not raised. A Regulator's
    signal input is a ProbeSignals (or a list of signal entries), not a frame; a closed
    Regulator with on_block skip returns no outputs and `metadata["skipped"]`.
    """
    try:
        executor = EXECUTORS.get(module.type)
        if executor is None:
            raise ConditionError(
                "AQ_MODULE_TYPE_UNSUPPORTED",
                f"module type '{module.type}' has no Spark executor",
                {"type": module.type},
                hint=f"the Spark engine runs: {', '.join(EXECUTORS)}",
            )
        return executor(spark, module, inputs)
    except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
        raise module_failure(module, exc, inputs) from exc
