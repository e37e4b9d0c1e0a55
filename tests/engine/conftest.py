"""Factories for engine tests: CompiledModules and Manifests built straight from the records.

Engine tests never go through the compiler: they build `CompiledModule`s from the pydantic
module records, so a compiler change cannot break them (and vice versa).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pydantic import TypeAdapter

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest, ModuleInput
from aqueduct_dagster.blueprint.models import Module

_MODULE = TypeAdapter(Module)


def build_module(
    module_type: str,
    module_id: str,
    config: dict[str, Any] | None = None,
    *,
    inputs: tuple[str | tuple[str, str] | tuple[str, str, str], ...] = (),
    **fields: Any,
) -> CompiledModule:
    """A CompiledModule. Inputs: "source", ("source", "port") or ("source", "port", "alias")."""
    spec = _MODULE.validate_python(
        {"id": module_id, "type": module_type, "config": config or {}, **fields}
    )
    edges = []
    for item in inputs:
        source, port, alias = (
            (item, "main", item)
            if isinstance(item, str)
            else (item[0], item[1], item[2] if len(item) > 2 else item[0])
        )
        edges.append(ModuleInput(source=source, port=port, alias=alias))
    return CompiledModule(id=module_id, type=module_type, spec=spec, inputs=tuple(edges))


def build_manifest(*modules: CompiledModule) -> Manifest:
    return Manifest(
        blueprint_id="engine_test",
        name="Engine test",
        source_path="engine_test.yml",
        modules={m.id: m for m in modules},
    )


@pytest.fixture
def module():
    """Factory: module("Channel", "id", {config}, inputs=("a", "b"))."""
    return build_module


@pytest.fixture
def manifest():
    return build_manifest


@pytest.fixture
def run_spark(spark):
    """A run session of the suite's SparkSession: its own temp views and SQL conf."""
    from aqueduct_dagster.engine.session import run_session

    return run_session(spark)


@pytest.fixture
def people(run_spark):
    """Four people, one with a null city: the engine tests' default input frame."""
    return run_spark.createDataFrame(
        [
            (1, "ann", "oslo", 31, 100.5),
            (2, "bob", None, 45, 80.0),
            (3, "cy", "rome", 27, 55.25),
            (4, "dee", "oslo", 38, 120.0),
        ],
        "id BIGINT, name STRING, city STRING, age INT, salary DOUBLE",
    )


@contextmanager
def spark_jobs(spark) -> Iterator[list[int]]:
    """Collects the ids of the Spark jobs started inside the block (via a job group).

    On Spark Connect the test is skipped here, after what it checked before: the job count
    is read from the SparkContext's status tracker, which a Connect client does not have.
    """
    from aqueduct_dagster.engine.session import is_connect

    if is_connect(spark):
        pytest.skip("counts Spark jobs through the SparkContext status tracker (classic only)")
    context = spark.sparkContext
    group = f"aq-test-{uuid.uuid4().hex[:8]}"
    jobs: list[int] = []
    context.setJobGroup(group, "counted by a test")
    try:
        yield jobs
    finally:
        # Job starts reach the status tracker through the listener bus: let it drain first.
        context._jsc.sc().listenerBus().waitUntilEmpty()
        jobs.extend(context.statusTracker().getJobIdsForGroup(group))
        context.setLocalProperty("spark.jobGroup.id", None)
        context.setLocalProperty("spark.job.description", None)


def partitions_of(frame) -> int:
    """How many partitions a frame has: from its RDD (classic), or on Spark Connect, which
    has no RDD API, how many partitions hold rows (tests give every partition rows)."""
    from pyspark.sql import functions as F

    from aqueduct_dagster.engine.session import is_connect

    if not is_connect(frame.sparkSession):
        return frame.rdd.getNumPartitions()
    return frame.select(F.spark_partition_id().alias("p")).distinct().count()


@pytest.fixture
def count_jobs():
    return spark_jobs


def delta_table(path):
    """delta-rs's view of a Delta table: an independent check of what Spark wrote."""
    import pyarrow  # noqa: F401  (before deltalake: delta-rs aborts at exit otherwise)
    from deltalake import DeltaTable

    return DeltaTable(str(path))
