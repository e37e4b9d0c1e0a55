"""Rules for SQL that no longer fits its input: a column renamed, ambiguous, reserved or of
another type."""

from __future__ import annotations

import difflib
import re

import yaml

from aqueduct_dagster.healing import sql_edit
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.rules.common import (
    Refusal,
    error_param,
    new_patch,
    rewrite_sql_sites,
    sql_fields,
)
from aqueduct_dagster.healing.rules.drift_evidence import rename_from_drift


def unresolved_column(package: FailurePackage) -> PatchSpec | None:
    if not package.condition.startswith(("UNRESOLVED_COLUMN", "FIELD_NOT_FOUND")):
        return None
    object_name = error_param(package, "objectName", "fieldName")
    if object_name is None:
        match = re.search(r"name `([^`]+)`(?:\.`([^`]+)`)?\s+cannot be resolved", package.error.message)
        object_name = (match.group(2) or match.group(1)) if match else None
    if not object_name:
        return None
    missing = sql_edit.strip_identifier(object_name)
    # Where the column disappeared since the last good run, the drift decides; where no good
    # run had it either, the Blueprint has a typo and the reading below applies.
    evidence = rename_from_drift(package, missing)
    if evidence is not None:
        return evidence
    candidates = sql_edit.split_proposals(error_param(package, "proposal") or "")
    candidates += [c for c in _message_columns(package.error.message) if c not in candidates]
    upstream = {c for cols in package.upstream_columns().values() for c in cols}
    if upstream:
        candidates += sorted(c for c in upstream if c not in candidates)
        candidates = [c for c in candidates if c in upstream]
    candidates = [c for c in candidates if c.lower() != missing.lower()]
    if not candidates:
        return None
    sql = "\n".join(text for _, text in sql_fields(package.module_raw.get("config") or {}))
    sql += "\n" + "\n".join(package.macros.values())
    ranked = sorted(((_candidate_score(missing, c, sql), c) for c in candidates), reverse=True)
    best_score, best = ranked[0]
    if best_score < 0.6 or (len(ranked) > 1 and best_score - ranked[1][0] < 0.05):
        return None  # too close to call: a person (or the LLM) should pick
    # Upstream drift: downstream still reads the old name, so the query keeps emitting it
    # (`new AS old`). A typo in this module: downstream reads the right name; rename plainly.
    downstream = yaml.safe_dump([n.config for n in package.neighbourhood if n.role == "downstream"])
    keep_output = sql_edit.contains_identifier(downstream, missing) or not sql_edit.contains_identifier(
        downstream, best
    )

    def rename(text: str) -> str | None:
        if not sql_edit.contains_identifier(text, missing):
            return None
        if keep_output and re.search(r"\bSELECT\b", text, re.I):
            return sql_edit.rename_keeping_output(text, missing, best)
        return sql_edit.replace_identifier(text, missing, best)

    operations = rewrite_sql_sites(package, rename)
    if not operations:
        return None
    return new_patch(
        package, "rename-column", operations,
        rationale=f"column '{missing}' no longer exists upstream; '{best}' is the column it became",
        root_cause=f"upstream schema drift: `{missing}` cannot be resolved, `{best}` is available "
        f"(candidates: {', '.join(c for _, c in ranked[:4])})",
        category="schema_drift", confidence=round(min(0.95, 0.5 + best_score / 3), 2),
    )  # fmt: skip


_ABBREVIATIONS = {
    "ts": ("time", "timestamp"), "dt": ("date", "datetime"), "amt": ("amount",),
    "qty": ("quantity",), "num": ("number",), "cust": ("customer",), "id": ("key",),
    "addr": ("address",), "desc": ("description",), "cnt": ("count",),
}  # fmt: skip


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[_\W]+", name.lower()) if t]


def _expanded(name: str) -> set[str]:
    tokens = set(_tokens(name))
    for token in list(tokens):
        tokens.update(_ABBREVIATIONS.get(token, ()))
    return tokens


