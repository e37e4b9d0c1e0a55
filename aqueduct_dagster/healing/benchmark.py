"""The offline heal benchmark: simulated failures (`*.aqscenario.yml`), graded by a patch's effect.

    report = run_benchmark(Path("gallery/aqscenarios"), healer="rules")
    report = run_benchmark(path, healer="openai_compat/qwen2.5-coder:7b", connection=AgentConnection(base_url=...))

A scenario names a Blueprint, a failure to inject into one of its modules (the error text Spark
would print, optionally Spark's structured fields) and what a good heal achieves. Each scenario
becomes a `FailurePackage`, a diagnoser (the offline rules, or an LLM) proposes a patch, the
non-Spark gates (guardrails, compile, lineage) judge it, and the grader checks the post-patch
Blueprint (`expected_patch.effect`) and the scenario's `assertions`. No Spark is needed unless
`execute=True`, which also runs the healed pipeline on generated data.

Grading is by effect, not by operation name: any patch that lands the expected end state
passes. Gating assertions (`patch_is_valid`, `patch_applies`, `patch_refused`, `gate_status`,
`allow_defer`) decide pass/fail with the effect; scoring assertions (`root_cause_contains`,
`expected_category`, `max_attempts`, `min_confidence`) are recorded and never flip the verdict.
An assertion this grader does not know fails as "unsupported assertion X".
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.config import AgentConnection
from aqueduct_dagster.errors import AqueductError, SourceLocation
from aqueduct_dagster.healing.failure import FailurePackage, build_failure_package
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    GateResult,
    GuardrailsGate,
    LineageGate,
    run_gates,
)
from aqueduct_dagster.healing.patch import PatchSpec, SetEngineConfig

SCENARIO_SUFFIX = ".aqscenario.yml"
RULES = "rules"


class ScenarioError(AqueductError):
    """A scenario file (or the Blueprint it names) is invalid; names the file and the key."""


# --------------------------------------------------------------------------- scenario format


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RootException(_Strict):
    type: str | None = None
    message: str | None = None


class StructuredError(_Strict):
    """Spark's structured error fields, as production extracts them from the exception."""

    error_class: str | None = None
    sql_state: str | None = None
    object_name: str | None = None
    suggested_columns: list[str] = Field(default_factory=list)
    root_exception: RootException | None = None


class InjectedFailure(_Strict):
    module: str
    engine: Literal["spark", "duckdb"] = "spark"
    error_message: str
    stack_trace: str | None = None
    structured: StructuredError | None = None
    #: Input alias -> its columns (a list of names, or name -> type); extends the plan text.
    input_schemas: dict[str, list[str] | dict[str, str]] | None = None


class ModuleMatch(_Strict):
    """Some module (any id) has this type / id and config."""

    type: str | None = None
    id: str | None = None
    config_contains: dict[str, Any] | None = None
    config_not_contains: dict[str, Any] | None = None


class Effect(_Strict):
    """What the post-patch Blueprint must look like; every stated part must hold."""

    module: str | None = None
    config_contains: dict[str, Any] | None = None
    config_not_contains: dict[str, Any] | None = None
    modules_contain: ModuleMatch | None = None
    engine_config: dict[str, dict[str, Any]] | None = None
    engine_config_changed: dict[str, list[str]] | None = None
    any_of: list[Effect] | None = None

    @model_validator(mode="after")
    def _states_something(self) -> Effect:
        if (self.config_contains is not None or self.config_not_contains is not None) and not self.module:
            raise ValueError("config_contains / config_not_contains need `module:` (the module they describe)")
        if not any(
            v is not None
            for v in (self.module, self.modules_contain, self.engine_config, self.engine_config_changed, self.any_of)
        ):
            raise ValueError(
                "an effect must state at least one of module, modules_contain, engine_config, "
                "engine_config_changed, any_of (an empty effect would pass every patch)"
            )
        return self


class ExpectedPatch(_Strict):
    effect: Effect | None = None
    #: Pre-2.3.0 spelling: operations the patch must carry (graded by their effect where possible).
    operations: list[dict[str, Any]] | None = Field(default=None, alias="ops")

    @property
    def states_something(self) -> bool:
        return self.effect is not None or bool(self.operations)


#: Assertion name -> the type of its value. The first five gate the verdict; the rest are scores.
_ASSERTION_TYPES: dict[str, Any] = {
    "patch_is_valid": bool,
    "patch_applies": bool,
    "patch_refused": Literal["policy", "inert", "guardrail", "invalid"],
    "gate_status": dict[str, Literal["pass", "warn", "fail", "not_applicable", "unavailable", "observed"]],
    "allow_defer": bool,
    "root_cause_contains": str | list[str],
    "expected_category": str,
    "max_attempts": int,
    "min_confidence": float,
}


