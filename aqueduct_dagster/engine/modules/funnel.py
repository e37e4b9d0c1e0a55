"""Funnel: merge two or more frames into one, lazily (no Spark job). Output: `main`.

Inputs are taken in the order of `config.inputs` (entries `module` or `module.port`), then
any other edge into the Funnel in edge order.

- `union_all`: rows of every input, matched by column name. `schema_check: strict` (the
  default, as in aqueduct-core) wants the same columns with the same types in every input
  and names what differs; `permissive` fills missing columns with nulls.
- `union`: `union_all`, then duplicates removed.
- `coalesce`: inputs aligned by row position; each column is the first non-null value across
  the inputs that have it, in input order (primary first, fallbacks after).
- `zip`: inputs aligned by row position, their columns side by side (names must not clash).

Position alignment numbers each input's rows in their current order (`row_number` over
`monotonically_increasing_id`), which moves each input to one partition: meant for
small, logically aligned frames. Unequal row counts keep every row (a full outer join on the
position; missing values are null), where aqueduct-core would drop the extra rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import FunnelConfig
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.modules.common import schema_facts
from aqueduct_dagster.engine.results import ModuleResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

POSITION = "__aq_position"
_ROW_ID = "__aq_row_id"


def execute_funnel(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: FunnelConfig = module.config
    mode = config.mode or "union_all"
    schema_check = config.schema_check or "strict"
    ordered = ordered_inputs(module, inputs)
    if len(ordered) < 2:
        raise ConditionError(
            "AQ_INPUT_COUNT",
            f"a Funnel merges at least two inputs; it got {len(ordered)} "
            f"({', '.join(ordered) or 'none'})",
            {"expected": 2, "actual": len(ordered)},
            hint="wire two or more edges into this Funnel (or list them in config.inputs)",
        )
    if mode in ("union_all", "union"):
        if schema_check == "strict":
            _check_same_schema(ordered)
        frames = list(ordered.values())
        merged = frames[0]
        for frame in frames[1:]:
            merged = merged.unionByName(frame, allowMissingColumns=schema_check == "permissive")
        if mode == "union":
            merged = merged.distinct()
    elif mode == "coalesce":
        if schema_check == "strict":
            _check_shared_types(ordered)
        merged = _coalesce(ordered)
    elif mode == "zip":
        merged = _zip(ordered)
    else:  # pragma: no cover - the model only admits the four modes
        raise ConditionError(
            "AQ_FUNNEL_MODE_UNKNOWN", f"unknown Funnel mode '{mode}'", {"mode": mode}
        )
    metadata: dict[str, Any] = {
        "mode": mode,
        "schema_check": schema_check,
        "inputs": list(ordered),
        "columns": schema_facts(merged),
    }
    return ModuleResult(outputs={"main": merged}, metadata=metadata)


def ordered_inputs(module: CompiledModule, inputs: Mapping[str, DataFrame]) -> dict[str, DataFrame]:
    """The input frames by alias, in `config.inputs` order, then the others in edge order."""
    config: FunnelConfig = module.config
    ordered: dict[str, DataFrame] = {}
    for entry in config.inputs:
        alias = _alias_of(entry, module, inputs)
        ordered[alias] = inputs[alias]
    for alias, frame in inputs.items():
        ordered.setdefault(alias, frame)
    return ordered


def _alias_of(entry: str, module: CompiledModule, inputs: Mapping[str, DataFrame]) -> str:
    source, _, port = entry.partition(".")
    port = port or "main"
    for edge in module.inputs:
        if edge.source == source and edge.port == port and edge.alias in inputs:
            return edge.alias
    for candidate in (entry, source if port == "main" else f"{source}_{port}"):
        if candidate in inputs:
            return candidate
    raise ConditionError(
        "AQ_INPUT_NOT_FOUND",
        f"funnel input '{entry}' is not an input of this module{did_you_mean(entry, inputs)}",
        {"name": entry, "inputs": ", ".join(inputs)},
        hint=f"config.inputs names upstream modules (or module.port); inputs here: "
        f"{', '.join(inputs) or '(none)'}",
    )


# --------------------------------------------------------------------------- schema checks


def _types(frame: DataFrame) -> dict[str, str]:
    return {f.name: f.dataType.simpleString() for f in frame.schema.fields}


def _check_same_schema(ordered: dict[str, DataFrame]) -> None:
    (first, first_frame), *others = ordered.items()
    expected = _types(first_frame)
    for position, (alias, frame) in enumerate(others, start=2):
        actual = _types(frame)
        missing = [c for c in expected if c not in actual]
        extra = [c for c in actual if c not in expected]
        retyped = [
            f"{c} {actual[c]} (in '{first}': {expected[c]})"
            for c in expected
            if c in actual and actual[c] != expected[c]
        ]
        if not (missing or extra or retyped):
            continue
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            problems.append(f"extra column(s) {', '.join(extra)}")
        if retyped:
            problems.append(f"different type(s): {'; '.join(retyped)}")
        raise ConditionError(
            "AQ_FUNNEL_SCHEMA_MISMATCH",
            f"input '{alias}' (input {position}) does not match the schema of '{first}' "
            f"(input 1): {'; '.join(problems)}",
            {
                "input": alias,
                "reference": first,
                "missing": ", ".join(missing),
                "extra": ", ".join(extra),
                "types": "; ".join(retyped),
            },
            hint="align the inputs' columns upstream (select/cast), or set "
            "schema_check: permissive to fill missing columns with nulls",
        )


def _check_shared_types(ordered: dict[str, DataFrame]) -> None:
    seen: dict[str, tuple[str, str]] = {}  # column -> (type, first input that has it)
    for alias, frame in ordered.items():
        for column, kind in _types(frame).items():
            if column not in seen:
                seen[column] = (kind, alias)
            elif seen[column][0] != kind:
                first_kind, first = seen[column]
                raise ConditionError(
                    "AQ_FUNNEL_SCHEMA_MISMATCH",
                    f"input '{alias}' has column '{column}' as {kind}, but '{first}' has it "
                    f"as {first_kind}: coalesce needs one type per column",
                    {"input": alias, "reference": first, "column": column,
                     "types": f"{kind} vs {first_kind}"},
                    hint="cast the column to one type upstream, or set schema_check: permissive "
                    "to let Spark find a common type",
                )  # fmt: skip


# --------------------------------------------------------------------------- position merges


def _copy(index: int, name: str) -> str:
    """The name input `index`'s column `name` has inside the aligned frame."""
    return f"__aq_{index}_{name}"


