"""Judge a patch without staging or applying it: `aqueduct patch preview`, and apply's re-check.

`static_verdict` runs the gates that need no Spark (guardrails, compile, effect + SQL policy)
against the Blueprint file as it is now; `PatchQueue.apply` calls it before it writes, so a
staged patch that was edited by hand, or a Blueprint that changed since, is judged again.
`preview_patch` reads a PatchSpec file (aqueduct-core's schema) and can add the sandbox.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    EffectGate,
    Gate,
    GateResult,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
)
from aqueduct_dagster.healing.patch import PatchSpec

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
    results: list[GateResult] = []
    for gate in gates:
        try:
            result = gate.check(candidate)
        except Exception as error:  # noqa: BLE001 - a gate that cannot judge rejects
            result = GateResult(gate.name, False, f"the {gate.name} gate could not judge the patch: "
                                f"{type(error).__name__}: {error}")  # fmt: skip
        results.append(result)
        if not result.passed:
            break
    return results


def _operator_guardrails(config: Any) -> Any:
    if config is None:
        from aqueduct_dagster.config import load_config

        config = load_config()
    return config.agent.guardrails


def _blueprint_policy(text: str, path: Path) -> Agent:
    """The Blueprint's own agent policy (defaults when it does not compile: compile rejects)."""
    from aqueduct_dagster.blueprint import compile_text

    try:
        return compile_text(text, source_path=path).agent
    except AqueductError:
        return Agent()


# --------------------------------------------------------------------------- preview


def load_patch_file(patch_file: Path) -> PatchSpec:
    """A PatchSpec from a JSON file in aqueduct-core's schema; PreviewInputError names the field."""
    try:
        raw = Path(patch_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PreviewInputError(f"cannot read the patch file {patch_file}: {error}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise PreviewInputError(
            f"{patch_file} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise PreviewInputError(f"{patch_file}: the JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise PreviewInputError(f"{patch_file}: a PatchSpec is a JSON object, not {type(data).__name__}")
    # The peer's schema keeps unknown top-level keys (in `misc`); ours refuses them elsewhere.
    extra = {k: data.pop(k) for k in list(data) if k not in _TOP_LEVEL}
    if extra:
        misc = data.get("misc") if isinstance(data.get("misc"), dict) else {}
        data["misc"] = {**misc, **extra}
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


def preview_patch(patch_file: Path, blueprint_path: Path, *, sandbox: bool,
                  spark_factory: Callable[[], Any] | None = None, config: Any = None) -> PreviewReport:  # fmt: skip
    """Every gate's verdict on the patch in `patch_file`; nothing is staged or written.

    Raises PreviewInputError for an unreadable or invalid patch file or a missing Blueprint.
    With `sandbox`, the patched pipeline also replays on sampled input (Spark; outputs go to
    a scratch folder that is removed).
    """
    patch = load_patch_file(Path(patch_file))
    blueprint_path = Path(blueprint_path)
    if not blueprint_path.is_file():
        raise PreviewInputError(f"Blueprint file not found: {blueprint_path}")
    gates: list[Gate] = [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate()]
    if sandbox:
        gates.append(SandboxGate(spark_factory or _default_spark_factory(config)))
    results = _verdict(patch, blueprint_path, None, config, gates)
    return PreviewReport(patch.patch_id, str(blueprint_path), results)


def _default_spark_factory(config: Any) -> Callable[[], Any]:
    """A fresh run session on the operator's Spark (aqueduct.yml), made only when needed."""

    def factory() -> Any:
        from aqueduct_dagster.config import load_config
        from aqueduct_dagster.engine.session import create_base_session, run_session

        settings = config if config is not None else load_config()
        return run_session(create_base_session(master=settings.engine.spark.master_url,
                                               state_dir=settings.state_path))  # fmt: skip

    return factory