class Scenario(_Strict):
    aqueduct_scenario: str = "1.0"
    id: str
    description: str = ""
    blueprint: str
    domains: list[Literal["pipeline", "engine_config"]] = Field(default_factory=list)
    tier: str | None = None
    red_herring: str | None = None
    inject_failure: InjectedFailure
    expected_patch: ExpectedPatch | None = None
    assertions: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("assertions")
    @classmethod
    def _assertions_are_single_keys(cls, assertions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from pydantic import TypeAdapter

        for index, item in enumerate(assertions):
            if len(item) != 1:
                raise ValueError(f"item {index + 1} must be a mapping with one key, e.g. `- patch_applies: true`")
            [(name, value)] = item.items()
            if name in _ASSERTION_TYPES:  # an unknown name is reported when grading, not here
                try:
                    adapter = TypeAdapter(_ASSERTION_TYPES[name])
                    item[name] = adapter.validate_python(value, strict=name != "min_confidence")
                except ValidationError as error:
                    problem = error.errors()[0]["msg"]
                    raise ValueError(f"item {index + 1} ({name}): {problem}, got {value!r}") from None
        return assertions

    def assertion(self, name: str) -> Any:
        return next((item[name] for item in self.assertions if name in item), None)


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: Path
    blueprint_path: Path
    blueprint_text: str
    manifest: Manifest

    @property
    def id(self) -> str:
        return self.scenario.id


def discover_scenarios(path: str | Path) -> list[Path]:
    """The scenario files at `path`: the file itself, or every `*.aqscenario.yml` below a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ScenarioError(
            f"no scenario file or folder at {path}",
            location=SourceLocation(str(path)),
            hint=f"give a folder of *{SCENARIO_SUFFIX} files, or one such file",
        )
    found = sorted(
        p for p in path.rglob(f"*{SCENARIO_SUFFIX}")
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    )  # fmt: skip
    if not found:
        raise ScenarioError(
            f"no *{SCENARIO_SUFFIX} files in {path}",
            location=SourceLocation(str(path)),
            hint="scenario files end in .aqscenario.yml",
        )
    return found


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and compile one scenario (and its Blueprint); ScenarioError on bad input."""
    from aqueduct_dagster.blueprint import compile_text
    from aqueduct_dagster.healing.patch import load_document

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as error:
        raise ScenarioError(f"cannot read the scenario: {error}", location=SourceLocation(str(path))) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise ScenarioError(
            f"invalid YAML: {getattr(error, 'problem', error)}",
            location=SourceLocation(str(path), mark.line + 1, mark.column + 1) if mark else SourceLocation(str(path)),
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping", location=SourceLocation(str(path)))
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise _scenario_error(path, text, error) from None

    blueprint_path = path.parent / scenario.blueprint
    where = _key_location(path, load_document(text), ("blueprint",))
    try:
        blueprint_text = blueprint_path.read_text(encoding="utf-8")
    except OSError:
        raise ScenarioError(
            f"blueprint: no file at {blueprint_path}",
            location=where,
            hint="`blueprint:` is resolved relative to the scenario file",
        ) from None
    try:
        manifest = compile_text(blueprint_text, source_path=blueprint_path)
    except AqueductError as error:
        raise ScenarioError(f"blueprint: {blueprint_path} does not compile: {error}", location=where) from None
    module = scenario.inject_failure.module
    if module not in manifest.modules:
        close = difflib.get_close_matches(module, list(manifest.modules), n=1)
        raise ScenarioError(
            f"inject_failure.module: no module '{module}' in {blueprint_path.name}",
            location=_key_location(path, load_document(text), ("inject_failure", "module")),
            hint=f"did you mean '{close[0]}'?" if close else f"modules are: {', '.join(manifest.modules)}",
        )
    return LoadedScenario(scenario, path, blueprint_path, blueprint_text, manifest)


def _scenario_error(path: Path, text: str, error: ValidationError) -> ScenarioError:
    from aqueduct_dagster.healing.patch import load_document

    # A misspelt key also makes the right one "missing": report the misspelling, it names the fix.
    first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(str(p) for p in first["loc"])
    key = ".".join(loc) or "(top level)"
    location = _key_location(path, load_document(text), loc)
    hint = None
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(loc[-1], sorted(_known_keys()), n=1)
        message = f"{key}: unknown key"
        hint = f"did you mean '{close[0]}'?" if close else "remove it (the scenario reader is strict)"
    else:
        message = f"{key}: {first['msg'].removeprefix('Value error, ')}"
    return ScenarioError(message, location=location, hint=hint)


def _known_keys() -> set[str]:
    keys: set[str] = set(_ASSERTION_TYPES)
    for model in (Scenario, InjectedFailure, StructuredError, RootException, ExpectedPatch, Effect, ModuleMatch):
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    return keys


def _key_location(path: Path, document: Any, loc: Sequence[str]) -> SourceLocation:
    """file:line of the deepest key of `loc` that exists in the round-trip document."""
    line = column = None
    node = document
    for part in loc:
        try:
            if isinstance(node, dict) and part in node:
                line, column = node.lc.key(part)
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                line, column = node.lc.item(int(part))
                node = node[int(part)]
            else:
                break
        except AttributeError:
            break
    if line is None:
        return SourceLocation(str(path))
    return SourceLocation(str(path), line + 1, column + 1 if column is not None else None)


# --------------------------------------------------------------------------- the failure package

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


def error_from_injection(failure: InjectedFailure) -> dict[str, Any]:
    """The structured error (the engine's `SparkErrorInfo` shape) a real run would have captured.

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
    from aqueduct_dagster.engine.errors import is_transient

    transient = is_transient(exception_class=exception_class or "", condition=condition, sqlstate=sqlstate,
                             message=message, cause_chain=cause_chain)  # fmt: skip
    return {
        "exception_class": exception_class or "",
        "condition": condition,
        "sqlstate": sqlstate,
        "message_parameters": parameters,
        "message": message,
        "cause_chain": cause_chain,
        "transient": transient,
    }


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


def build_scenario_package(loaded: LoadedScenario) -> FailurePackage:
    failure = loaded.scenario.inject_failure
    return build_failure_package(
        manifest=loaded.manifest,
        blueprint_text=loaded.blueprint_text,
        failed_module=failure.module,
        error=error_from_injection(failure),
        input_schemas=input_schemas_for(loaded),
        run_id=f"benchmark-{loaded.id}",
    )


# --------------------------------------------------------------------------- healing


@dataclass
class HealAttempt:
    """What the diagnoser and the gates made of one scenario."""

    patch: PatchSpec | None = None
    reason: str = ""
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    gate_results: list[GateResult] = field(default_factory=list)
    patched_text: str | None = None
    patched_manifest: Manifest | None = None
    #: The diagnoser answered, but with no valid PatchSpec (schema errors after retries).
    invalid: bool = False

    @property
    def deferred(self) -> bool:
        return self.patch is not None and self.patch.deferred is not None

    @property
    def rejected_by(self) -> GateResult | None:
        return next((r for r in self.gate_results if not r.passed), None)

    @property
    def applied(self) -> bool:
        """The patch passed every non-Spark gate: the heal would stage it."""
        return self.patch is not None and not self.deferred and bool(self.gate_results) and self.rejected_by is None


def llm_connection(model: str, base: AgentConnection | None = None, *,
                   base_url: str | None = None) -> AgentConnection:  # fmt: skip
    """`provider/name` (e.g. `openai_compat/qwen2.5-coder:7b`) on top of the configured agent."""
    provider, _, name = model.partition("/")
    allowed = ("anthropic", "openai", "openai_compat", "ollama", "vllm")
    if not name or provider not in allowed:
        raise ScenarioError(
            f"model '{model}' is not provider/name",
            hint=f"write e.g. openai_compat/qwen2.5-coder:7b; providers: {', '.join(allowed)}",
        )
    connection = (base or AgentConnection()).model_copy(deep=True)
    connection.provider, connection.model = provider, name  # type: ignore[assignment]
    if base_url:
        connection.base_url = base_url
    return connection


def _diagnoser(healer: str, connection: AgentConnection | None, loaded: LoadedScenario) -> Any:
    from aqueduct_dagster.healing.heal import RuleDiagnoser

    if healer == RULES:
        return RuleDiagnoser()
    from aqueduct_dagster.healing.agent import LLMDiagnoser

    return LLMDiagnoser.from_config(llm_connection(healer, connection)).for_policy(loaded.manifest.agent)


def heal_scenario(loaded: LoadedScenario, package: FailurePackage, diagnoser: Any) -> HealAttempt:
    """Propose, gate, and feed rejections back, as the heal loop does (without its store)."""
    policy = loaded.manifest.agent
    attempt = HealAttempt()
    feedback: list[str] = []
    rounds = diagnoser.max_rounds + (1 if diagnoser.max_rounds > 1 else 0)
    for _ in range(rounds):
        proposal = diagnoser.propose(package, feedback)
        attempt.input_tokens += proposal.input_tokens or 0
        attempt.output_tokens += proposal.output_tokens or 0
        if proposal.patch is None and proposal.reason.startswith("budget:"):
            attempt.reason = proposal.reason  # the stop is not an attempt of its own
            break
        attempt.attempts += 1
        attempt.patch, attempt.reason, attempt.gate_results = proposal.patch, proposal.reason, []
        attempt.invalid = proposal.patch is None and "no valid PatchSpec" in proposal.reason
        if proposal.patch is None:
            break
        if proposal.patch.deferred is not None:
            if policy.allow_defer:
                break
            feedback.append("defer_to_human is not allowed here: propose a patch")
            continue
        candidate = Candidate(proposal.patch, package, loaded.blueprint_text, policy)
        attempt.gate_results = run_gates(candidate, [GuardrailsGate(), CompileGate(), LineageGate()])
        attempt.patched_text, attempt.patched_manifest = candidate.patched_text, candidate.manifest
        rejected = attempt.rejected_by
        if rejected is None or proposal.final:
            break
        feedback.append(f"The {rejected.gate} gate rejected the patch: {rejected.message}")
    return attempt


# --------------------------------------------------------------------------- grading


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""
    #: Gating checks decide pass/fail; scoring checks are recorded only.
    gating: bool = True


#: Config keys graded as SQL (sqlglot-normalised substring) rather than raw text.
SQL_CONFIG_KEYS = frozenset({"query", "sql", "condition", "expr"})


def normalize_sql(text: str) -> str | None:
    """Canonical Spark SQL text (keyword case, quoting, spacing, identifier case); None if it does not parse."""
    import sqlglot

    try:
        parsed = sqlglot.parse_one(text, read="spark")
    except Exception:  # noqa: BLE001 - sqlglot raises several error types; unparseable is the answer
        return None
    if parsed is None:
        return None
    return parsed.sql(dialect="spark", normalize=True)


def sql_contains(actual: str, expected: str) -> bool:
    """AST-normalised substring; a fragment with backticks or that cannot be normalised compares literally."""
    if _squash(expected) in _squash(actual):
        return True
    if "`" in expected:
        return False  # quoting is the point: normalisation could add or drop it
    normal_actual, normal_expected = normalize_sql(actual), normalize_sql(expected)
    return bool(normal_actual and normal_expected and normal_expected in normal_actual)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def config_contains(actual: Mapping[str, Any], expected: Mapping[str, Any], where: str) -> list[str]:
    """Problems with `actual` against `expected`; empty when it holds.

    SQL keys (`query`, ...) match as a sqlglot-normalised substring, other strings as a raw
    substring, bools and numbers by typed equality, mappings key by key, lists as subsets.
    """
    problems = []
    for key, want in expected.items():
        path = f"{where}.{key}"
        if key not in actual or actual[key] is None:
            problems.append(f"{path} is missing (expected {want!r})")
            continue
        have = actual[key]
        if isinstance(want, dict):
            if isinstance(have, dict):
                problems += config_contains(have, want, path)
            else:
                problems.append(f"{path} is {have!r}, not a mapping")
        elif isinstance(want, bool) or isinstance(want, (int, float)):
            if have != want or isinstance(have, bool) != isinstance(want, bool):
                problems.append(f"{path} is {have!r}, expected {want!r}")
        elif isinstance(want, str):
            if key in SQL_CONFIG_KEYS and isinstance(have, str):
                if not sql_contains(have, want):
                    problems.append(f"{path} does not contain {want!r} (SQL-normalised): {_squash(have)[:200]!r}")
            elif want not in _text_of(have):
                problems.append(f"{path} does not contain {want!r}: {_text_of(have)[:200]!r}")
        elif isinstance(want, list):
            missing = [item for item in want if item not in (have if isinstance(have, list) else [have])]
            if missing:
                problems.append(f"{path} lacks {missing!r}: {have!r}")
        elif have != want:
            problems.append(f"{path} is {have!r}, expected {want!r}")
    return problems


def config_not_contains(actual: Mapping[str, Any], unwanted: Mapping[str, Any], where: str) -> list[str]:
    """Case-insensitive, raw: the text must be gone (a missing key satisfies it)."""
    problems = []
    for key, text in unwanted.items():
        path = f"{where}.{key}"
        if key not in actual or actual[key] is None:
            continue
        if isinstance(text, dict) and isinstance(actual[key], dict):
            problems += config_not_contains(actual[key], text, path)
        elif str(text).lower() in _text_of(actual[key]).lower():
            problems.append(f"{path} still contains {text!r}")
    return problems


@dataclass(frozen=True)
class BlueprintState:
    """The parts of a Blueprint the effect grader reads: raw module configs and engine settings."""

    modules: dict[str, dict[str, Any]]
    engine: dict[str, dict[str, str]]

    @classmethod
    def of(cls, text: str, manifest: Manifest | None) -> BlueprintState:
        data = yaml.safe_load(text) or {}
        modules = {m["id"]: m for m in data.get("modules") or [] if isinstance(m, dict) and "id" in m}
        engine: dict[str, dict[str, str]] = {"spark": {}, "duckdb": {}}
        if manifest is not None:
            engine["spark"] = {str(k): _canonical(v) for k, v in manifest.engine.spark.conf.items()}
            engine["duckdb"] = {
                k: _canonical(v) for k, v in manifest.engine.duckdb.model_dump(exclude_none=True).items()
            }
        return cls(modules, engine)


def _canonical(value: Any) -> str:
    # Every engine setting reaches the session as text: 200 and "200" are the same setting.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def grade_effect(effect: Effect, before: BlueprintState, after: BlueprintState) -> list[str]:
    """Problems with the post-patch Blueprint; empty when the effect holds."""
    problems: list[str] = []
    if effect.module is not None:
        module = after.modules.get(effect.module)
        if module is None:
            problems.append(f"module '{effect.module}' is gone after the patch")
        else:
            config = module.get("config") or {}
            problems += config_contains(config, effect.config_contains or {}, effect.module)
            problems += config_not_contains(config, effect.config_not_contains or {}, effect.module)
    if effect.modules_contain is not None:
        match = effect.modules_contain
        if not any(_module_matches(m, match) for m in after.modules.values()):
            problems.append(f"no module matches {match.model_dump(exclude_none=True)}")
    for engine, settings in (effect.engine_config or {}).items():
        for key, want in settings.items():
            have = after.engine.get(engine, {}).get(key)
            if have != _canonical(want):
                problems.append(f"engine.{engine} {key} is {have!r}, expected {_canonical(want)!r}")
    for engine, keys in (effect.engine_config_changed or {}).items():
        for key in keys:
            old, new = before.engine.get(engine, {}).get(key), after.engine.get(engine, {}).get(key)
            if new is None or new == old:
                problems.append(f"engine.{engine} {key} did not change (before {old!r}, after {new!r})")
    if effect.any_of:
        alternatives = [grade_effect(option, before, after) for option in effect.any_of]
        if all(alternatives):
            problems.append("none of any_of holds: " + " | ".join("; ".join(a) for a in alternatives))
    return problems


def _module_matches(module: Mapping[str, Any], match: ModuleMatch) -> bool:
    if match.type is not None and module.get("type") != match.type:
        return False
    if match.id is not None and module.get("id") != match.id:
        return False
    config = module.get("config") or {}
    where = str(module.get("id"))
    return not config_contains(config, match.config_contains or {}, where) and not config_not_contains(
        config, match.config_not_contains or {}, where
    )


def grade_operations(operations: Sequence[Mapping[str, Any]], patch: PatchSpec,
                     before: BlueprintState, after: BlueprintState) -> list[str]:  # fmt: skip
    """The pre-2.3.0 `expected_patch.ops`: each expected operation's effect (or presence)."""
    problems = []
    for expected in operations:
        op = expected.get("op")
        if op == "set_module_config_key" and {"module_id", "key", "value"} <= set(expected):
            nested: Any = expected["value"]
            for part in reversed(str(expected["key"]).split(".")):
                nested = {part: nested}
            effect = Effect(module=expected["module_id"], config_contains=nested)
            problems += grade_effect(effect, before, after)
        elif op == "set_engine_config" and {"key", "value"} <= set(expected):
            engine = expected.get("engine", "spark")
            effect = Effect(engine_config={engine: {expected["key"]: expected["value"]}})
            problems += grade_effect(effect, before, after)
        else:
            identity = {k: v for k, v in expected.items() if k in ("op", "module_id", "name", "key", "engine")}
            if not any(identity.items() <= actual.model_dump().items() for actual in patch.operations):
                problems.append(f"no operation matches {identity}")
    return problems


def engine_config_status(attempt: HealAttempt, before: BlueprintState) -> tuple[str, str]:
    """Our reading of an engine-config write: pass (allowed and it moves a setting), fail, ..."""
    if attempt.patch is None:
        return "unavailable", "no patch"
    writes = [op for op in attempt.patch.operations if isinstance(op, SetEngineConfig)]
    if not writes:
        return "not_applicable", "the patch writes no engine config"
    rejected = attempt.rejected_by
    if rejected is not None and rejected.gate == "guardrails":
        return "fail", rejected.message
    if attempt.patched_manifest is None or attempt.patched_text is None:
        return "unavailable", "the patched Blueprint did not compile"
    after = BlueprintState.of(attempt.patched_text, attempt.patched_manifest)
    moved = [
        op.key for op in writes
        if before.engine.get(op.engine, {}).get(op.key) != after.engine.get(op.engine, {}).get(op.key)
    ]  # fmt: skip
    if not moved:
        return "fail", "inert: the write changes no effective setting"
    return "pass", f"changes {', '.join(moved)}"


def gate_statuses(attempt: HealAttempt, before: BlueprintState) -> dict[str, tuple[str, str]]:
    statuses: dict[str, tuple[str, str]] = {}
    for name in ("guardrails", "compile", "lineage"):
        result = next((r for r in attempt.gate_results if r.gate == name), None)
        if result is None:
            statuses[name] = ("unavailable", "did not run")
        elif not result.passed:
            statuses[name] = ("fail", result.message)
        elif result.message.endswith("skipped"):
            statuses[name] = ("not_applicable", result.message)
        else:
            statuses[name] = ("warn" if result.escalate else "pass", result.message)
    statuses["engine_config"] = engine_config_status(attempt, before)
    statuses["sandbox"] = ("unavailable", "offline: no Spark session")
    return statuses


def refusal(attempt: HealAttempt, statuses: Mapping[str, tuple[str, str]]) -> str | None:
    """Why the patch did not land: policy, guardrail, invalid or inert (None when it did)."""
    if attempt.invalid:
        return "invalid"
    rejected = attempt.rejected_by
    if rejected is not None:
        if rejected.gate == "guardrails":
            return "policy" if "allowlist" in rejected.message else "guardrail"
        return "invalid"
    if statuses["engine_config"][0] == "fail":
        return "inert"
    return None


def grade(loaded: LoadedScenario, attempt: HealAttempt) -> list[Check]:
    scenario = loaded.scenario
    before = BlueprintState.of(loaded.blueprint_text, loaded.manifest)
    statuses = gate_statuses(attempt, before)
    refused = refusal(attempt, statuses)
    allow_defer = scenario.assertion("allow_defer")
    defer_accepted = attempt.deferred and allow_defer is True
    checks: list[Check] = []

    expected = scenario.expected_patch or ExpectedPatch()
    about_a_patch = any(
        item.get("patch_is_valid") is True or item.get("patch_applies") is True or "patch_refused" in item
        or "gate_status" in item
        for item in scenario.assertions
    )  # fmt: skip
    if expected.states_something:
        if defer_accepted:
            checks.append(Check("effect", True, "deferred to a person (allow_defer: true)"))
        elif not attempt.applied:
            checks.append(Check("effect", False, f"not graded: {_why_not_applied(attempt, refused)}"))
        else:
            assert attempt.patched_text is not None and attempt.patch is not None
            after = BlueprintState.of(attempt.patched_text, attempt.patched_manifest)
            problems = grade_effect(expected.effect, before, after) if expected.effect else []
            problems += grade_operations(expected.operations or [], attempt.patch, before, after)
            checks.append(Check("effect", not problems, "; ".join(problems) or "holds"))
    elif scenario.expected_patch is not None and not about_a_patch:
        # `expected_patch: {}` and no assertion about a patch: the right answer is no patch, or a defer.
        checks.append(Check("no_patch", not attempt.applied,
                            "a patch was staged, none was expected" if attempt.applied else "no patch"))  # fmt: skip

    for item in scenario.assertions:
        [(name, want)] = item.items()
        checks.append(_assertion(name, want, attempt, statuses, refused, defer_accepted))
    return checks


def _why_not_applied(attempt: HealAttempt, refused: str | None) -> str:
    if attempt.patch is None:
        return f"no patch ({attempt.reason})" if attempt.reason else "no patch"
    if attempt.deferred:
        return "the diagnoser deferred to a person"
    rejected = attempt.rejected_by
    if rejected is not None:
        return f"refused ({refused}) by the {rejected.gate} gate: {rejected.message}"
    return f"refused ({refused})"


def _assertion(name: str, want: Any, attempt: HealAttempt, statuses: Mapping[str, tuple[str, str]],
               refused: str | None, defer_accepted: bool) -> Check:  # fmt: skip
    patch = attempt.patch
    if name == "patch_is_valid":
        valid = patch is not None
        return Check(name, valid == want, f"patch is {'valid' if valid else 'missing or invalid'}")
    if name == "patch_applies":
        if defer_accepted:
            return Check(name, True, "deferred (allow_defer: true)")
        detail = "applies" if attempt.applied else _why_not_applied(attempt, refused)
        return Check(name, attempt.applied == want, detail)
    if name == "patch_refused":
        return Check(name, refused == want, f"refusal: {refused or 'none'}")
    if name == "gate_status":
        unknown = ("unknown", f"no such gate (known: {', '.join(statuses)})")
        actual = {gate: statuses.get(gate, unknown) for gate in want}
        wrong = {gate: found for gate, found in actual.items() if found[0] != want[gate]}
        detail = "; ".join(f"{gate}: {status} ({message})" for gate, (status, message) in wrong.items())
        return Check(name, not wrong, detail or "as expected")
    if name == "allow_defer":
        ok = want or not attempt.deferred
        return Check(name, ok, "deferred" if attempt.deferred else "not deferred")
    if name == "root_cause_contains":
        words = [want] if isinstance(want, str) else list(want)
        text = " ".join(filter(None, [patch.root_cause, patch.rationale] if patch else [attempt.reason])).lower()
        hits = [w for w in words if w.lower() in text]
        detail = f"matched {hits}" if hits else f"none of {words} in {text[:160]!r}"
        return Check(name, bool(hits), detail, gating=False)
    if name == "expected_category":
        category = patch.category if patch else None
        return Check(name, category == want, f"category {category!r}", gating=False)
    if name == "max_attempts":
        return Check(name, attempt.attempts <= want, f"{attempt.attempts} attempt(s)", gating=False)
    if name == "min_confidence":
        confidence = patch.confidence if patch else None
        return Check(name, confidence is not None and confidence >= want, f"confidence {confidence}", gating=False)
    return Check(name, False, f"unsupported assertion {name}")


def stop_reason(healer: str, attempt: HealAttempt, checks: Sequence[Check]) -> str:
    failed = [c for c in checks if c.gating and not c.passed]
    if not failed:
        return "ok"
    unsupported = next((c for c in failed if c.detail.startswith("unsupported assertion")), None)
    if unsupported is not None:
        return unsupported.detail
    names = {c.name for c in failed}
    if attempt.invalid:
        return "patch invalid"
    if attempt.patch is None and names & {"effect", "patch_is_valid", "patch_applies"}:
        return "no rule" if healer == RULES else "no patch"
    if attempt.deferred and names & {"effect", "patch_applies", "allow_defer"}:
        return "deferred"
    rejected = attempt.rejected_by
    if rejected is not None and names & {"effect", "patch_applies"}:
        return f"gate rejected: {rejected.gate}"
    if "effect" in names:
        return "wrong effect"
    if "no_patch" in names:
        return "expected no patch"
    return "assertion failed: " + ", ".join(sorted(names))


# --------------------------------------------------------------------------- execution on Spark

#: Failures that only a cluster (or another engine) reproduces, and why.
_CLUSTER_ONLY: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"YARN|Container killed|exceeding memory limits", re.I), "needs a cluster: container memory limits"),
    (re.compile(r"OutOfMemory|_OOM\b|GC overhead", re.I), "needs a cluster: executor memory pressure"),
    (re.compile(r"broadcast", re.I), "needs a cluster: a broadcast larger than the threshold"),
    (re.compile(r"maxResultSize|RESULT_TOO_LARGE", re.I), "needs a cluster: driver result size at scale"),
    (re.compile(r"ExecutorLost|executor lost|small files|object store", re.I),
     "needs a cluster: executor / object-store behaviour"),
)  # fmt: skip


