"""Channel: transform one or more frames, lazily.

`op: sql` (the default when `query` is set) registers each input as a temp view named by its
alias in the run session, analyses the query, and drops the views again: the analysed plan
no longer needs them, and a later query must not see frames it has no edge from. The native
ops map one-to-one onto DataFrame methods. A `spillway_condition` splits the result: rows
matching it leave on the `spillway` port (with the `_aq_error_*` columns of `spillway.py`),
the rest on `main`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import ChannelConfig
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.modules.common import (
    analysed,
    as_list,
    in_session,
    input_named,
    require,
    schema_facts,
    single_input,
    sql_over_frames,
)
from aqueduct_dagster.engine.modules.depot import DEPOT, watermark_values
from aqueduct_dagster.engine.modules.spillway import SPILLWAY_CONDITION, with_error_columns
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.types import spark_type_name, split_top_level

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

#: The view name a single-input SQL Channel may also use for its input.
SINGLE_INPUT_VIEW = "__input__"

_JOIN_TYPES = {
    "inner": "inner",
    "left": "left",
    "right": "right",
    "full": "full",
    "semi": "left_semi",
    "anti": "left_anti",
    "cross": "cross",
}

_SORT_KEY = re.compile(
    r"^(?P<expr>.*?)(?:\s+(?P<direction>asc|desc))?(?:\s+nulls\s+(?P<nulls>first|last))?\s*$",
    re.IGNORECASE | re.DOTALL,
)

_STORAGE_LEVEL_NAMES = {
    # PySpark keeps data serialized anyway: the *_SER levels are their plain twins.
    "MEMORY_AND_DISK_SER": "MEMORY_AND_DISK",
    "MEMORY_ONLY_SER": "MEMORY_ONLY",
}


def execute_channel(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: ChannelConfig = module.config
    op = config.op or ("sql" if config.query else None)
    if op is None:
        raise ConditionError(
            "AQ_CHANNEL_OP_MISSING",
            "a Channel needs `op` (or a `query`, which implies op: sql)",
            {"ops": ", ".join(sorted(_OPS))},
            hint=f"set config.op to one of: {', '.join(sorted(_OPS))}",
        )
    operation = _OPS.get(op)
    if operation is None:
        raise ConditionError(
            "AQ_CHANNEL_OP_UNKNOWN",
            f"unknown Channel op '{op}'{did_you_mean(op, _OPS)}",
            {"op": op},
            hint=f"use one of: {', '.join(sorted(_OPS))}",
        )
    metadata: dict[str, Any] = {"op": op}
    frame = operation(spark, module, config, inputs, metadata)
    outputs = {"main": frame}
    if config.spillway_condition:
        outputs = _spillway(module, frame, config.spillway_condition)
        metadata["spillway_condition"] = config.spillway_condition
    metadata["columns"] = schema_facts(outputs["main"])
    if module.materializes_incrementally:
        # The query read only rows past ${ctx._watermark}; their MAX is the next watermark.
        values = watermark_values(module, outputs["main"])
        metadata["watermark_column"] = module.spec.watermark_column
        if values:
            metadata[DEPOT] = values
            metadata["watermark"] = next(iter(values.values()))
    return ModuleResult(outputs=outputs, metadata=metadata)


# --------------------------------------------------------------------------- ops

Operation = Callable[
    ["SparkSession", "CompiledModule", ChannelConfig, Mapping[str, "DataFrame"], dict[str, Any]],
    "DataFrame",
]


def _sql(spark, module, config, inputs, metadata) -> DataFrame:
    query = require(config.query, "query", module, " for op: sql")
    metadata["sql"] = query
    views = {alias: in_session(spark, frame) for alias, frame in inputs.items()}
    if len(views) == 1 and SINGLE_INPUT_VIEW not in views:
        views[SINGLE_INPUT_VIEW] = next(iter(views.values()))
    # The result carries the views' plans, not their names (on classic and Connect alike).
    return sql_over_frames(spark, query, views)


def _filter(spark, module, config, inputs, metadata) -> DataFrame:
    condition = require(config.condition or config.expr, "condition", module, " for op: filter")
    metadata["condition"] = condition
    return single_input(module, inputs).filter(condition)


def _select(spark, module, config, inputs, metadata) -> DataFrame:
    columns = _column_list(config.columns if config.columns is not None else config.cols)
    require(columns, "columns", module, " for op: select")
    metadata["columns_selected"] = columns
    return single_input(module, inputs).selectExpr(*columns)


def _rename(spark, module, config, inputs, metadata) -> DataFrame:
    mapping = _column_mapping(config.columns, "rename", module)
    frame = single_input(module, inputs)
    # withColumnsRenamed ignores unknown names; selecting them first reports them (analysis only).
    from pyspark.sql import functions as F

    analysed(frame.select(*[F.col(name) for name in mapping]))
    metadata["renamed"] = mapping
    return frame.withColumnsRenamed(mapping)


def _cast(spark, module, config, inputs, metadata) -> DataFrame:
    from pyspark.sql import functions as F

    mapping = _column_mapping(config.columns, "cast", module)
    types = {column: spark_type_name(kind) for column, kind in mapping.items()}
    metadata["cast"] = types
    frame = single_input(module, inputs)
    return frame.withColumns({column: F.col(column).cast(kind) for column, kind in types.items()})


def _deduplicate(spark, module, config, inputs, metadata) -> DataFrame:
    keys = _column_list(config.columns) or as_list(config.cols) or as_list(config.key)
    metadata["keys"] = keys
    frame = single_input(module, inputs)
    return frame.dropDuplicates(keys) if keys else frame.dropDuplicates()


def _join(spark, module, config, inputs, metadata) -> DataFrame:
    from pyspark.sql import functions as F

    aliases = list(inputs)
    if len(aliases) < 2 and not (config.left and config.right):
        raise ConditionError(
            "AQ_INPUT_COUNT",
            f"op: join needs two inputs; it got {len(aliases)} ({', '.join(aliases) or 'none'})",
            {"expected": 2, "actual": len(aliases)},
            hint="wire two edges into this Channel, or name them with `left` and `right`",
        )
    left_name = config.left or aliases[0]
    right_name = config.right or next(a for a in aliases if a != left_name)
    left = input_named(left_name, inputs, "join `left`").alias(left_name)
    right = input_named(right_name, inputs, "join `right`").alias(right_name)
    if config.broadcast_side == "left":
        left = F.broadcast(left)
    elif config.broadcast_side == "right":
        right = F.broadcast(right)
    how = _JOIN_TYPES[config.join_type or "inner"]
    keys = _column_list(config.columns) or as_list(config.cols) or as_list(config.key)
    metadata.update({"left": left_name, "right": right_name, "join_type": how})
    if config.condition:
        metadata["condition"] = config.condition
        return left.join(right, F.expr(config.condition), how)
    if keys:
        metadata["keys"] = keys
        return left.join(right, keys, how)
    if how == "cross":
        return left.crossJoin(right)
    raise ConditionError(
        "AQ_MISSING_CONFIG",
        "op: join needs a `condition` (or `key` columns) unless join_type is cross",
        {"key": "condition", "moduleType": "Channel"},
        hint=f'e.g. condition: "{left_name}.id = {right_name}.id"',
    )


def _union(spark, module, config, inputs, metadata) -> DataFrame:
    frames = list(inputs.values())
    require(frames, "inputs", module, " for op: union")
    allow_missing = bool(config.allow_missing_columns)
    metadata.update({"inputs": list(inputs), "allow_missing_columns": allow_missing})
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame, allowMissingColumns=allow_missing)
    return result


def _sort(spark, module, config, inputs, metadata) -> DataFrame:
    keys = [k for item in as_list(config.order_by) for k in _expressions(item)]
    require(keys, "order_by", module, " for op: sort")
    metadata["order_by"] = keys
    return single_input(module, inputs).orderBy(*[_sort_column(key) for key in keys])


def _repartition(spark, module, config, inputs, metadata) -> DataFrame:
    from pyspark.sql import functions as F

    columns = _column_list(config.columns) or as_list(config.cols)
    count = config.num_partitions or config.num
    if not columns and not count:
        require(None, "num_partitions", module, " (or `cols`) for op: repartition")
    metadata.update({"num_partitions": count, "cols": columns})
    frame = single_input(module, inputs)
    keys = [F.col(c) for c in columns]
    return frame.repartition(count, *keys) if count else frame.repartition(*keys)


def _coalesce(spark, module, config, inputs, metadata) -> DataFrame:
    count = require(config.num or config.num_partitions, "num", module, " for op: coalesce")
    metadata["num_partitions"] = count
    return single_input(module, inputs).coalesce(count)


def _cache(spark, module, config, inputs, metadata) -> DataFrame:
    from pyspark import StorageLevel

    name = config.storage_level or "MEMORY_AND_DISK"
    level = getattr(StorageLevel, _STORAGE_LEVEL_NAMES.get(name, name))
    metadata.update({"storage_level": name, "persisted": True})
    return single_input(module, inputs).persist(level)


_OPS: dict[str, Operation] = {
    "sql": _sql,
    "filter": _filter,
    "select": _select,
    "rename": _rename,
    "cast": _cast,
    "deduplicate": _deduplicate,
    "join": _join,
    "union": _union,
    "sort": _sort,
    "repartition": _repartition,
    "coalesce": _coalesce,
    "cache": _cache,
}


# --------------------------------------------------------------------------- helpers


def _spillway(module: CompiledModule, frame: DataFrame, condition: str) -> dict[str, DataFrame]:
    from pyspark.sql import functions as F

    matches = F.coalesce(F.expr(condition), F.lit(False))
    spilled = with_error_columns(
        frame.filter(matches),
        module_id=module.id,
        rule=condition,
        error_type=SPILLWAY_CONDITION,
        message=f"row matches spillway_condition `{condition}`",
    )
    return {"main": frame.filter(~matches), "spillway": spilled}


def _column_list(value: list[str] | dict[str, str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return _expressions(value)
    if isinstance(value, dict):
        return list(value)
    return list(value)


def _column_mapping(value: Any, op: str, module: CompiledModule) -> dict[str, str]:
    if not isinstance(value, dict) or not value:
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            f"op: {op} needs `columns` as a mapping"
            + (" old -> new" if op == "rename" else " column -> type"),
            {"key": "columns", "moduleType": module.type},
            hint="e.g. columns: {salary: annual_comp}"
            if op == "rename"
            else "e.g. columns: {amount: double}",
        )
    return {str(k): str(v) for k, v in value.items()}


def _expressions(text: str) -> list[str]:
    return [part for part in split_top_level(text, angle_brackets=False) if part]


def _sort_column(key: str) -> Column:
    from pyspark.sql import functions as F

    match = _SORT_KEY.match(key.strip())
    assert match is not None  # the pattern matches any text
    column = F.expr(match.group("expr"))
    descending = (match.group("direction") or "asc").lower() == "desc"
    nulls = (match.group("nulls") or "").lower()
    if descending:
        return (
            column.desc_nulls_first()
            if nulls == "first"
            else (column.desc_nulls_last() if nulls == "last" else column.desc())
        )
    return (
        column.asc_nulls_last()
        if nulls == "last"
        else (column.asc_nulls_first() if nulls == "first" else column.asc())
    )
