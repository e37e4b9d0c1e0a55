"""One heal: policy checks, diagnosers in order, gates, then the approval mode decides.

    outcome = Healer(settings).heal(package, blueprint_path, policy)

Diagnosers are tried cheapest first (the offline rules, then an LLM agent when configured).
A candidate that a gate rejects goes back to its diagnoser as feedback, so a conversational
diagnoser can correct itself; every turn is stored with the gate that rejected it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.healing.arcade_files import PatchTarget, route_patch
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    ContractGate,
    EffectGate,
    FullRunGate,
    Gate,
    GateResult,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
)
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.healing.patch_queue import HealError, PatchQueue, PendingPatch
from aqueduct_dagster.healing.revisions import Revision, text_digest, unified_diff
from aqueduct_dagster.healing.rules import diagnose_with_rules
from aqueduct_dagster.stores import HealTurn, Store

HealStatus = Literal[
    "disabled", "skipped", "rate_limited", "suppressed", "no_fix", "deferred", "staged",
    "escalated", "branch", "applied", "rejected",
]  # fmt: skip


@dataclass
class Proposal:
    patch: PatchSpec | None
    reason: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    prompt_version: str | None = None
    #: The diagnoser gave up (budget, repeated error): no more feedback rounds.
    final: bool = False


class Diagnoser(Protocol):
    name: str
    max_rounds: int

    def propose(self, package: FailurePackage, feedback: Sequence[str]) -> Proposal: ...


class RuleDiagnoser:
    """The offline rule engine as a diagnoser: deterministic, so one round."""

    name = "rules"
    max_rounds = 1

    def propose(self, package: FailurePackage, feedback: Sequence[str]) -> Proposal:
        diagnosis = diagnose_with_rules(package)
        return Proposal(patch=diagnosis.patch, reason=diagnosis.reason, final=True)


@dataclass
class HealSettings:
    store: Store
    patches_dir: Path
    revisions_dir: Path
    spark_factory: Callable[[], Any] | None = None
    diagnosers: Sequence[Diagnoser] = field(default_factory=lambda: [RuleDiagnoser()])
    sample_rows: int = 1000
    #: The operator's limit (aqueduct.yml): a ceiling a Blueprint's own limit can only lower.
    max_heals_per_hour: int | None = 20
    #: The operator's guardrails (aqueduct.yml `agent.guardrails`), resolved by the caller with
    #: the rest of its settings; None makes the effect gate read aqueduct.yml itself.
    operator_guardrails: Any = None
    git_remote_token_env: str = "GITHUB_TOKEN"


@dataclass
class HealOutcome:
    heal_id: str
    status: HealStatus
    message: str
    patch: PatchSpec | None = None
    pending_path: Path | None = None
    revision: Revision | None = None
    gate_results: list[GateResult] = field(default_factory=list)
    diff: str = ""
    branch: str | None = None
    #: The file the patch edits, with the patch as written for it (set once the gates pass).
    target: PatchTarget | None = None
    #: The patch as the gates judged it (Manifest ids), kept once `patch` becomes the target's.
    root_patch: PatchSpec | None = None


def _labels(package: FailurePackage) -> set[str]:
    labels = {package.error.condition or "", (package.error.condition or "").split(".")[0]}
    labels.add(package.error.exception_class.rsplit(".", 1)[-1])
    labels.update(str(r.get("error_type")) for r in package.failed_rules if r.get("error_type"))
    return {label for label in labels if label}


class Healer:
    def __init__(self, settings: HealSettings) -> None:
        self.settings = settings

    # ------------------------------------------------------------------ the loop

    def heal(self, package: FailurePackage, blueprint_path: str | Path, policy: Agent) -> HealOutcome:
        store = self.settings.store
        heal_id = package.heal_id
        if policy.approval == "disabled":
            return HealOutcome(heal_id, "disabled", "healing is disabled for this blueprint (agent.approval)")
        labels = _labels(package)
        never = set(policy.guardrails.never_heal_errors) & labels
        if never:
            return HealOutcome(heal_id, "skipped", f"never healed: {', '.join(sorted(never))} (never_heal_errors)")
        only = policy.guardrails.heal_on_errors
        if only and not set(only) & labels:
            return HealOutcome(heal_id, "skipped", f"not in heal_on_errors ({', '.join(only)})")
        pending = store.pending_patch_for(package.blueprint_id, package.signature)
        if pending:
            return HealOutcome(
                heal_id, "suppressed", f"patch {pending} for this failure is already waiting for review"
            )
        # The operator's limit (aqueduct.yml) is a ceiling: a Blueprint may only lower it.
        limits = [n for n in (self.settings.max_heals_per_hour, policy.max_heal_attempts_per_hour) if n is not None]
        limit = min(limits) if limits else None
        if not store.try_start_heal(heal_id, package.blueprint_id, package.run_id, package.signature,
                                    limit=limit, window=timedelta(hours=1)):  # fmt: skip
            return HealOutcome(heal_id, "rate_limited", f"{limit} heals in the last hour for '{package.blueprint_id}'")

        store.record_failure(heal_id, package.blueprint_id, package.run_id, package.failed_module,
                             package.signature, package.model_dump(mode="json"))  # fmt: skip
        blueprint_text = Path(blueprint_path).read_text(encoding="utf-8")
        try:
            outcome = self._diagnose_and_gate(package, blueprint_text, policy)
            if outcome.status == "staged":
                outcome = self._approve(outcome, package, Path(blueprint_path), blueprint_text, policy)
            elif outcome.status == "escalated":
                # Low confidence or a policy flag: a person decides, whatever the mode.
                target = self._edit_target(outcome)
                outcome.pending_path = self.stage(outcome, package, target.path, target.text)
        except BaseException as error:
            reason = package.redactor.text(f"{type(error).__name__}: {error}")
            store.finish_heal(heal_id, "error", stop_reason=reason[:500])
            raise
        # The outcome leaves the process (store, heal run output): secrets never do. Data values
        # were removed where the structured error was at hand (the Spark gates).
        outcome.message = package.redactor.text(outcome.message)
        store.finish_heal(
            heal_id, outcome.status, patch_id=outcome.patch.patch_id if outcome.patch else None,
            stop_reason=outcome.message[:500],
        )  # fmt: skip
        return outcome

    def _gates(self, blueprint_id: str) -> list[Gate]:
        from aqueduct_dagster.stores.depot import Depot

        gates: list[Gate] = [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate()]
        if self.settings.spark_factory is not None:
            depot = Depot(self.settings.store, blueprint_id)
            gates.append(SandboxGate(self.settings.spark_factory, sample_rows=self.settings.sample_rows,
                                     depot_lookup=depot.get))  # fmt: skip
            gates.append(ContractGate())
        return gates

    def _diagnose_and_gate(self, package: FailurePackage, blueprint_text: str, policy: Agent) -> HealOutcome:
        store, turn_number, reasons = self.settings.store, 0, []
        # Every text a turn stores or feeds back passes the package's Redactor: gate messages
        # can quote what a sandbox run read (an env var, a data value).
        redact = package.redactor.text
        for diagnoser in self.settings.diagnosers:
            feedback: list[str] = []
            if hasattr(diagnoser, "for_policy"):
                diagnoser.for_policy(policy)
            # One extra round lets a conversational diagnoser report its budget stop.
            for _ in range(diagnoser.max_rounds + (1 if diagnoser.max_rounds > 1 else 0)):
                turn_number += 1
                started = time.monotonic()
                proposal = diagnoser.propose(package, feedback)
                latency = int((time.monotonic() - started) * 1000)
                turn = HealTurn(
                    heal_id=package.heal_id, turn=turn_number, diagnoser=diagnoser.name,
                    signature=package.signature, prompt_version=proposal.prompt_version,
                    patch_json=redact(proposal.patch.model_dump_json()) if proposal.patch else None,
                    message=redact(proposal.reason)[:2000], input_tokens=proposal.input_tokens,
                    output_tokens=proposal.output_tokens, latency_ms=latency,
                )  # fmt: skip
                if proposal.patch is None:
                    store.record_turn(turn)
                    reasons.append(redact(f"{diagnoser.name}: {proposal.reason}"))
                    break
                if proposal.patch.deferred is not None:
                    store.record_turn(turn)
                    if not policy.allow_defer:
                        feedback.append("defer_to_human is not allowed here: propose a patch")
                        continue
                    return HealOutcome(package.heal_id, "deferred", proposal.patch.deferred.diagnosis, proposal.patch)
                candidate = Candidate(proposal.patch, package, blueprint_text, policy,
                                      operator_guardrails=self.settings.operator_guardrails)
                results = run_gates(candidate, self._gates(package.blueprint_id))
                rejected = next((r for r in results if not r.passed), None)
                turn.rejected_by = rejected.gate if rejected else None
                store.record_turn(turn)
                if rejected is None:
                    target = candidate.target or route_patch(package.blueprint_path, blueprint_text, proposal.patch)
                    patched = candidate.patched_text or apply_patch_text(target.text, target.patch)
                    outcome = HealOutcome(
                        package.heal_id, "staged", proposal.reason, proposal.patch, gate_results=results,
                        diff=unified_diff(target.text, patched, target.path.name), target=target,
                    )  # fmt: skip
                    if candidate.escalate_reasons:
                        outcome.status, outcome.message = "escalated", "; ".join(candidate.escalate_reasons)
                    return outcome
                feedback.append(redact(f"The {rejected.gate} gate rejected the patch: {rejected.message}"))
                reasons.append(redact(f"{diagnoser.name}: rejected by {rejected.gate}: {rejected.message}"))
                if proposal.final:
                    break
        return HealOutcome(package.heal_id, "no_fix", "; ".join(reasons) or "no diagnoser configured")

    # ------------------------------------------------------------------ approval modes

    def _approve(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path,
                 blueprint_text: str, policy: Agent) -> HealOutcome:  # fmt: skip
        assert outcome.patch is not None
        mode = policy.approval
        if mode == "auto" and self.settings.spark_factory is not None:
            candidate = Candidate(outcome.patch, package, blueprint_text, policy,
                                  operator_guardrails=self.settings.operator_guardrails)
            results = run_gates(candidate, [CompileGate(), EffectGate(), FullRunGate(self.settings.spark_factory)])
            outcome.gate_results += results
            if all(r.passed for r in results):
                target = candidate.target or self._edit_target(outcome)
                patched = candidate.patched_text or apply_patch_text(target.text, target.patch)
                # The same locked, journaled path as a reviewer's apply; refused if the file changed meanwhile.
                try:
                    revision = self._queue().apply_change(
                        target.path, patched, target.patch, blueprint_id=package.blueprint_id,
                        read_text=target.text, signature=package.signature, heal_id=package.heal_id,
                    )  # fmt: skip
                except HealError as error:
                    outcome.status, outcome.message = "no_fix", f"auto-apply refused: {error.message}"
                    return outcome
                outcome.status, outcome.revision = "applied", revision
                outcome.message = f"applied as {revision.summary}; outputs re-published"
                return outcome
            outcome.message = f"auto-apply refused, staged for review: {results[-1].message}"
            mode = "human"
        target = self._edit_target(outcome)
        if mode == "ci":
            return self._open_branch(outcome, package, target.path, target.text)
        outcome.pending_path = self.stage(outcome, package, target.path, target.text)
        if outcome.status == "staged":
            outcome.message = f"patch {outcome.patch.patch_id} staged for review: {outcome.message}"
        return outcome

    @staticmethod
    def _edit_target(outcome: HealOutcome) -> PatchTarget:
        """The file to edit; from here on the outcome's patch is the one written for it."""
        assert outcome.target is not None, "set when the gates passed"
        outcome.root_patch = outcome.root_patch or outcome.patch
        outcome.patch = outcome.target.patch
        return outcome.target

    def _queue(self) -> PatchQueue:
        return PatchQueue(self.settings.patches_dir, self.settings.revisions_dir, self.settings.store)

    def stage(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path, blueprint_text: str) -> Path:
        """Stage for review; the store keeps the record's digest, checked when it is applied."""
        assert outcome.patch is not None
        record = {
            "patch": outcome.patch.model_dump(mode="json"),
            "blueprint_id": package.blueprint_id,
            "blueprint_path": str(blueprint_path),
            # The Blueprint compiled and run: differs from blueprint_path for an Arcade's file.
            "root_path": str(outcome.target.root_path if outcome.target else blueprint_path),
            "blueprint_sha256": text_digest(blueprint_text),
            # Re-gated against the root Blueprint at apply time (an Arcade's file does not compile alone).
            "root_patch": (outcome.root_patch or outcome.patch).model_dump(mode="json"),
            "heal_id": package.heal_id,
            "run_id": package.run_id,
            "signature": package.signature,
            "failed_module": package.failed_module,
            "error": package.error.model_dump(),
            "gates": [package.redactor.data(vars(r)) for r in outcome.gate_results],
            "escalation": package.redactor.text(outcome.message) if outcome.status == "escalated" else None,
            "diff": outcome.diff,
        }
        return self._queue().stage(record, signature=package.signature, heal_id=package.heal_id)

    def _open_branch(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path,
                     blueprint_text: str) -> HealOutcome:  # fmt: skip
        from aqueduct_dagster.healing.ci import open_patch_branch

        assert outcome.patch is not None
        patched = apply_patch_text(blueprint_text, outcome.patch)
        branch, description = open_patch_branch(
            blueprint_path, patched, outcome.patch, package, diff=outcome.diff,
            pr_dir=self.settings.patches_dir / "pr", token=os.environ.get(self.settings.git_remote_token_env),
        )  # fmt: skip
        self.settings.store.index_patch(outcome.patch.patch_id, package.blueprint_id, package.signature,
                                        "branch", str(description), package.heal_id)  # fmt: skip
        outcome.status, outcome.branch = "branch", branch
        outcome.message = f"patch {outcome.patch.patch_id} committed on branch {branch}; PR description {description}"
        return outcome


# --------------------------------------------------------------------------- pending patches
# PatchQueue and PendingPatch live in patch_queue.py; imported above so existing imports keep working.

__all__ = ["HealError", "Healer", "HealOutcome", "HealSettings", "PatchQueue", "PendingPatch", "Proposal",
           "RuleDiagnoser"]