@dataclass
class Execution:
    """The healed pipeline run for real on generated data (`execute=True`)."""

    executed: bool
    passed: bool | None = None
    #: Whether the unpatched Blueprint failed on the same data (the data reproduces the bug).
    reproduced: bool | None = None
    reason: str = ""
    seconds: float = 0.0


def not_executable_reason(loaded: LoadedScenario) -> str | None:
    failure = loaded.scenario.inject_failure
    if failure.engine != "spark":
        return f"the failure is on the {failure.engine} engine; this project runs Spark"
    condition = (failure.structured.error_class or "") if failure.structured else ""
    text = "\n".join([failure.error_message, failure.stack_trace or "", condition])
    if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        return "where the missing file really is cannot be known offline"
    for pattern, reason in _CLUSTER_ONLY:
        if pattern.search(text):
            return reason
    return None


def execute_scenario(loaded: LoadedScenario, attempt: HealAttempt, spark: Any, scratch: Path) -> Execution:
    """Generate input data from the Blueprint, run the unpatched and the healed pipeline."""
    started = time.monotonic()
    if not attempt.applied or attempt.patched_text is None:
        return Execution(False, reason="no applied patch to run")
    reason = not_executable_reason(loaded)
    if reason is not None:
        return Execution(False, reason=f"not executable locally: {reason}")
    data_dir = scratch / "data"
    headers = write_input_data(loaded, data_dir, spark)
    reproduced: bool | None = None
    try:
        _run_text(loaded.blueprint_text, loaded, data_dir, headers, spark, scratch / "original")
        reproduced = False
    except Exception:  # noqa: BLE001 - the unpatched pipeline is expected to fail
        reproduced = True
    try:
        _run_text(attempt.patched_text, loaded, data_dir, headers, spark, scratch / "healed")
    except Exception as error:  # noqa: BLE001 - any failure of the healed run is the result
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = f"the healed pipeline failed: {message[:300]}"
        return Execution(True, False, reproduced, reason, time.monotonic() - started)
    return Execution(True, True, reproduced, "the healed pipeline ran", time.monotonic() - started)


