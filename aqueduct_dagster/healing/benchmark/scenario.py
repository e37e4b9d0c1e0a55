"""The scenario format (`*.aqscenario.yml`): reading, validating and compiling one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.errors import AqueductError, SourceLocation
from aqueduct_dagster.healing.patch import load_document

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