def _candidate_score(missing: str, candidate: str, sql: str) -> float:
    score = difflib.SequenceMatcher(None, missing.lower(), candidate.lower()).ratio()
    wanted, offered = _expanded(missing), set(_tokens(candidate))
    score += 0.4 * len(wanted & offered) / max(len(offered), 1)
    # Lineage: `CAST(event_ts AS ...) AS event_time` says which column the author meant.
    if candidate.lower() in (a.lower() for a in sql_edit.select_aliases_using(sql, missing)):
        score += 0.5
    # A column the query already reads under its own name is rarely the renamed one.
    if sql_edit.contains_identifier(sql, candidate):
        score -= 0.3
    return score


def _message_columns(message: str) -> list[str]:
    """Columns Spark names in the message: the proposal list or a `Relation [a#1,b#2]` plan."""
    names: list[str] = []
    proposal = re.search(r"Did you mean one of the following\?\s*\[([^\]]*)\]", message)
    if proposal:
        names += sql_edit.split_proposals(proposal.group(1))
    for relation in re.findall(r"Relation \[([^\]]*)\]", message):
        names += [part.split("#")[0] for part in relation.split(",")]
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


def schema_hint_mismatch(package: FailurePackage) -> PatchSpec | None:
    message = package.error.message
    column = error_param(package, "column")
    actual = error_param(package, "actual")
    if package.condition != "AQ_SCHEMA_HINT_MISMATCH":
        match = re.search(r"schema_hint type mismatch on '([^']+)': expected '[^']+', actual '([^']+)'", message)
        if not match:
            return None
        column, actual = match.groups()
    if not column or not actual or package.module_type != "Ingress":
        return None
    hint = (package.module_raw.get("config") or {}).get("schema_hint")
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        columns = [dict(c, type=actual) if c.get("name") == column else c for c in hint["columns"]]
        operation = {"op": "set_module_config_key", "module_id": package.failed_module,
                     "key": "schema_hint.columns", "value": columns}  # fmt: skip
    elif isinstance(hint, dict) and column in hint:
        operation = {"op": "set_module_config_key", "module_id": package.failed_module,
                     "key": f"schema_hint.{column}", "value": actual}  # fmt: skip
    else:
        return None
    return new_patch(
        package, "schema-hint", [operation],
        rationale=f"the data's '{column}' is {actual}; the schema_hint now says so",
        root_cause=f"schema_hint for '{column}' expects another type than the source's {actual}",
        category="schema_drift", confidence=0.75,
    )  # fmt: skip


def ambiguous_reference(package: FailurePackage) -> PatchSpec | None:
    if not package.condition.startswith("AMBIGUOUS_REFERENCE"):
        return None
    name = sql_edit.strip_identifier(error_param(package, "name") or "")
    references = re.findall(r"`([^`]+)`\.`[^`]+`", error_param(package, "referenceNames") or "")
    if not name or not references:
        return None
    # The side that had the column in the last good run is the one the query meant; the
    # side listed first by Spark is only the first in the plan (often the one that gained it).
    sides = _qualifier_sources(package)
    had = [q for q in references if name.lower() in _columns_before(package, sides.get(q.lower(), q))]
    if len(had) != 1:
        before = {q: sorted(_columns_before(package, sides.get(q.lower(), q)))[:12] for q in references}
        return Refusal(f"'{name}' is in {', '.join(references)}; {'none' if not had else 'more than one'} of them "
                       f"had it in {package.last_good} (columns then: {before}): a person picks the side")  # fmt: skip
    qualifier = had[0]
    operations = rewrite_sql_sites(
        package,
        lambda t: sql_edit.qualify_identifier(t, name, qualifier) if sql_edit.contains_identifier(t, name) else None,
    )
    if not operations:
        return None
    return new_patch(
        package, "qualify", operations,
        rationale=f"'{name}' exists in several joined inputs; it is now read from '{qualifier}'",
        root_cause=f"AMBIGUOUS_REFERENCE: `{name}` is in {', '.join(references)}",
        category="sql", confidence=0.7,
    )  # fmt: skip