def _run_text(text: str, loaded: LoadedScenario, data_dir: Path, headers: set[str], spark: Any,
              scratch: Path) -> None:  # fmt: skip
    from datetime import datetime

    from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_text
    from aqueduct_dagster.engine.session import run_session
    from aqueduct_dagster.healing.gates import run_on_spark

    runnable = runnable_text(text, data_dir, headers, scratch / "sinks")
    manifest = compile_text(runnable, source_path=loaded.blueprint_path)
    manifest = bind_runtime(manifest, RunInfo(run_id="benchmark", started_at=datetime.now(UTC)))
    session = run_session(spark, manifest.engine.spark.conf)
    run_on_spark(session, manifest, sample_rows=None, scratch=scratch)


def runnable_text(text: str, data_dir: Path, headers: set[str], sinks: Path) -> str:
    """The Blueprint reading the generated data, with every terminal module written somewhere.

    Paths move under `data_dir`; a CSV Ingress that leaves `header` unset reads the generated
    header row; modules nobody consumes get an Egress so that their SQL really runs.
    """
    data = yaml.safe_load(text)
    modules = data.get("modules") or []
    edges = data.setdefault("edges", []) or []
    data["edges"] = edges
    consumed = {e.get("from") for e in edges if isinstance(e, dict)}
    for module in list(modules):
        if not isinstance(module.get("config"), dict):
            module["config"] = {}
        config = module["config"]
        if module.get("type") == "Ingress" and isinstance(config.get("path"), str):
            if module["id"] in headers and config.get("header") is None:
                config["header"] = True
            config["path"] = str(data_dir / config["path"].lstrip("/"))
        if module.get("type") not in ("Egress", "Assert") and module["id"] not in consumed:
            sink = f"benchmark_sink_{module['id']}"
            target = {"format": "parquet", "path": str(sinks / module["id"]), "mode": "overwrite"}
            modules.append({"id": sink, "type": "Egress", "config": target})
            edges.append({"from": module["id"], "to": sink})
    return yaml.safe_dump(data, sort_keys=False)


_FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def write_input_data(loaded: LoadedScenario, data_dir: Path, spark: Any) -> set[str]:
    """Three rows per Ingress, at its path, in the format its file name says; returns CSV Ingress ids."""
    csv_ingresses = set()
    for module_id, columns in ingress_columns(loaded).items():
        config = loaded.manifest.module(module_id).config
        if not isinstance(config.path, str):
            continue
        suffix = Path(config.path).suffix.lower()
        fmt = _FILE_FORMATS.get(suffix) or (config.format or "parquet").lower()
        hints = _hint_types(config.schema_hint)
        rows = [{c: _value(c, hints.get(c.lower()), n) for c in columns} for n in range(1, 4)]
        target = data_dir / config.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            import csv

            csv_ingresses.add(module_id)
            with target.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        elif fmt == "json":
            target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            file = target if suffix else target / "part-00000.parquet"
            file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), file)
        else:  # delta and other Spark formats: let Spark write them
            spark.createDataFrame(rows).write.format(fmt).mode("overwrite").save(str(target))
    return csv_ingresses


def ingress_columns(loaded: LoadedScenario) -> dict[str, list[str]]:
    """Ingress id -> the columns its data needs: the plan Spark printed, else what readers read."""
    from aqueduct_dagster.blueprint import referenced_columns

    failure = loaded.scenario.inject_failure
    plan = plan_schemas("\n".join([failure.error_message, failure.stack_trace or ""]))
    given = failure.input_schemas or {}
    manifest = loaded.manifest
    columns: dict[str, list[str]] = {}
    for module in manifest.modules.values():
        if module.type != "Ingress":
            continue
        if module.id in given:
            columns[module.id] = list(given[module.id])
            continue
        if module.id in plan:
            columns[module.id] = list(plan[module.id])
            continue
        wanted: list[str] = []
        hint = _hint_types(module.config.schema_hint)
        wanted += [c for c in hint if c not in wanted]
        for consumer in manifest.consumers(module.id):
            names = [i.alias for i in consumer.inputs if i.source == module.id]
            if consumer.sql:
                try:
                    used = referenced_columns(consumer.sql)
                except AqueductError:
                    continue
                aliases = set(names) | _table_aliases(consumer.sql, names)
                for qualifier, cols in used.items():
                    if qualifier is None or qualifier in aliases:
                        wanted += sorted(c for c in cols if c not in wanted)
            else:
                for key in ("columns", "cols", "key", "column", "col"):
                    value = getattr(consumer.config, key, None)
                    for name in [value] if isinstance(value, str) else (value or []):
                        if isinstance(name, str) and name not in wanted:
                            wanted.append(name)
        columns[module.id] = wanted or ["id"]
    return columns


