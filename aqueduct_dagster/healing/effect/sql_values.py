"""Every SQL-bearing value of a compiled module: a query, or an expression Spark evaluates.

The SQL policy (healing/sql_policy.py) judges each of them; a value the patch leaves
unchanged is not judged again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aqueduct_dagster.blueprint.lineage import analysable_sql
from aqueduct_dagster.blueprint.manifest import CompiledModule
from aqueduct_dagster.healing.effect.records import SqlValue
from aqueduct_dagster.healing.sql_policy import tables_read

_SORT_SUFFIX = re.compile(r"\s+(asc|desc)?(\s+nulls\s+(first|last))?\s*$", re.I)


def sql_values(module: CompiledModule) -> Iterable[SqlValue]:
    """Every SQL-bearing value of a compiled module (a query, or an expression)."""
    where = f"module '{module.id}' config"
    if module.spec.spillway:
        yield from _expressions(where, "spillway", module.spec.spillway)
    values_of = _SQL_BY_TYPE.get(module.type)
    if values_of is not None:
        yield from values_of(module.spec.config, where)


def tables_read_by(values: Sequence[SqlValue]) -> set[str]:
    """Tables a module's queries already read (catalog tables its author wired in)."""
    found: set[str] = set()
    for value in values:
        if value.kind == "query":
            found |= tables_read(value.text)
    return found


def _expressions(where: str, key: str, value: Any, *, strip_sort: bool = False) -> Iterable[SqlValue]:
    """`value` (one expression, or a list of them) as SqlValues named `<where>.<key>`."""
    if isinstance(value, str) and value.strip() and value.strip() != "_else_":
        text = _SORT_SUFFIX.sub("", value) if strip_sort else value
        yield SqlValue(f"{where}.{key}", analysable_sql(text), "expression")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _expressions(where, f"{key}[{index}]", item, strip_sort=strip_sort)


def _channel(config: Any, where: str) -> Iterable[SqlValue]:
    if config.query:
        yield SqlValue(f"{where}.query", analysable_sql(config.query), "query")
    for key in ("condition", "expr", "spillway_condition", "col", "column"):
        yield from _expressions(where, key, getattr(config, key))
    op = config.op
    if op == "select" or isinstance(config.columns, list):
        # op: select runs `selectExpr` on the names of a mapping as well: each is SQL.
        columns = list(config.columns) if isinstance(config.columns, dict) else config.columns
        yield from _expressions(where, "columns", columns)
        yield from _expressions(where, "cols", config.cols)
    if op in ("sort",):
        yield from _expressions(where, "order_by", config.order_by, strip_sort=True)
    yield from _expressions(where, "key", config.key)


def _ingress(config: Any, where: str) -> Iterable[SqlValue]:
    yield from _expressions(where, "partition_filters", config.partition_filters)


def _egress(config: Any, where: str) -> Iterable[SqlValue]:
    yield from _expressions(where, "value_expr", config.value_expr)
    yield from _expressions(where, "replace_where", config.replace_where)


def _junction(config: Any, where: str) -> Iterable[SqlValue]:
    yield from _expressions(where, "partition_key", config.partition_key)
    for index, branch in enumerate(config.branches):
        yield from _expressions(where, f"branches[{index}].condition", branch.condition)


def _assert(config: Any, where: str) -> Iterable[SqlValue]:
    for index, rule in enumerate(config.rules):
        yield from _expressions(where, f"rules[{index}].expr", rule.expr)


def _probe(config: Any, where: str) -> Iterable[SqlValue]:
    for index, signal in enumerate(config.signals):
        for key in ("expr", "sql", "passed_when"):
            yield from _expressions(where, f"signals[{index}].{key}", getattr(signal, key))


#: Module type -> the SQL-bearing values of its config. A type whose config holds SQL adds
#: one line here; one without (Funnel, Regulator) has none.
_SQL_BY_TYPE: dict[str, Callable[[Any, str], Iterable[SqlValue]]] = {
    "Channel": _channel,
    "Ingress": _ingress,
    "Egress": _egress,
    "Junction": _junction,
    "Assert": _assert,
    "Probe": _probe,
}
