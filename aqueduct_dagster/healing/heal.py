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
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.healing.arcade_files import PatchTarget, route_patch
from aqueduct_dagster.healing.diagnoser import Diagnoser, Proposal, StopReason
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
    escalations,
    run_gates,
)
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.healing.patch_queue import HealError, PatchQueue, PendingPatch
from aqueduct_dagster.healing.revisions import Revision, text_digest, unified_diff
from aqueduct_dagster.healing.rules import diagnose_with_rules
from aqueduct_dagster.stores import HealTurn, Store
from aqueduct_dagster.stores.depot import Depot

HealStatus = Literal[
    "disabled", "skipped", "rate_limited", "suppressed", "no_fix", "deferred", "staged",
    "escalated", "branch", "applied", "rejected",
]  # fmt: skip


class RuleDiagnoser:
    """The offline rule engine as a diagnoser: deterministic, so one round."""

    name = "rules"
    max_rounds = 1

    def for_policy(self, policy: Agent) -> RuleDiagnoser:
        return self  # the rules read what they need from the package

    def propose(self, package: FailurePackage, feedback: Sequence[str]) -> Proposal:
        diagnosis = diagnose_with_rules(package)
        stop = StopReason.NO_FIX if diagnosis.patch is None else None
        return Proposal(patch=diagnosis.patch, reason=diagnosis.reason, final=True, stop=stop)


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


@dataclass(frozen=True)
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


# --------------------------------------------------------------------------- the one heal loop


@dataclass(frozen=True)
class Turn:
    """One proposal of one diagnoser, and what the gates made of it."""

    diagnoser: str
    proposal: Proposal
    latency_ms: int
    gate_results: list[GateResult] = field(default_factory=list)
    #: The candidate as the gates left it (its target, patched text and Manifest once the
    #: compile gate passed); None without a patch.
    candidate: Candidate | None = None

    @property
    def rejected_by(self) -> GateResult | None:
        return next((r for r in self.gate_results if not r.passed), None)


@dataclass(frozen=True)
class Diagnosis:
    """Where the loop stopped: a patch every gate passed (staged, or escalated to a person),
    a deferral, or no fix; with every turn taken."""

    status: Literal["staged", "escalated", "deferred", "no_fix"]
    message: str
    turns: list[Turn]
    patch: PatchSpec | None = None