def _table_aliases(sql: str, tables: Iterable[str]) -> set[str]:
    import sqlglot
    from sqlglot import exp

    try:
        query = sqlglot.parse_one(sql, read="spark")
    except Exception:  # noqa: BLE001 - no aliases is the safe answer
        return set()
    names = set(tables)
    return {t.alias for t in query.find_all(exp.Table) if t.name in names and t.alias}


def _hint_types(hint: Any) -> dict[str, str]:
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        hint = hint["columns"]
    if isinstance(hint, dict):
        return {str(k).lower(): str(v).lower() for k, v in hint.items()}
    if isinstance(hint, list):
        return {str(e.get("name")).lower(): str(e.get("type")).lower() for e in hint if isinstance(e, dict)}
    return {}


def _value(column: str, hinted: str | None, n: int) -> Any:
    """A plausible value by name; a string/date hint is honoured (numeric hints may be the bug)."""
    name = column.lower()
    if hinted in ("string", "varchar"):
        return f"{name}-{n}"
    if hinted == "date" or "date" in name:
        return f"2024-01-0{n}"
    if name.endswith(("_ts", "_time", "_at")) or "timestamp" in name or hinted == "timestamp":
        return f"2024-01-0{n} 10:00:00"
    if name == "id" or name.endswith("_id"):
        return n
    if any(word in name for word in ("amount", "price", "total", "cost", "revenue")):
        return round(10.25 * n, 2)
    if any(word in name for word in ("count", "qty", "quantity")):
        return n * 2
    return f"{name}_{n}"


