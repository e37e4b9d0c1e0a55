"""One heal: policy checks, diagnosers in order, gates, then the approval mode decides.

    outcome = Healer(settings).heal(package, blueprint_path, policy)

Diagnosers are tried cheapest first (the offline rules, then an LLM agent when configured).
A candidate that a gate rejects goes back to its diagnoser as feedback, so a conversational
diagnoser can correct itself; every turn is stored with the gate that rejected it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.arcade_files import PatchTarget, route_patch
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    FullRunGate,
    Gate,
    GateResult,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
)
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.healing.revisions import Revision, RevisionStore, unified_diff
from aqueduct_dagster.healing.rules import diagnose_with_rules
from aqueduct_dagster.stores import HealTurn, Store

HealStatus = Literal[
    "disabled", "skipped", "rate_limited", "suppressed", "no_fix", "deferred", "staged",
    "escalated", "branch", "applied", "rejected",
]  # fmt: skip


class HealError(AqueductError):
    """A patch cannot be staged, applied or rejected."""


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
    #: Used when the blueprint sets no agent.max_heal_attempts_per_hour.
    max_heals_per_hour: int | None = 20
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
        limit = policy.max_heal_attempts_per_hour or self.settings.max_heals_per_hour
        if limit is not None and store.heal_attempts_since(package.blueprint_id, timedelta(hours=1)) >= limit:
            return HealOutcome(heal_id, "rate_limited", f"{limit} heals in the last hour for '{package.blueprint_id}'")
        pending = store.pending_patch_for(package.blueprint_id, package.signature)
        if pending:
            return HealOutcome(
                heal_id, "suppressed", f"patch {pending} for this failure is already waiting for review"
            )

        store.start_heal(heal_id, package.blueprint_id, package.run_id, package.signature)
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
            store.finish_heal(heal_id, "error", stop_reason=f"{type(error).__name__}: {error}"[:500])
            raise
        store.finish_heal(
            heal_id, outcome.status, patch_id=outcome.patch.patch_id if outcome.patch else None,
            stop_reason=outcome.message[:500],
        )  # fmt: skip
        return outcome

    def _gates(self, blueprint_id: str) -> list[Gate]:
        from aqueduct_dagster.stores.depot import Depot

        gates: list[Gate] = [GuardrailsGate(), CompileGate(), LineageGate()]
        if self.settings.spark_factory is not None:
            depot = Depot(self.settings.store, blueprint_id)
            gates.append(SandboxGate(self.settings.spark_factory, sample_rows=self.settings.sample_rows,
                                     depot_lookup=depot.get))  # fmt: skip
        return gates

    def _diagnose_and_gate(self, package: FailurePackage, blueprint_text: str, policy: Agent) -> HealOutcome:
        store, turn_number, reasons = self.settings.store, 0, []
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
                    patch_json=proposal.patch.model_dump_json() if proposal.patch else None,
                    message=proposal.reason[:2000], input_tokens=proposal.input_tokens,
                    output_tokens=proposal.output_tokens, latency_ms=latency,
                )  # fmt: skip
                if proposal.patch is None:
                    store.record_turn(turn)
                    reasons.append(f"{diagnoser.name}: {proposal.reason}")
                    break
                if proposal.patch.deferred is not None:
                    store.record_turn(turn)
                    if not policy.allow_defer:
                        feedback.append("defer_to_human is not allowed here: propose a patch")
                        continue
                    return HealOutcome(package.heal_id, "deferred", proposal.patch.deferred.diagnosis, proposal.patch)
                candidate = Candidate(proposal.patch, package, blueprint_text, policy)
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
                feedback.append(f"The {rejected.gate} gate rejected the patch: {rejected.message}")
                reasons.append(f"{diagnoser.name}: rejected by {rejected.gate}: {rejected.message}")
                if proposal.final:
                    break
        return HealOutcome(package.heal_id, "no_fix", "; ".join(reasons) or "no diagnoser configured")

    # ------------------------------------------------------------------ approval modes

    def _approve(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path,
                 blueprint_text: str, policy: Agent) -> HealOutcome:  # fmt: skip
        assert outcome.patch is not None
        mode = policy.approval
        if mode == "auto" and self.settings.spark_factory is not None:
            candidate = Candidate(outcome.patch, package, blueprint_text, policy)
            results = run_gates(candidate, [CompileGate(), FullRunGate(self.settings.spark_factory)])
            outcome.gate_results += results
            if all(r.passed for r in results):
                target = candidate.target or self._edit_target(outcome)
                revision = RevisionStore(self.settings.revisions_dir).write(
                    target.path, candidate.patched_text or "", patch=target.patch,
                    blueprint_id=package.blueprint_id,
                )  # fmt: skip
                self.settings.store.index_patch(outcome.patch.patch_id, package.blueprint_id, package.signature,
                                                "applied", None, package.heal_id)  # fmt: skip
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
        outcome.patch = outcome.target.patch
        return outcome.target

    def stage(self, outcome: HealOutcome, package: FailurePackage, blueprint_path: Path, blueprint_text: str) -> Path:
        assert outcome.patch is not None
        pending = self.settings.patches_dir / "pending"
        pending.mkdir(parents=True, exist_ok=True)
        record = {
            "patch": outcome.patch.model_dump(mode="json"),
            "blueprint_id": package.blueprint_id,
            "blueprint_path": str(blueprint_path),
            # The Blueprint compiled and run: differs from blueprint_path for an Arcade's file.
            "root_path": str(outcome.target.root_path if outcome.target else blueprint_path),
            "blueprint_sha256": hashlib.sha256(blueprint_text.encode()).hexdigest(),
            "heal_id": package.heal_id,
            "run_id": package.run_id,
            "signature": package.signature,
            "failed_module": package.failed_module,
            "error": package.error.model_dump(),
            "gates": [vars(r) for r in outcome.gate_results],
            "escalation": outcome.message if outcome.status == "escalated" else None,
            "diff": outcome.diff,
        }
        path = pending / f"{outcome.patch.patch_id}.json"
        from aqueduct_dagster.healing.revisions import atomic_write_text

        atomic_write_text(path, json.dumps(record, indent=2, default=str))
        (pending / f"{outcome.patch.patch_id}.diff").write_text(outcome.diff, encoding="utf-8")
        self.settings.store.index_patch(outcome.patch.patch_id, package.blueprint_id, package.signature,
                                        "pending", str(path), package.heal_id)  # fmt: skip
        return path

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


@dataclass(frozen=True)
class PendingPatch:
    patch: PatchSpec
    path: Path
    record: dict[str, Any]

    @property
    def patch_id(self) -> str:
        return self.patch.patch_id


class PatchQueue:
    """patches/pending -> applied | rejected, with the revision store and the index in step."""

    def __init__(self, patches_dir: Path, revisions_dir: Path, store: Store) -> None:
        self.patches_dir = Path(patches_dir)
        self.revisions = RevisionStore(revisions_dir)
        self.store = store

    @classmethod
    def from_config(cls, config: Any) -> PatchQueue:
        """The project's queue: `aqueduct.yml` (or env) patches dir, state dir and store."""
        from aqueduct_dagster.stores import default_store

        return cls(config.patches_path, config.state_path / "revisions", default_store(config.state_path, config))

    def list(self, status: str = "pending") -> list[PendingPatch]:
        folder = self.patches_dir / status
        if not folder.is_dir():
            return []
        return [self._load(p) for p in sorted(folder.glob("*.json"))]

    def get(self, patch_id: str) -> PendingPatch:
        path = self.patches_dir / "pending" / f"{patch_id}.json"
        if not re.fullmatch(r"[A-Za-z0-9._-]+", patch_id) or not path.is_file():
            known = [p.patch_id for p in self.list()]
            raise HealError(
                f"no pending patch '{patch_id}'",
                hint=f"pending patches: {', '.join(known)}" if known else "there are no pending patches",
            )
        return self._load(path)

    def _load(self, path: Path) -> PendingPatch:
        record = json.loads(path.read_text(encoding="utf-8"))
        return PendingPatch(PatchSpec.model_validate(record["patch"]), path, record)

    def apply(self, patch_id: str) -> Revision:
        from aqueduct_dagster.blueprint import compile_text

        pending = self.get(patch_id)
        blueprint_path = Path(pending.record["blueprint_path"])
        current = blueprint_path.read_text(encoding="utf-8")
        root = Path(pending.record.get("root_path") or blueprint_path)
        try:
            patched = apply_patch_text(current, pending.patch)
            if root.resolve() == blueprint_path.resolve():
                compile_text(patched, source_path=str(blueprint_path))
            else:  # an Arcade's sub-Blueprint: it must still compile within its user
                compile_text(root.read_text(encoding="utf-8"), source_path=str(root),
                             file_overrides={blueprint_path.resolve(): patched})  # fmt: skip
        except AqueductError as error:
            raise HealError(
                f"patch '{patch_id}' no longer applies to {blueprint_path}: {error.message}",
                hint="the blueprint changed since the patch was staged; reject it and let the next failure heal again",
            ) from None
        revision = self.revisions.write(blueprint_path, patched, patch=pending.patch,
                                        blueprint_id=pending.record.get("blueprint_id"))  # fmt: skip
        self._move(pending, "applied")
        self.store.set_patch_status(patch_id, "applied")
        return revision

    def reject(self, patch_id: str, reason: str = "") -> Path:
        pending = self.get(patch_id)
        target = self._move(pending, "rejected")
        self.store.set_patch_status(patch_id, "rejected")
        if reason:
            (target.with_suffix(".reason.txt")).write_text(reason, encoding="utf-8")
        return target

    def _move(self, pending: PendingPatch, status: str) -> Path:
        folder = self.patches_dir / status
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / pending.path.name
        os.replace(pending.path, target)
        diff = pending.path.with_suffix(".diff")
        if diff.exists():
            os.replace(diff, folder / diff.name)
        return target
