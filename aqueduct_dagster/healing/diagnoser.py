"""What a diagnoser answers, and the protocol every diagnoser follows.

A diagnoser reads a `FailurePackage` and answers a `Proposal`: a patch, or none with a
`StopReason` saying why (the heal loop and the benchmark branch on the reason, never on
its text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec


class StopReason(StrEnum):
    """Why a diagnoser answered without a patch."""

    #: It found nothing it can fix (no rule fits).
    NO_FIX = "no_fix"
    #: Its budget is spent (time, tokens, rounds, repeated rejections, no progress).
    BUDGET = "budget"
    #: It answered, but never with a valid PatchSpec.
    INVALID_ANSWER = "invalid_answer"
    #: The model could not be reached (network, auth, timeout).
    CALL_FAILED = "call_failed"


@dataclass
class Proposal:
    patch: PatchSpec | None
    reason: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    prompt_version: str | None = None
    #: The diagnoser gave up (budget, repeated error): no more feedback rounds.
    final: bool = False
    #: Why there is no patch (None when there is one).
    stop: StopReason | None = None


class Diagnoser(Protocol):
    name: str
    max_rounds: int

    def for_policy(self, policy: Agent) -> Diagnoser:
        """This diagnoser set up for one Blueprint's agent policy (guardrails, reprompt limit)."""
        ...

    def propose(self, package: FailurePackage, feedback: Sequence[str]) -> Proposal: ...