# --------------------------------------------------------------------------- results


@dataclass
class ScenarioResult:
    scenario_id: str
    path: str
    healer: str
    passed: bool
    stop_reason: str
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    patch: dict[str, Any] | None = None
    diagnosis: str = ""
    gates: list[dict[str, Any]] = field(default_factory=list)
    execution: Execution | None = None
    #: The engine would call this failure transient: production retries it and never heals it.
    transient: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if c.gating and not c.passed]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = self.tokens
        data["failures"] = self.failures
        return data


@dataclass
class BenchmarkReport:
    run_id: str
    results: list[ScenarioResult]

    def summary(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for result in self.results:
            row = table.setdefault(result.healer, {"passed": 0, "total": 0})
            row["total"] += 1
            row["passed"] += int(result.passed)
        return table

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "summary": self.summary(), "results": [r.to_dict() for r in self.results]}

    def table(self) -> str:
        header = ("scenario", "healer", "pass", "attempts", "tokens", "seconds", "stop reason")
        rows = [
            (r.scenario_id, r.healer, "PASS" if r.passed else "FAIL", str(r.attempts), str(r.tokens),
             f"{r.seconds:.2f}", r.stop_reason + (f" [run: {_execution_cell(r.execution)}]" if r.execution else ""))
            for r in self.results
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + "  " + row[-1]
            for row in [header, *rows]
        ]
        lines.append("")
        lines += [f"{healer}: {s['passed']}/{s['total']} passed" for healer, s in self.summary().items()]
        return "\n".join(lines)


