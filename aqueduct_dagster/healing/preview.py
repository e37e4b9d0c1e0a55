"""Judge a patch without staging or applying it: `aqueduct patch preview`, and apply's re-check.

`static_verdict` runs the gates that need no Spark (guardrails, compile, effect + SQL policy)
against the Blueprint file as it is now; `PatchQueue.apply` calls it before it writes, so a
staged patch that was edited by hand, or a Blueprint that changed since, is judged again.
`preview_patch` reads a PatchSpec file (aqueduct-core's schema) and can add the sandbox.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.errors import AqueductError, ConfigError
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    EffectGate,
    Gate,
    GateResult,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
)
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.redaction import Redactor
from aqueduct_dagster.settings import Settings, current_settings

#: PatchSpec's own top-level keys; anything else the peer's schema allows goes to `misc`.
_TOP_LEVEL = frozenset(PatchSpec.model_fields) | {"ops"}


class PreviewInputError(AqueductError):
    """The patch file or the Blueprint cannot be read (exit code 2 of `patch preview`)."""


@dataclass
class PreviewReport:
    patch_id: str | None
    blueprint_path: str
    results: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def rejected_by(self) -> GateResult | None:
        return next((r for r in self.results if not r.passed), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "patch_id": self.patch_id,
            "blueprint": self.blueprint_path,
            "passed": self.passed,
            "gates": [
                {"gate": r.gate, "passed": r.passed, "message": r.message, "escalate": r.escalate}
                for r in self.results
            ],
        }


def static_verdict(patch: PatchSpec, blueprint_path: Path, policy: Agent | None = None, *,
                   config: Any = None) -> list[GateResult]:  # fmt: skip
    """The non-Spark gates (guardrails, compile, effect + SQL) on the file as it is now.

    `policy` defaults to the Blueprint's own `agent:` block; `config` (an AqueductConfig)
    supplies the operator's guardrails, else aqueduct.yml is read. Never raises for a bad
    patch or an unreadable Blueprint: the answer is then a rejected GateResult.
    """
    gates: list[Gate] = [GuardrailsGate(), CompileGate(), EffectGate()]
    return _verdict(patch, Path(blueprint_path), policy, config, gates)


def _verdict(patch: PatchSpec, blueprint_path: Path, policy: Agent | None, config: Any,
             gates: Sequence[Gate]) -> list[GateResult]:  # fmt: skip
    try:
        text = blueprint_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return [GateResult("compile", False, f"cannot read the Blueprint {blueprint_path}: {error}")]
    try:
        operator = _operator_guardrails(config)
    except AqueductError as error:
        return [GateResult("effect", False, f"the operator guardrails cannot be read: {error}")]
    if policy is None:
        policy = _blueprint_policy(text, blueprint_path)
    candidate = Candidate(patch, None, text, policy, blueprint_path=blueprint_path,
                          operator_guardrails=operator)  # fmt: skip
    redact = _message_redactor(text)
    # A verdict quotes resolved values (a JDBC listing, a compile error): no secret in it.
    return [GateResult(r.gate, r.passed, redact(r.message), r.escalate) for r in run_gates(candidate, gates).results]


def _message_redactor(blueprint_text: str) -> Callable[[str], str]:
    try:
        redactor = Redactor.for_blueprint(blueprint_text)
    except ConfigError as error:
        reason = error.message
        return lambda message: f"(message withheld: it cannot be redacted safely: {reason})" if message else message
    return redactor.text


def _operator_guardrails(config: Any) -> Any:
    # No config given: the process's aqueduct.yml, so a forgotten argument never lifts the
    # operator's limits.
    return (config if config is not None else current_settings().config).agent.guardrails


def _blueprint_policy(text: str, path: Path) -> Agent:
    """The Blueprint's own agent policy (defaults when it does not compile: compile rejects)."""
    try:
        return compile_text(text, source_path=path).agent
    except AqueductError:
        return Agent()


# --------------------------------------------------------------------------- preview


