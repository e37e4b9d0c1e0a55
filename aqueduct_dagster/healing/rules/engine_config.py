"""Rules for Spark running out of room: a setting from the allowlist (healing/policy.py)."""

from __future__ import annotations

import re

from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.policy import ENGINE_CONFIG_ALLOWLIST
from aqueduct_dagster.healing.rules.common import new_patch


def _engine_patch(package: FailurePackage, slug: str, key: str, value: str, *, rationale: str,
                  root_cause: str, category: str) -> PatchSpec:  # fmt: skip
    assert key in ENGINE_CONFIG_ALLOWLIST
    return new_patch(
        package, slug, [{"op": "set_engine_config", "engine": "spark", "key": key, "value": value}],
        rationale=rationale, root_cause=root_cause, category=category, confidence=0.75,
    )  # fmt: skip


def driver_max_result_size(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.error.message} {' '.join(package.error.cause_chain)}"
    if "spark.driver.maxResultSize" not in text and package.condition != "SPARK_DRIVER_RESULT_TOO_LARGE":
        return None
    return _engine_patch(
        package, "max-result-size", "spark.driver.maxResultSize", "4g",
        rationale="results sent to the driver exceed spark.driver.maxResultSize; raise the cap",
        root_cause="driver result too large: serialized task results are bigger than spark.driver.maxResultSize",
        category="oom_config",
    )  # fmt: skip


_SHUFFLE_OOM = re.compile(r"ExecutorLostFailure|exceeding memory limits|Too large frame|OutOfMemoryError", re.I)


def shuffle_oom(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.condition} {package.error.message} {' '.join(package.error.cause_chain)}"
    if "GC overhead" in text or package.condition == "SPARK_GC_OVERHEAD_LIMIT":
        return _engine_patch(
            package, "executor-memory", "spark.executor.memory", "8g",
            rationale="executors spend their time in garbage collection; give them more heap",
            root_cause="GC overhead limit exceeded: the executor heap is too small for this aggregation",
            category="oom_config",
        )  # fmt: skip
    if "Container killed" in text and "Exit code is 143" in text:
        return _engine_patch(
            package, "memory-overhead", "spark.executor.memoryOverhead", "2g",
            rationale="executors are killed for exceeding their container memory; raise the overhead",
            root_cause="executor lost: container memory (heap + overhead) exceeded during a skewed shuffle",
            category="oom_config",
        )  # fmt: skip
    if not (_SHUFFLE_OOM.search(text) or package.condition == "SPARK_EXECUTOR_OOM"):
        return None
    return _engine_patch(
        package, "shuffle-partitions", "spark.sql.shuffle.partitions", "800",
        rationale="shuffle partitions are too large for executor memory; split the shuffle into more partitions",
        root_cause="executor OOM during shuffle: too few shuffle partitions for the data volume",
        category="oom_config",
    )  # fmt: skip


def broadcast_timeout(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.condition} {package.error.message}"
    if "broadcast" not in text.lower() or not re.search(r"timeout|Could not execute broadcast|larger than", text, re.I):
        return None
    return _engine_patch(
        package, "no-broadcast", "spark.sql.autoBroadcastJoinThreshold", "-1",
        rationale="the broadcast side is too large to broadcast in time; let Spark use a shuffle join",
        root_cause="broadcast join timeout: the table chosen for broadcast is too large",
        category="oom_config",
    )  # fmt: skip