def _execution_cell(execution: Execution) -> str:
    if not execution.executed:
        return execution.reason
    verdict = "ok" if execution.passed else "FAILED"
    return f"{verdict}{'' if execution.reproduced else ', bug not reproduced'}"


def run_scenario(loaded: LoadedScenario, *, healer: str = RULES, connection: AgentConnection | None = None,
                 execute: bool = False, spark: Any = None) -> ScenarioResult:  # fmt: skip
    """Heal and grade one scenario; an unexpected error is a failed result, never a crash."""
    started = time.monotonic()
    result = ScenarioResult(loaded.id, str(loaded.path), healer, False, "")
    try:
        package = build_scenario_package(loaded)
        result.transient = package.error.transient
        attempt = heal_scenario(loaded, package, _diagnoser(healer, connection, loaded))
        checks = grade(loaded, attempt)
    except Exception as error:  # noqa: BLE001 - one broken scenario must not stop the suite
        result.stop_reason = f"error: {type(error).__name__}: {error}"[:300]
        result.seconds = time.monotonic() - started
        return result
    result.attempts = attempt.attempts
    result.input_tokens, result.output_tokens = attempt.input_tokens, attempt.output_tokens
    result.checks = checks
    result.patch = attempt.patch.model_dump(mode="json") if attempt.patch else None
    result.diagnosis = attempt.reason
    result.gates = [{"gate": r.gate, "passed": r.passed, "message": r.message} for r in attempt.gate_results]
    result.stop_reason = stop_reason(healer, attempt, checks)
    result.passed = result.stop_reason == "ok"
    result.seconds = time.monotonic() - started
    if execute:
        scratch = Path(tempfile.mkdtemp(prefix="aq-benchmark-"))
        try:
            result.execution = execute_scenario(loaded, attempt, spark, scratch)
        except Exception as error:  # noqa: BLE001 - data generation is best effort
            result.execution = Execution(False, reason=f"could not run: {type(error).__name__}: {error}"[:300])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if result.execution.executed and not result.execution.passed:
            result.passed, result.stop_reason = False, "run failed"
    return result


def run_benchmark(path: str | Path, *, healer: str = RULES, connection: AgentConnection | None = None,
                  execute: bool = False, spark: Any = None, store: Any = None,
                  progress: Callable[[str], None] | None = None, run_id: str | None = None) -> BenchmarkReport:  # fmt: skip
    """Run every scenario at `path` with one healer: "rules" or an LLM as "provider/name".

    All scenarios are validated before any runs (ScenarioError on bad input). `execute=True`
    needs `spark` (a SparkSession). With a `store`, every result is recorded there.
    """
    if healer != RULES:
        llm_connection(healer, connection)  # a bad provider/name is bad input, before any work
    if execute and spark is None:
        raise ScenarioError("execute=True needs a SparkSession (spark=...)")
    scenarios = [load_scenario(p) for p in discover_scenarios(path)]
    _check_unique_ids(scenarios)
    run_id = run_id or uuid.uuid4().hex[:12]
    results = []
    for index, loaded in enumerate(scenarios, start=1):
        result = run_scenario(loaded, healer=healer, connection=connection, execute=execute, spark=spark)
        results.append(result)
        if progress is not None:
            verdict = "PASS" if result.passed else f"FAIL ({result.stop_reason})"
            progress(f"[{index}/{len(scenarios)}] {healer} {loaded.id}: {verdict} {result.seconds:.2f}s")
        if store is not None:
            store.record_benchmark(
                run_id=run_id, scenario_id=result.scenario_id, healer=healer, passed=result.passed,
                attempts=result.attempts, input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                duration_ms=int(result.seconds * 1000), stop_reason=result.stop_reason, details=result.to_dict(),
            )  # fmt: skip
    return BenchmarkReport(run_id, results)


def _check_unique_ids(scenarios: Sequence[LoadedScenario]) -> None:
    seen: dict[str, Path] = {}
    for loaded in scenarios:
        if loaded.id in seen:
            raise ScenarioError(
                f"id: '{loaded.id}' is also the id of {seen[loaded.id]}",
                location=SourceLocation(str(loaded.path)),
                hint="scenario ids name benchmark rows; make them unique",
            )
        seen[loaded.id] = loaded.path
