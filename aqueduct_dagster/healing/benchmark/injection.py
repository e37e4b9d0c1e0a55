"""A scenario's injected failure as the `FailureRecord` a real run would have recorded."""

from __future__ import annotations

import re

from aqueduct_dagster.engine.errors import FailureRecord, SparkErrorInfo, is_transient
from aqueduct_dagster.healing.benchmark.scenario import (
    InjectedFailure,
    LoadedScenario,
    StructuredError,
)
from aqueduct_dagster.healing.failure import FailurePackage, build_failure_package

_CONDITION = re.compile(r"\[([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)\]")
_SQLSTATE = re.compile(r"SQLSTATE:\s*([0-9A-Z]{5})")
_EXCEPTION = re.compile(r"^\s*([A-Za-z_][\w.$]*(?:Exception|Error))\b:?", re.M)
_CAUSED_BY = re.compile(r"^\s*Caused by:\s*(.+)$", re.M)
#: Spark's rendered message -> its message parameters, for the errors rules key on.
_MESSAGE_PARAMETERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("objectName", re.compile(r"name (`[^`]+`(?:\.`[^`]+`)*) cannot be resolved")),
    ("proposal", re.compile(r"Did you mean one of the following\?\s*\[([^\]]*)\]")),
    ("path", re.compile(r"Path does not exist:\s*(\S+?)\.?(?:\s|$)")),
    ("error", re.compile(r"Syntax error at or near ('[^']*')")),
    ("sqlExpr", re.compile(r"Cannot resolve (\"[^\"]+\") due to data type mismatch")),
    ("requiredType", re.compile(r"requires the (.+?) type, however")),
    ("inputSql", re.compile(r"however (\"[^\"]+\") has the type")),
    ("inputType", re.compile(r"has the type (\"[^\"]+\")")),
)
#: Framework messages -> the condition and parameters this project's engine raises for them.
_ENGINE_MESSAGES: tuple[tuple[str, re.Pattern[str], dict[str, str]], ...] = (
    ("AQ_SCHEMA_HINT_MISMATCH",
     re.compile(r"schema_hint type mismatch on '(?P<column>[^']+)': expected '(?P<expected>[^']+)', actual '(?P<actual>[^']+)'"),
     {"kind": "type"}),
)  # fmt: skip


def error_from_injection(failure: InjectedFailure) -> SparkErrorInfo:
    """The structured error (the engine's `SparkErrorInfo`) a real run would have captured.

    Structured fields win; what they leave out is read from the message the way Spark renders
    it (`[CONDITION]`, `SQLSTATE: ...`, the suggestion list).
    """
    message = failure.error_message.strip()
    structured = failure.structured or StructuredError()
    root = structured.root_exception
    everything = "\n".join([message, failure.stack_trace or ""])
    condition = structured.error_class or _first(_CONDITION, message)
    sqlstate = structured.sql_state or _first(_SQLSTATE, message)
    exception_class = _first(_EXCEPTION, message) or (root.type if root else None) or _first(_EXCEPTION, everything)
    parameters: dict[str, str] = {}
    for name, pattern in _MESSAGE_PARAMETERS:
        value = _first(pattern, message)
        if value is not None:
            parameters[name] = value
    for engine_condition, pattern, fixed in _ENGINE_MESSAGES:
        match = pattern.search(message)
        if match and condition is None:
            condition = engine_condition
            parameters.update(fixed, **match.groupdict())
    if structured.object_name:
        parameters["objectName"] = structured.object_name
    if structured.suggested_columns:
        parameters["proposal"] = ", ".join(f"`{c}`" for c in structured.suggested_columns)
    cause_chain = [c.strip() for c in _CAUSED_BY.findall(everything)]
    if root and (root.type or root.message):
        cause_chain.append(": ".join(p for p in (root.type, root.message) if p))
    transient = is_transient(exception_class=exception_class or "", condition=condition, sqlstate=sqlstate,
                             message=message, cause_chain=cause_chain)  # fmt: skip
    return SparkErrorInfo(exception_class=exception_class or "", condition=condition, sqlstate=sqlstate,
                          message_parameters=parameters, message=message, cause_chain=cause_chain,
                          transient=transient)  # fmt: skip


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text or "")
    return match.group(1) if match else None