def load_patch_file(patch_file: Path) -> PatchSpec:
    """A PatchSpec from a JSON file in aqueduct-core's schema; PreviewInputError names the field."""
    try:
        size = Path(patch_file).stat().st_size
        if size > MAX_PATCH_BYTES:
            raise PreviewInputError(f"{patch_file}: the patch file is {size:,} bytes, more than "
                                    f"{MAX_PATCH_BYTES:,}: a PatchSpec is a small edit")  # fmt: skip
        raw = Path(patch_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PreviewInputError(f"cannot read the patch file {patch_file}: {error}") from None
    data = _strict_json(raw, patch_file)
    if not isinstance(data, dict):
        raise PreviewInputError(f"{patch_file}: a PatchSpec is a JSON object, not {type(data).__name__}")
    # The peer's schema keeps unknown top-level keys (in `misc`); ours refuses them elsewhere.
    extra = {k: data.pop(k) for k in list(data) if k not in _TOP_LEVEL}
    if extra:
        misc = data.get("misc") if isinstance(data.get("misc"), dict) else {}
        data["misc"] = {**misc, **extra}
    refusals = _peer_only_operations(data, patch_file)
    if refusals:
        # Valid in the peer's schema, never applied here: the rest must still be a PatchSpec.
        patch = _validated(_with_placeholders(data), patch_file)
        raise UnsupportedOperation(patch.patch_id, refusals[0])
    return _validated(data, patch_file)


class UnsupportedOperation(AqueductError):
    """A valid aqueduct-core operation this project never applies from a patch (a gate rejects it)."""

    def __init__(self, patch_id: str, message: str) -> None:
        super().__init__(message)
        self.patch_id = patch_id


#: aqueduct-core operations with their required fields, and why a patch may not carry them.
_PEER_ONLY: dict[str, tuple[dict[str, type], str]] = {
    "add_arcade_ref": ({"module": dict}, "a patch may not add Arcade references (the compiler would read "
                                         "the file it names): a person must"),
    "declare_dependency": ({"requirement": str}, "a patch may not declare runtime dependencies (code to "
                                                 "install and load): a person must"),
}  # fmt: skip
_PEER_ONLY_KEYS = {"add_arcade_ref": {"op", "module", "edges_to_add", "edges_to_remove"},
                   "declare_dependency": {"op", "requirement"}}  # fmt: skip


def _operations_key(data: dict[str, Any]) -> str:
    return "operations" if "operations" in data else "ops"


def _peer_only_operations(data: dict[str, Any], patch_file: Path) -> list[str]:
    operations = data.get(_operations_key(data))
    if not isinstance(operations, list):
        return []
    refusals = []
    for index, operation in enumerate(operations):
        name = operation.get("op") if isinstance(operation, dict) else None
        if name not in _PEER_ONLY:
            continue
        required, why = _PEER_ONLY[name]
        for key, kind in required.items():
            if not isinstance(operation.get(key), kind):
                raise PreviewInputError(f"{patch_file}: field 'operations.{index}.{key}': {name} needs "
                                        f"`{key}` ({kind.__name__})")  # fmt: skip
        unknown = sorted(set(operation) - _PEER_ONLY_KEYS[name])
        if unknown:
            raise PreviewInputError(f"{patch_file}: field 'operations.{index}.{unknown[0]}': Extra inputs are not permitted")
        refusals.append(f"operation {index + 1} ({name}): {why}")
    return refusals


def _with_placeholders(data: dict[str, Any]) -> dict[str, Any]:
    key = _operations_key(data)
    placeholder = {"op": "defer_to_human", "diagnosis": "placeholder", "defer_reason": "other"}
    operations = [placeholder if isinstance(op, dict) and op.get("op") in _PEER_ONLY else op for op in data[key]]
    return {**data, key: operations}


def _validated(data: dict[str, Any], patch_file: Path) -> PatchSpec:
    try:
        return PatchSpec.model_validate(data)
    except RecursionError:
        raise PreviewInputError(f"{patch_file}: the PatchSpec is nested too deeply") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PreviewInputError(
            f"{patch_file}: field '{where}': {first['msg']}",
            hint=f"{error.error_count()} problem(s); the file must be a PatchSpec "
            "(patch_id, rationale, operations)",
        ) from None


#: A PatchSpec is an edit, not a data set: larger files are refused before parsing.
MAX_PATCH_BYTES = 1_048_576
#: JSON nesting a PatchSpec may use (a module definition is a few levels deep).
MAX_PATCH_DEPTH = 32


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key: what a reviewer reads and what is applied could differ.
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _strict_json(raw: str, patch_file: Path) -> Any:
    """Strict JSON: no duplicate keys, NaN/Infinity, giant numbers, lone surrogates, deep nesting."""
    where = f"{patch_file}"
    try:
        data = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKey as error:
        raise PreviewInputError(f"{where}: the key '{error}' appears twice in one object; "
                                "write each key once") from None  # fmt: skip
    except json.JSONDecodeError as error:
        raise PreviewInputError(
            f"{where} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise PreviewInputError(f"{where}: the JSON is nested too deeply") from None
    except ValueError as error:  # NaN/Infinity, an integer too long to convert
        raise PreviewInputError(f"{where}: {str(error)[:200]}") from None
    problem = _bad_value(data, 0)
    if problem:
        raise PreviewInputError(f"{where}: {problem}")
    return data


def _bad_value(value: Any, depth: int) -> str | None:
    if depth > MAX_PATCH_DEPTH:
        return f"the JSON is nested more than {MAX_PATCH_DEPTH} levels deep"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "a string holds a lone surrogate (half of a UTF-16 pair), which is not text"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "a number is not finite"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _bad_value(key, depth + 1) or _bad_value(item, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _bad_value(item, depth + 1)
            if problem:
                return problem
    return None


def preview_patch(patch_file: Path, blueprint_path: Path, *, sandbox: bool,
                  spark_factory: Callable[[], Any] | None = None,
                  settings: Settings | None = None) -> PreviewReport:  # fmt: skip
    """Every gate's verdict on the patch in `patch_file`; nothing is staged or written.

    Raises PreviewInputError for an unreadable or invalid patch file or a missing Blueprint.
    With `sandbox`, the patched pipeline also replays on sampled input (Spark; outputs go to
    a scratch folder that is removed). `settings` (default: the process's) give the operator's
    guardrails and the sandbox's Spark.
    """
    settings = settings or current_settings()
    blueprint_path = Path(blueprint_path)
    try:
        patch = load_patch_file(Path(patch_file))
    except UnsupportedOperation as refusal:
        _require_file(blueprint_path)
        return PreviewReport(refusal.patch_id, str(blueprint_path), [GateResult("guardrails", False, refusal.message)])
    _require_file(blueprint_path)
    gates: list[Gate] = [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate()]
    if sandbox:
        gates.append(SandboxGate(spark_factory or _default_spark_factory(settings)))
    results = _verdict(patch, blueprint_path, None, settings.config, gates)
    return PreviewReport(patch.patch_id, str(blueprint_path), results)


def _require_file(blueprint_path: Path) -> None:
    if not blueprint_path.is_file():
        raise PreviewInputError(f"Blueprint file not found: {blueprint_path}")


def _default_spark_factory(settings: Settings) -> Callable[[], Any]:
    """A fresh run session on the operator's Spark (Settings), made only when needed."""

    def factory() -> Any:
        from aqueduct_dagster.engine.session import run_session

        return run_session(settings.base_session())

    return factory
