"""A module's effective retry policy, as the Dagster RetryPolicy of its asset.

A module's `retry:` overrides the Blueprint's `retry_policy` field by field (`backoff` too,
key by key); what is unset inherits. Dagster retries a step only when its failure allows it,
and `run_module_step` raises `Failure(allow_retries=failure.transient)`: terminal errors fail
at once whatever the policy says. What a Dagster RetryPolicy cannot hold stays with the
engine and the healing layer: `backoff.max_seconds` (Dagster's delay grows without a cap),
`deadline_seconds`, `on_exhaustion` and the transient/non-transient error lists.

`backoff` keys count as set when the Blueprint wrote them (pydantic's `model_fields_set`); a
Manifest re-validated from a full dump has every key set, so its module backoff then replaces
the Blueprint's whole.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.blueprint.models import Backoff, RetryPolicy

_BACKOFFS: dict[str, dg.Backoff | None] = {
    "fixed": None,  # Dagster's constant delay
    "linear": dg.Backoff.LINEAR,
    "exponential": dg.Backoff.EXPONENTIAL,
}


def merged_retry(manifest: Manifest, module: CompiledModule) -> RetryPolicy:
    """The Blueprint's `retry_policy` with the module's `retry:` fields laid over it, then the
    retry fields of its `on_failure:` (where a healer's set_module_on_failure writes)."""
    policy = _laid_over(manifest.retry_policy, module.spec.retry)
    on_failure = getattr(module.spec, "on_failure", None) or {}
    known = {k: v for k, v in on_failure.items() if k in RetryPolicy.model_fields}
    return _laid_over(policy, RetryPolicy(**known) if known else None)


def _laid_over(base: RetryPolicy, override: RetryPolicy | None) -> RetryPolicy:
    if override is None:
        return base
    fields: dict[str, Any] = {
        name: getattr(override, name)
        for name in override.model_fields_set
        if name != "backoff" and getattr(override, name) is not None
    }
    if override.backoff is not None:
        own = {name: getattr(override.backoff, name) for name in override.backoff.model_fields_set}
        fields["backoff"] = Backoff(**{**base.backoff.model_dump(), **own})
    return base.model_copy(update=fields)


def effective_retry(manifest: Manifest, module: CompiledModule) -> dg.RetryPolicy | None:
    """The Dagster retry policy of `module`'s asset; None when it gets one attempt only."""
    return dagster_retry(merged_retry(manifest, module))


def dagster_retry(policy: RetryPolicy) -> dg.RetryPolicy | None:
    """An Aqueduct retry policy as Dagster's; None when it allows one attempt only."""
    if policy.max_attempts <= 1:
        return None
    return dg.RetryPolicy(
        max_retries=policy.max_attempts - 1,
        delay=policy.backoff.base_seconds,
        backoff=_BACKOFFS[policy.backoff.strategy],
        jitter=dg.Jitter.PLUS_MINUS if policy.backoff.jitter else None,
    )