_PLAN_NODE = re.compile(r"^(?P<prefix>[ \t:|]*(?:[+:]- )?)'?(?P<name>[A-Z][A-Za-z]+)\b(?P<rest>.*)$")
_PASS_THROUGH = {"SubqueryAlias", "Filter", "Sort", "Distinct", "View", "GlobalLimit", "LocalLimit", "Limit",
                 "Repartition", "RepartitionByExpression", "ResolvedHint"}  # fmt: skip
_COLUMN_LISTS = {"Relation", "LocalRelation", "LogicalRDD", "Project", "Aggregate"}


def plan_schemas(text: str) -> dict[str, list[str]]:
    """Relation name -> output columns, read from the analysed plan that Spark prints.

    `SubqueryAlias events_raw +- Relation [event_id#41,user_id#42] csv` says what the input
    `events_raw` really has; a Project under an alias says what an upstream SELECT keeps.
    """
    nodes = []
    for line in text.splitlines():
        match = _PLAN_NODE.match(line)
        if match and (match["name"] in _PASS_THROUGH or match["name"] in _COLUMN_LISTS or match["prefix"].strip()):
            nodes.append((len(match["prefix"]), match["name"], match["rest"]))
    schemas: dict[str, list[str]] = {}
    for index, (depth, name, rest) in enumerate(nodes):
        if name != "SubqueryAlias" or not rest.strip():
            continue
        alias = rest.split()[0].split(".")[-1].strip("`")
        columns = _output_columns(nodes, index, depth)
        if columns and alias not in schemas:
            schemas[alias] = columns
    return schemas


def _output_columns(nodes: list[tuple[int, str, str]], index: int, depth: int) -> list[str] | None:
    """Follow first children through pass-through nodes to the node that lists columns."""
    for child_depth, name, rest in nodes[index + 1 :]:
        if child_depth <= depth:
            return None
        if name in _COLUMN_LISTS:
            lists = _bracket_lists(rest)
            if not lists:
                return None
            return [c for c in (_column_name(item) for item in _split_top_level(lists[-1])) if c]
        if name not in _PASS_THROUGH:
            return None
        depth = child_depth
    return None


def _bracket_lists(text: str) -> list[str]:
    lists, level, start = [], 0, 0
    for position, char in enumerate(text):
        if char == "[":
            if level == 0:
                start = position + 1
            level += 1
        elif char == "]" and level:
            level -= 1
            if level == 0:
                lists.append(text[start:position])
    return lists


def _split_top_level(text: str) -> list[str]:
    items, level, current = [], 0, []
    for char in text:
        if char in "([":
            level += 1
        elif char in ")]":
            level -= 1
        if char == "," and level == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [i.strip() for i in items if i.strip()]


def _column_name(item: str) -> str | None:
    aliased = re.search(r"\bAS\s+`?(\w+)`?(?:#\d+L?)?\s*$", item, re.I)
    if aliased:
        return aliased.group(1)
    bare = re.fullmatch(r"'?(?:\w+\.)*`?(\w+)`?(?:#\d+L?)?", item.strip())
    return bare.group(1) if bare else None


def input_schemas_for(loaded: LoadedScenario) -> dict[str, list[tuple[str, str]]]:
    """Input alias -> [(column, type)] for the failed module, from the scenario and the plan text."""
    failure = loaded.scenario.inject_failure
    plan = plan_schemas("\n".join([failure.error_message, failure.stack_trace or ""]))
    given = failure.input_schemas or {}
    schemas: dict[str, list[tuple[str, str]]] = {}
    for module_input in loaded.manifest.module(failure.module).inputs:
        for name in (module_input.alias, module_input.source):
            if name in given:
                columns = given[name]
                pairs = list(columns.items()) if isinstance(columns, dict) else [(c, "unknown") for c in columns]
                schemas[module_input.alias] = [(str(c), str(t)) for c, t in pairs]
                break
            if name in plan:
                schemas[module_input.alias] = [(c, "unknown") for c in plan[name]]
                break
    return schemas


def scenario_failure(loaded: LoadedScenario) -> FailureRecord:
    """The FailureRecord a run of the scenario's Blueprint would have recorded."""
    failure = loaded.scenario.inject_failure
    return FailureRecord(module_id=failure.module, error=error_from_injection(failure),
                         message=failure.error_message.strip(), input_schemas=input_schemas_for(loaded))  # fmt: skip


def build_scenario_package(loaded: LoadedScenario) -> FailurePackage:
    return build_failure_package(manifest=loaded.manifest, blueprint_text=loaded.blueprint_text,
                                 failure=scenario_failure(loaded), run_id=f"benchmark-{loaded.id}")  # fmt: skip
