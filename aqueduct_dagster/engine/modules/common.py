"""Small helpers every module executor uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule


def single_input(module: CompiledModule, inputs: Mapping[str, DataFrame]) -> DataFrame:
    """The one input frame of a single-input module."""
    if len(inputs) != 1:
        names = ", ".join(sorted(inputs)) or "none"
        raise ConditionError(
            "AQ_INPUT_COUNT",
            f"a {module.type} module takes exactly one input; it got {len(inputs)} ({names})",
            {"expected": 1, "actual": len(inputs)},
            hint="wire exactly one edge into this module",
        )
    return next(iter(inputs.values()))


def input_named(name: str, inputs: Mapping[str, DataFrame], role: str) -> DataFrame:
    """The input frame whose alias is `name`, with a did-you-mean when there is none."""
    if name in inputs:
        return inputs[name]
    raise ConditionError(
        "AQ_INPUT_NOT_FOUND",
        f"{role} '{name}' is not an input of this module{did_you_mean(name, inputs)}",
        {"name": name, "inputs": ", ".join(sorted(inputs))},
        hint=f"use one of the input aliases: {', '.join(sorted(inputs)) or '(none)'}",
    )


def require(value: Any, key: str, module: CompiledModule, why: str = "") -> Any:
    """`value`, or a clear error naming the missing config key."""
    if value is None or value == "" or value == [] or value == {}:
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            f"config key '{key}' is required{why}",
            {"key": key, "moduleType": module.type},
            hint=f"set config.{key} on this {module.type}",
        )
    return value


def in_session(spark: SparkSession, frame: DataFrame) -> DataFrame:
    """`frame` bound to `spark` (same plan), when it was built in another session.

    Temp views are registered in a frame's own session; a frame handed over from another
    session must move first, or the SQL of this session would not see it.
    """
    from pyspark.sql import DataFrame

    if is_connect(spark):
        from pyspark.sql.connect.dataframe import DataFrame as ConnectFrame

        if frame.sparkSession is spark:
            return frame
        # A Connect plan is a self-contained message, analysed by whichever session runs it.
        return ConnectFrame(frame._plan, spark)
    if frame.sparkSession._jsparkSession.equals(spark._jsparkSession):
        return frame
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    rows = jvm.org.apache.spark.sql.classic.Dataset.ofRows(
        spark._jsparkSession, frame._jdf.logicalPlan()
    )
    return DataFrame(rows, spark)


def analysed(frame: DataFrame) -> DataFrame:
    """`frame`, with its analysis errors (unknown columns, bad types) raised now.

    A classic DataFrame is analysed as it is built. A Spark Connect one only when it runs or
    its schema is asked for: without this, a bad expression would fail at the next action,
    in whichever module runs it, and be blamed on that one.
    """
    if is_connect(frame.sparkSession):
        frame.schema  # noqa: B018 - one analysis round trip, no Spark job
    return frame


def sql_over_frames(spark: SparkSession, query: str, frames: Mapping[str, DataFrame]) -> DataFrame:
    """`query` analysed with each frame visible under its name; no name outlives the call.

    Classic: the frames become temp views for the analysis, which is eager, and are dropped
    right after. Spark Connect analyses a SQL relation only when it runs, so views dropped
    here would be gone by then: the frames travel inside the plan instead (as the
    `spark.sql("... {df}", df=frame)` form does), and the schema is asked for at once so a
    bad query fails in this module, not at the next action downstream.
    """
    if is_connect(spark):
        from pyspark.sql.connect.dataframe import DataFrame as ConnectFrame
        from pyspark.sql.connect.plan import SQL, SubqueryAlias

        references = [SubqueryAlias(in_session(spark, f)._plan, name) for name, f in frames.items()]
        return analysed(ConnectFrame(SQL(query, views=references), spark))
    try:
        for name, frame in frames.items():
            frame.createOrReplaceTempView(name)
        return spark.sql(query)
    finally:
        for name in frames:
            spark.catalog.dropTempView(name)


def reader_options(options: Mapping[str, Any]) -> dict[str, str]:
    """Reader/writer options as Spark wants them (text values), with secrets revealed."""
    revealed = reveal_secrets(dict(options))
    return {str(k): option_text(v) for k, v in revealed.items() if v is not None}


def option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def as_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return list(value)


def schema_facts(frame: DataFrame) -> list[dict[str, str]]:
    """Column names and types (no Spark job: only the analysed plan is read)."""
    return [{"name": f.name, "type": f.dataType.simpleString()} for f in frame.schema.fields]