def _positioned(frame: DataFrame, index: int) -> DataFrame:
    """`frame`'s columns renamed `__aq_<index>_<name>`, plus its 1-based row position."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    renamed = frame.select(
        *[F.col(f"`{name}`").alias(_copy(index, name)) for name in frame.columns],
        F.monotonically_increasing_id().alias(_ROW_ID),
    )
    position = F.row_number().over(Window.orderBy(_ROW_ID))
    return renamed.withColumn(POSITION, position).drop(_ROW_ID)


def _aligned(ordered: dict[str, DataFrame]) -> DataFrame:
    frames = [_positioned(frame, i) for i, frame in enumerate(ordered.values())]
    joined = frames[0]
    for frame in frames[1:]:
        joined = joined.join(frame, on=POSITION, how="full")
    return joined


def _coalesce(ordered: dict[str, DataFrame]) -> DataFrame:
    from pyspark.sql import functions as F

    sources: dict[str, list[str]] = {}  # column -> its renamed copies, in input order
    for index, frame in enumerate(ordered.values()):
        for name in frame.columns:
            sources.setdefault(name, []).append(f"`{_copy(index, name)}`")
    joined = _aligned(ordered)
    columns = [
        (F.coalesce(*[F.col(c) for c in copies]) if len(copies) > 1 else F.col(copies[0])).alias(
            name
        )
        for name, copies in sources.items()
    ]
    return joined.orderBy(POSITION).select(*columns)


def _zip(ordered: dict[str, DataFrame]) -> DataFrame:
    from pyspark.sql import functions as F

    owner: dict[str, str] = {}
    for alias, frame in ordered.items():
        for name in frame.columns:
            if name in owner:
                raise ConditionError(
                    "AQ_FUNNEL_COLUMN_CONFLICT",
                    f"zip puts the inputs' columns side by side, but '{name}' is in both "
                    f"'{owner[name]}' and '{alias}'",
                    {"column": name, "inputs": f"{owner[name]}, {alias}"},
                    hint="rename or drop the column in one input upstream, or use mode: coalesce "
                    "to merge same-named columns",
                )
            owner[name] = alias
    joined = _aligned(ordered)
    columns = [
        F.col(f"`{_copy(index, name)}`").alias(name)
        for index, frame in enumerate(ordered.values())
        for name in frame.columns
    ]
    return joined.orderBy(POSITION).select(*columns)
