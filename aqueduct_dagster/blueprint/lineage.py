"""Static analysis of Channel SQL with sqlglot (Spark dialect).

Parsing is strict (a query that does not parse is the user's error); lineage is best effort
(an unknown upstream schema or an exotic construct yields less lineage, never an error).

sqlglot recurses per nesting level and some of its passes are quadratic in the size of a
tree, so a query is bounded before and after parsing (size, nesting, tree depth and nodes):
a query past a bound is a BlueprintError, never a RecursionError or minutes of analysis.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.lineage import lineage as sqlglot_lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema

from aqueduct_dagster.blueprint.functions import CallSyntaxError, substitute
from aqueduct_dagster.blueprint.work import count
from aqueduct_dagster.errors import BlueprintError

DIALECT = "spark"
#: The name a single-input Channel may use for its input, whatever the upstream is called.
SINGLE_INPUT_ALIAS = "__input__"

#: Bounds on one query: characters, nesting of parentheses and CASE, and the parsed tree.
MAX_SQL_CHARS = 50_000
MAX_SQL_NESTING = 24
MAX_SQL_TREE_DEPTH = 120
MAX_SQL_TREE_NODES = 5_000
_SPLIT_HINT = (
    "split the query: compute parts in CTEs (WITH ...) or in earlier Channels, and match "
    "long value lists with a join against a table instead of chains of OR / IN"
)
_NESTING_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|--[^\n]*|/\*.*?\*/"
                            r"|[()]|\b(?:CASE|END)\b", re.IGNORECASE | re.DOTALL)  # fmt: skip
_RUNTIME_CONTEXT = re.compile(r"\$\{ctx\._[^{}]*\}")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def analysable_sql(sql: str) -> str:
    """`sql` with run-time tokens replaced by a literal, so that it parses before binding.

    `0` reads as a number when bare (`CAST(${ctx._watermark} AS TIMESTAMP)`) and as text
    inside quotes (`'@aq.date.today()'`).
    """
    text = _RUNTIME_CONTEXT.sub("0", sql)
    try:
        return substitute(text, lambda call: "0")
    except CallSyntaxError:
        return text


def parse_single_select(sql: str) -> exp.Query:
    """Parse one read-only query (SELECT, WITH ... SELECT, or a UNION of them).

    Raises BlueprintError for anything else: DDL/DML, commands, several statements, or SQL
    that does not parse. The tree is shared by callers parsing the same text (compiling a
    Channel checks its SQL, then traces its lineage): `.copy()` it before changing it.
    """
    return _parse_single_select(sql)


def too_complex(detail: str) -> BlueprintError:
    return BlueprintError(f"SQL is too complex to analyse: {detail}", hint=_SPLIT_HINT)


def check_sql_bounds(sql: str) -> None:
    """Reject a query whose size or nesting would exhaust the parser (linear pre-scan)."""
    count("sql_chars", len(sql))
    if len(sql) > MAX_SQL_CHARS:
        raise too_complex(f"{len(sql):,} characters (the SQL size limit is {MAX_SQL_CHARS:,})")
    depth = deepest = 0
    for match in _NESTING_TOKEN.finditer(sql):
        token = match.group(0)
        if token in ("(",) or token.upper() == "CASE":
            depth += 1
            deepest = max(deepest, depth)
        elif token == ")" or token.upper() == "END":
            depth = max(depth - 1, 0)
        if deepest > MAX_SQL_NESTING:
            raise too_complex(
                f"parentheses and CASE nest more than {MAX_SQL_NESTING} levels deep "
                f"(the SQL nesting limit)"
            )


def _check_tree_bounds(tree: exp.Expression) -> None:
    nodes = 0
    pending = [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        nodes += 1
        if depth > MAX_SQL_TREE_DEPTH:
            raise too_complex(
                f"its expression tree is more than {MAX_SQL_TREE_DEPTH} levels deep (a chain of "
                "that many AND/OR/+ terms; the SQL depth limit)"
            )
        if nodes > MAX_SQL_TREE_NODES:
            raise too_complex(
                f"more than {MAX_SQL_TREE_NODES:,} expression nodes (the SQL size limit)"
            )
        pending.extend((child, depth + 1) for child in node.iter_expressions())


@functools.lru_cache(maxsize=64)
def _parse_single_select(sql: str) -> exp.Query:
    check_sql_bounds(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except RecursionError:
        raise too_complex("it nests too deeply for the SQL parser") from None
    except ParseError as error:
        raise BlueprintError(f"SQL does not parse: {describe_parse_error(error)}") from None
    except SqlglotError as error:
        raise BlueprintError(f"SQL does not parse: {_plain(str(error))}") from None
    if not statements:
        raise BlueprintError("SQL is empty", hint="write one SELECT statement")
    if len(statements) > 1:
        raise BlueprintError(
            f"expected exactly one SQL statement, found {len(statements)}",
            hint="a Channel query is one SELECT; remove the extra statements and the ';'",
        )
    statement = statements[0]
    _check_tree_bounds(statement)
    if isinstance(statement, exp.Subquery) and isinstance(statement.this, exp.Query):
        statement = statement.this
    if not isinstance(statement, exp.Query):
        kind = statement.key.upper()
        raise BlueprintError(
            f"only a SELECT query is allowed here, found a {kind} statement",
            hint="a Channel query reads its inputs and returns rows; it may not create, "
            "change or drop anything",
        )
    return statement


def describe_parse_error(error: ParseError) -> str:
    if error.errors:
        first = error.errors[0]
        near = _plain(str(first.get("highlight") or "")).strip()
        near_text = f" near '{near}'" if near else ""
        return (
            f"{first.get('description')} at SQL line {first.get('line')}, "
            f"column {first.get('col')}{near_text}"
        )
    return _plain(str(error))


def _plain(text: str) -> str:
    return _ANSI.sub("", text).strip()


def table_references(query: exp.Expression) -> list[str]:
    """Plain (unqualified) table names the query reads, excluding its own CTEs."""
    cte_names = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    names: list[str] = []
    for table in query.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # table-valued function, e.g. FROM range(10)
        if table.args.get("db") or table.args.get("catalog"):
            continue  # catalog-qualified (spark_catalog.db.t, parquet.`/path`): not an input
        if table.find_ancestor(exp.Hint) is not None:
            continue  # /*+ BROADCAST(t) */ names an alias, it does not read one
        if table.name.lower() in cte_names:
            continue
        if table.name not in names:
            names.append(table.name)
    return names


def referenced_columns(sql: str) -> dict[str | None, set[str]]:
    """Table or alias (None when unqualified) -> the column names the query reads.

    Columns that a CTE or subquery computes itself (`ROW_NUMBER() ... AS _rn`) are left
    out: they are not read from an input. Output aliases reused in ORDER BY and lambda
    parameters are left out too.
    """
    query = parse_single_select(analysable_sql(sql))
    try:
        return _referenced_columns(query)
    except RecursionError:
        raise too_complex("it nests too deeply to trace its columns") from None


def _referenced_columns(query: exp.Query) -> dict[str | None, set[str]]:
    result: dict[str | None, set[str]] = {}
    for scope in traverse_scope(query):
        for column in scope.columns:
            name = column.name
            if not name or name == "*" or isinstance(column.this, exp.Star):
                continue
            if not column.table and _is_lambda_parameter(column):
                continue
            if _computed_by_derived_source(scope, column):
                continue
            result.setdefault(column.table or None, set()).add(name)
    return result


def _is_lambda_parameter(column: exp.Column) -> bool:
    lambda_ = column.find_ancestor(exp.Lambda)
    while lambda_ is not None:
        if any(p.name == column.name for p in lambda_.expressions):
            return True
        lambda_ = lambda_.find_ancestor(exp.Lambda)
    return False


def _computed_by_derived_source(scope: Scope, column: exp.Column) -> bool:
    """The column names an output a CTE/subquery of this scope lists explicitly."""
    if column.table:
        source = scope.sources.get(column.table)
        derived = [source] if isinstance(source, Scope) else []
    else:
        derived = [s for s in scope.sources.values() if isinstance(s, Scope)]
    name = column.name.lower()
    for source in derived:
        expression = source.expression
        projections = expression.selects if isinstance(expression, exp.Query) else []
        for projection in projections:
            if isinstance(projection, exp.Star) or (
                isinstance(projection, exp.Column) and projection.is_star
            ):
                continue  # `*` passes input columns through: those are read, not computed
            if projection.alias_or_name.lower() == name:
                return True
    return False


def output_width(query: exp.Query, upstream_columns: int) -> int:
    """How many output columns lineage would trace: a `*` stands for the upstream ones."""
    width = 0
    for select in query.selects:
        star = isinstance(select, exp.Star) or (isinstance(select, exp.Column) and select.is_star)
        width += upstream_columns if star else 1
    return width


def column_lineage(
    sql: str, upstream_columns: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[tuple[str, str]]]:
    """Output column -> sorted [(upstream table, column), ...], best effort.

    `upstream_columns` (table -> its columns) lets `*` expand and unqualified columns resolve
    when several tables are joined. Never raises for SQL that parses.
    """
    query = parse_single_select(analysable_sql(sql))
    return _lineage(query, dict(upstream_columns or {}))[0]


def lineage_with_completeness(
    sql: str, upstream_columns: Mapping[str, Sequence[str]]
) -> tuple[dict[str, list[tuple[str, str]]], bool]:
    """Like column_lineage, plus whether every output column is known (no unexpanded `*`)."""
    query = parse_single_select(analysable_sql(sql))
    return _lineage(query, dict(upstream_columns))


def _lineage(
    query: exp.Query, upstream: dict[str, Sequence[str]]
) -> tuple[dict[str, list[tuple[str, str]]], bool]:
    tables = {name.lower(): name for name in upstream}
    tables.update({t.name.lower(): t.name for t in query.find_all(exp.Table) if t.name})
    original_names = {c.lower(): c for columns in upstream.values() for c in columns}
    original_names.update(
        {e.alias_or_name.lower(): e.alias_or_name for e in query.selects if e.alias_or_name}
    )
    schema_mapping = {
        table: {column: "STRING" for column in columns} for table, columns in upstream.items()
    }
    try:
        schema = MappingSchema(schema_mapping, dialect=DIALECT)
        qualified = qualify(
            query.copy(),
            schema=schema,
            dialect=DIALECT,
            validate_qualify_columns=False,
            identify=False,
        )
        scope = build_scope(qualified)
    except Exception:  # noqa: BLE001 - lineage is best effort by contract
        return {}, False
    if scope is None:
        return {}, False

    result: dict[str, list[tuple[str, str]]] = {}
    complete = True
    for projection in qualified.selects:
        name = projection.alias_or_name
        if not name or name == "*" or isinstance(projection, exp.Star):
            complete = False
            continue
        if isinstance(projection, exp.Column) and projection.is_star:
            complete = False
            continue
        sources: list[tuple[str, str]] = []
        try:
            # trim_selects would copy the whole query per lineage step; only the steps'
            # tables and names are read here.
            node = sqlglot_lineage(
                name, qualified, schema=schema, dialect=DIALECT, scope=scope, copy=False,
                trim_selects=False,
            )
            for step in node.walk():
                if isinstance(step.expression, exp.Table):
                    table = tables.get(step.expression.name.lower(), step.expression.name)
                    column = step.name.split(".")[-1]
                    column = original_names.get(column.lower(), column)
                    if (table, column) not in sources:
                        sources.append((table, column))
        except Exception:  # noqa: BLE001 - one odd column must not cost the others
            pass
        # sqlglot walks sets internally; sorting keeps Manifests identical across processes.
        result[original_names.get(name.lower(), name)] = sorted(sources)
    return result, complete


def passed_through_lineage(
    columns: Sequence[str],
    inputs: Sequence[tuple[str, Sequence[str] | None]],
    renamed: Mapping[str, str] | None = None,
) -> dict[str, list[tuple[str, str]]]:
    """Lineage of a module that hands columns on unchanged (an Assert, an Egress, a filter,
    a Funnel): output column -> [(input module, column), ...] for every input that has it.

    `inputs` are (module, its known columns or None); an input of unknown columns is taken
    to have the column. `renamed` is a rename's mapping (old -> new). A column no input
    has (a select expression) gets no lineage rather than a wrong one.
    """
    old_names = {new: old for old, new in (renamed or {}).items()}
    lineage: dict[str, list[tuple[str, str]]] = {}
    for column in columns:
        source = old_names.get(column, column)
        pairs = [(module, source) for module, known in inputs if known is None or source in known]
        if pairs:
            lineage[column] = pairs
    return lineage