def _qualifier_sources(package: FailurePackage) -> dict[str, str]:
    """Table alias in the failed module's SQL -> the module it reads (`s` -> `shipments`)."""
    import sqlglot
    from sqlglot import exp

    inputs = {}
    for neighbour in package.neighbourhood:
        if neighbour.role == "failed":
            for entry in neighbour.inputs:
                source, _, alias = entry.partition(" as ")
                inputs[(alias or source).lower()] = source
    sides: dict[str, str] = {}
    for _key, text in sql_fields(package.module_raw.get("config") or {}):
        try:
            tree = sqlglot.parse_one(text, read="spark")
        except Exception:  # noqa: BLE001 - templated or partial SQL: no aliases from it
            continue
        for table in tree.find_all(exp.Table):
            source = inputs.get(table.name.lower(), table.name)
            sides[table.alias_or_name.lower()] = source
            sides[table.name.lower()] = source
    return sides


def _columns_before(package: FailurePackage, module_id: str) -> set[str]:
    drift = package.drift.get(module_id) or {}
    return {c.lower() for c in drift.get("columns_before") or []}


_RESERVED = {"user", "order", "group", "select", "from", "where", "table", "date", "timestamp",
             "limit", "end", "case", "when", "values", "current_user", "desc", "asc", "by"}  # fmt: skip


def reserved_identifier(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "PARSE_SYNTAX_ERROR":
        return None
    token = (error_param(package, "error") or "").strip("'\"`")
    if not token:
        match = re.search(r"Syntax error at or near '([^']+)'", package.error.message)
        token = match.group(1) if match else ""
    if token.lower() not in _RESERVED:
        return None
    pattern = re.compile(rf"(?<![\w`.]){re.escape(token)}(?=\s*(,|$|\n|\bAS\b))", re.I | re.M)
    operations = rewrite_sql_sites(package, lambda t: pattern.sub(f"`{token}`", t) if pattern.search(t) else None)
    if not operations:
        return None
    return new_patch(
        package, "quote-reserved", operations,
        rationale=f"'{token}' is a reserved word in Spark SQL; quoting it as `{token}` makes it a column name",
        root_cause=f"syntax error: the column name {token} is a reserved keyword and must be backtick-quoted",
        category="sql", confidence=0.8,
    )  # fmt: skip


_NUMERIC_REQUIRED = re.compile(r"\bNUMERIC\b|\b(?:BIG|SMALL|TINY)?INT\b|\bDOUBLE\b|\bDECIMAL\b", re.I)


def string_where_numeric_expected(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE":
        return None
    message = package.error.message
    input_type = error_param(package, "inputType") or _search(r'has the type ("[^"]+")', message) or ""
    required = error_param(package, "requiredType") or _search(r"requires the (.+?) type, however", message) or ""
    input_sql = (error_param(package, "inputSql") or _search(r'however ("[^"]+") has the type', message) or "").strip('"')
    call = (error_param(package, "sqlExpr") or _search(r'Cannot resolve ("[^"]+")', message) or "").strip('"')
    if input_type.strip('"').upper() != "STRING" or not _NUMERIC_REQUIRED.search(required):
        return None
    function = re.match(r"(\w+)\s*\(", call)
    if function is None or not re.fullmatch(r"[A-Za-z_]\w*", input_sql):
        return None  # only a plain column given straight to a function; anything else is a guess
    # SUM(event_id) / sum(t.`event_id`) / avg(DISTINCT event_id): the argument becomes a DOUBLE.
    argument = rf"(?:\w+\.)?`?{re.escape(input_sql)}`?"
    pattern = re.compile(rf"(?<![\w.])({re.escape(function.group(1))}\s*\(\s*(?:DISTINCT\s+)?)({argument})(\s*\))", re.I)
    operations = rewrite_sql_sites(
        package, lambda t: pattern.sub(r"\1CAST(\2 AS DOUBLE)\3", t) if pattern.search(t) else None
    )
    if not operations:
        return None
    return new_patch(
        package, "cast-numeric", operations,
        rationale=f"'{input_sql}' is read as STRING; {function.group(1)}() needs a number, so it is cast to DOUBLE",
        root_cause=f"type mismatch: {function.group(1)}({input_sql}) needs a numeric input, "
        f"but the column {input_sql} has the type string",
        category="type_mismatch", confidence=0.75,
    )  # fmt: skip


def _search(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None
