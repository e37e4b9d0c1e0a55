"""Healing one scenario: the diagnoser and the non-Spark gates, through the one heal loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.config import AgentConnection
from aqueduct_dagster.healing.agent import LLMDiagnoser
from aqueduct_dagster.healing.benchmark.scenario import RULES, LoadedScenario, ScenarioError
from aqueduct_dagster.healing.diagnoser import Diagnoser, StopReason
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.gates import CompileGate, GateResult, GuardrailsGate, LineageGate
from aqueduct_dagster.healing.heal import RuleDiagnoser, diagnose_and_gate
from aqueduct_dagster.healing.patch import PatchSpec


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


def diagnoser_for(healer: str, connection: AgentConnection | None) -> Diagnoser:
    """The offline rules ("rules"), or an LLM named "provider/name" on top of `connection`."""
    if healer == RULES:
        return RuleDiagnoser()
    return LLMDiagnoser.from_config(llm_connection(healer, connection))


def heal_scenario(loaded: LoadedScenario, package: FailurePackage, diagnoser: Diagnoser) -> HealAttempt:
    """The heal loop (`healing.heal.diagnose_and_gate`) with the non-Spark gates and no store."""
    diagnosis = diagnose_and_gate(package, loaded.blueprint_text, loaded.manifest.agent, [diagnoser],
                                  lambda: [GuardrailsGate(), CompileGate(), LineageGate()])  # fmt: skip
    attempt = HealAttempt()
    for turn in diagnosis.turns:
        proposal = turn.proposal
        attempt.input_tokens += proposal.input_tokens or 0
        attempt.output_tokens += proposal.output_tokens or 0
        if proposal.stop is StopReason.BUDGET:
            attempt.reason = proposal.reason  # the stop is not an attempt of its own
            continue
        attempt.attempts += 1
        attempt.patch, attempt.reason, attempt.gate_results = proposal.patch, proposal.reason, list(turn.gate_results)
        attempt.invalid = proposal.stop is StopReason.INVALID_ANSWER
        candidate = turn.candidate
        attempt.patched_text = candidate.patched_text if candidate else None
        attempt.patched_manifest = candidate.manifest if candidate else None
    return attempt