def diagnose_and_gate(package: FailurePackage, blueprint_text: str, policy: Agent, diagnosers: Sequence[Diagnoser],
                      gates: Callable[[], Sequence[Gate]], *, operator_guardrails: Any = None,
                      on_turn: Callable[[Turn], None] | None = None) -> Diagnosis:  # fmt: skip
    """Ask each diagnoser in turn; gate each patch; feed a rejection back as a correction.

    The heal (`Healer`) and the benchmark both run this loop; `on_turn` sees every turn once
    its gates have run (the heal stores it). Feedback passes the package's Redactor: gate
    messages can quote what a sandbox run read (an env var, a data value).
    """
    redact = package.redactor.text
    turns: list[Turn] = []
    reasons: list[str] = []

    def taken(turn: Turn) -> Turn:
        turns.append(turn)
        if on_turn is not None:
            on_turn(turn)
        return turn

    for configured in diagnosers:
        diagnoser = configured.for_policy(policy)
        feedback: list[str] = []
        # One extra round lets a conversational diagnoser report its budget stop.
        for _ in range(diagnoser.max_rounds + (1 if diagnoser.max_rounds > 1 else 0)):
            started = time.monotonic()
            proposal = diagnoser.propose(package, feedback)
            latency = int((time.monotonic() - started) * 1000)
            if proposal.patch is None:
                taken(Turn(diagnoser.name, proposal, latency))
                reasons.append(redact(f"{diagnoser.name}: {proposal.reason}"))
                break
            if proposal.patch.deferred is not None:
                taken(Turn(diagnoser.name, proposal, latency))
                if not policy.allow_defer:
                    feedback.append("defer_to_human is not allowed here: propose a patch")
                    continue
                return Diagnosis("deferred", proposal.patch.deferred.diagnosis, turns, proposal.patch)
            gated = run_gates(Candidate(proposal.patch, package, blueprint_text, policy,
                                        operator_guardrails=operator_guardrails), gates())  # fmt: skip
            turn = taken(Turn(diagnoser.name, proposal, latency, gated.results, gated.candidate))
            rejected = turn.rejected_by
            if rejected is None:
                escalated = escalations(turn.gate_results)
                if escalated:
                    return Diagnosis("escalated", "; ".join(escalated), turns, proposal.patch)
                return Diagnosis("staged", proposal.reason, turns, proposal.patch)
            feedback.append(redact(f"The {rejected.gate} gate rejected the patch: {rejected.message}"))
            reasons.append(redact(f"{diagnoser.name}: rejected by {rejected.gate}: {rejected.message}"))
            if proposal.final:
                break
    return Diagnosis("no_fix", "; ".join(reasons) or "no diagnoser configured", turns)


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
                outcome = self._for_target(outcome)
                outcome = replace(outcome, pending_path=self.stage(outcome, package, outcome.target.path,
                                                                   outcome.target.text))  # fmt: skip
        except BaseException as error:
            reason = package.redactor.text(f"{type(error).__name__}: {error}")
            store.finish_heal(heal_id, "error", stop_reason=reason[:500])
            raise
        # The outcome leaves the process (store, heal run output): secrets never do. Data values
        # were removed where the structured error was at hand (the Spark gates).
        outcome = replace(outcome, message=package.redactor.text(outcome.message))
        store.finish_heal(
            heal_id, outcome.status, patch_id=outcome.patch.patch_id if outcome.patch else None,
            stop_reason=outcome.message[:500],
        )  # fmt: skip
        return outcome

    def _gates(self, blueprint_id: str) -> list[Gate]:
        gates: list[Gate] = [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate()]
        if self.settings.spark_factory is not None:
            depot = Depot(self.settings.store, blueprint_id)
            gates.append(SandboxGate(self.settings.spark_factory, sample_rows=self.settings.sample_rows,
                                     depot_lookup=depot.get))  # fmt: skip
            gates.append(ContractGate())
        return gates

    def _diagnose_and_gate(self, package: FailurePackage, blueprint_text: str, policy: Agent) -> HealOutcome:
        """The heal loop, every turn stored with the gate that rejected it (redacted)."""
        redact = package.redactor.text
        numbers = iter(range(1, 1_000_000))

        def store_turn(turn: Turn) -> None:
            proposal, rejected = turn.proposal, turn.rejected_by
            self.settings.store.record_turn(HealTurn(
                heal_id=package.heal_id, turn=next(numbers), diagnoser=turn.diagnoser,
                signature=package.signature, prompt_version=proposal.prompt_version,
                patch_json=redact(proposal.patch.model_dump_json()) if proposal.patch else None,
                message=redact(proposal.reason)[:2000], input_tokens=proposal.input_tokens,
                output_tokens=proposal.output_tokens, latency_ms=turn.latency_ms,
                rejected_by=rejected.gate if rejected else None,
            ))  # fmt: skip

        diagnosis = diagnose_and_gate(
            package, blueprint_text, policy, self.settings.diagnosers, lambda: self._gates(package.blueprint_id),
            operator_guardrails=self.settings.operator_guardrails, on_turn=store_turn,
        )  # fmt: skip
        if diagnosis.status in ("deferred", "no_fix"):
            return HealOutcome(package.heal_id, diagnosis.status, diagnosis.message, diagnosis.patch)
        last = diagnosis.turns[-1]
        candidate = last.candidate
        assert candidate is not None and diagnosis.patch is not None
        target = candidate.target or route_patch(package.blueprint_path, blueprint_text, diagnosis.patch)
        patched = candidate.patched_text or apply_patch_text(target.text, target.patch)
        return HealOutcome(
            package.heal_id, diagnosis.status, diagnosis.message, diagnosis.patch, gate_results=last.gate_results,
            diff=unified_diff(target.text, patched, target.path.name), target=target,
        )  # fmt: skip

    # ------------------------------------------------------------------ approval modes

    def _approve(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path,
                 blueprint_text: str, policy: Agent) -> HealOutcome:  # fmt: skip
        assert outcome.patch is not None
        mode = policy.approval
        if mode == "auto" and self.settings.spark_factory is not None:
            candidate = Candidate(outcome.patch, package, blueprint_text, policy,
                                  operator_guardrails=self.settings.operator_guardrails)
            results, candidate = run_gates(candidate, [CompileGate(), EffectGate(),
                                                       FullRunGate(self.settings.spark_factory)])  # fmt: skip
            outcome = replace(outcome, gate_results=outcome.gate_results + results)
            if all(r.passed for r in results):
                target, patched = candidate.target, candidate.patched_text
                assert target is not None and patched is not None, "set by the compile gate"
                # The same locked, journaled path as a reviewer's apply; refused if the file changed meanwhile.
                try:
                    revision = self._queue().apply_change(
                        target.path, patched, target.patch, blueprint_id=package.blueprint_id,
                        read_text=target.text, signature=package.signature, heal_id=package.heal_id,
                    )  # fmt: skip
                except HealError as error:
                    return replace(outcome, status="no_fix", message=f"auto-apply refused: {error.message}")
                return replace(outcome, status="applied", revision=revision,
                               message=f"applied as {revision.summary}; outputs re-published")  # fmt: skip
            outcome = replace(outcome, message=f"auto-apply refused, staged for review: {results[-1].message}")
            mode = "human"
        outcome = self._for_target(outcome)
        assert outcome.target is not None and outcome.patch is not None
        if mode == "ci":
            return self._open_branch(outcome, package, outcome.target.path, outcome.target.text)
        pending = self.stage(outcome, package, outcome.target.path, outcome.target.text)
        return replace(outcome, pending_path=pending,
                       message=f"patch {outcome.patch.patch_id} staged for review: {outcome.message}")  # fmt: skip

    @staticmethod
    def _for_target(outcome: HealOutcome) -> HealOutcome:
        """The outcome with its patch as written for the file it edits (the root patch kept)."""
        assert outcome.target is not None, "set when the gates passed"
        return replace(outcome, root_patch=outcome.root_patch or outcome.patch, patch=outcome.target.patch)

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
        opened = open_patch_branch(
            blueprint_path, patched, outcome.patch, package, diff=outcome.diff,
            pr_dir=self.settings.patches_dir / "pr", token=os.environ.get(self.settings.git_remote_token_env),
        )  # fmt: skip
        self.settings.store.index_patch(outcome.patch.patch_id, package.blueprint_id, package.signature,
                                        "branch", str(opened.description), package.heal_id)  # fmt: skip
        pull_request = f"; pull request {opened.pull_request}" if opened.pull_request else ""
        return replace(outcome, status="branch", branch=opened.branch,
                       message=f"patch {outcome.patch.patch_id} committed on branch {opened.branch}; "
                               f"PR description {opened.description}{pull_request}")  # fmt: skip


# --------------------------------------------------------------------------- pending patches
# PatchQueue and PendingPatch live in patch_queue.py; imported above so existing imports keep working.

__all__ = ["Diagnoser", "Diagnosis", "HealError", "Healer", "HealOutcome", "HealSettings", "PatchQueue",
           "PendingPatch", "Proposal", "RuleDiagnoser", "StopReason", "Turn", "diagnose_and_gate"]
