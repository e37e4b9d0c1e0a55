"""The offline diagnoser: deterministic rules for the failures that need no LLM.

Each rule looks at a `FailurePackage` and either proposes a `PatchSpec`, refuses with the
evidence, or passes. A rule edits the Blueprint as written (templating intact): a column typo
inside a macro is fixed in the macro, a wrong file name in the path's literal part, never by
baking in compiled values. When no rule fits, the diagnoser says so plainly; it never guesses.

The rules live by concern (drift evidence, SQL errors, data faults, sources, engine settings);
`RULES` below is the one place that orders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.policy import ENGINE_CONFIG_ALLOWLIST
from aqueduct_dagster.healing.rules import (
    data_faults,
    drift_evidence,
    engine_config,
    sources,
    sql_errors,
)
from aqueduct_dagster.healing.rules.common import Refusal, Rule

#: Tried in this order; the first that answers decides. The drift evidence comes first: where
#: it speaks, it outranks a reading of the error text.
RULES: tuple[tuple[str, Rule], ...] = (
    ("delimiter_changed", drift_evidence.delimiter_changed),
    ("format_changed", drift_evidence.format_changed),
    ("retyped_column", drift_evidence.retyped_column),
    ("unresolved_column", sql_errors.unresolved_column),
    ("path_not_found", sources.path_not_found),
    ("wrong_format", sources.wrong_format),
    ("cast_invalid_input", data_faults.cast_invalid_input),
    ("divide_by_zero", data_faults.divide_by_zero),
    ("schema_hint_mismatch", sql_errors.schema_hint_mismatch),
    ("ambiguous_reference", sql_errors.ambiguous_reference),
    ("driver_max_result_size", engine_config.driver_max_result_size),
    ("shuffle_oom", engine_config.shuffle_oom),
    ("broadcast_timeout", engine_config.broadcast_timeout),
    ("reserved_identifier", sql_errors.reserved_identifier),
    ("string_where_numeric_expected", sql_errors.string_where_numeric_expected),
    ("delta_schema_changed", sources.delta_schema_changed),
)


@dataclass(frozen=True)
class Diagnosis:
    patch: PatchSpec | None
    rule: str | None
    reason: str


def diagnose_with_rules(package: FailurePackage) -> Diagnosis:
    for name, function in RULES:
        patch = function(package)
        if isinstance(patch, Refusal):
            # A rule that knows this failure and refuses outranks every later, weaker reading.
            return Diagnosis(patch=None, rule=None, reason=f"{name}: {patch.reason}")
        if patch is not None:
            patch.misc.setdefault("diagnoser", f"rules/{name}")
            return Diagnosis(patch=patch, rule=name, reason=patch.rationale)
    what = package.error.condition or package.error.exception_class or "this error"
    return Diagnosis(
        patch=None,
        rule=None,
        reason=f"no rule for {what} in module '{package.failed_module}'",
    )


__all__ = ["ENGINE_CONFIG_ALLOWLIST", "RULES", "Diagnosis", "Refusal", "diagnose_with_rules"]
