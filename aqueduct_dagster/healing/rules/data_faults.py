"""Rules for lazy data faults (CAST_INVALID_INPUT, DIVIDE_BY_ZERO): the safe `try_` form.

They are patched in the module that holds them, which blame (healing/blame.py, run by the
heal job) names as `failed_module`, even when they surfaced downstream (`surfaced_in`).
What is checked where:
- here, from the package alone: the failing expression (Spark's fragment) or, without one,
  the cast target is written in that module's SQL; a patch in another module than the
  surfacing one needs the fragment;
- in the heal job, on a sample of the real input (blame.measure_safe_rewrite): how many
  values the expression had and how many its try_ form keeps (`package.fault.evidence`).
  Here a rewrite that keeps none of them is refused, and so is one whose measure failed;
  a package nobody measured (built by hand) goes on to the gates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aqueduct_dagster.healing import blame, sql_edit
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.rules.common import Refusal, error_param, new_patch, rewrite_sql_sites


def cast_invalid_input(package: FailurePackage) -> PatchSpec | Refusal | None:
    if package.condition != "CAST_INVALID_INPUT":
        return None
    target = (error_param(package, "targetType") or "").strip('"').strip()
    if not target:
        return None
    fragment = _located_fragment(package)
    if fragment is not None and not re.match(r"\s*cast\s*\(", fragment, re.I):
        fragment = None  # a DataFrame context names the function, not the expression
    if fragment is None and _surfaced_elsewhere(package):
        return None  # which CAST, in a module other than the failing one, is not known
    if fragment is not None:
        operations = rewrite_sql_sites(package, lambda t: _rewrite_fragment(t, fragment, sql_edit.cast_to_try_cast))
    else:
        to_target = re.compile(rf"(?<![\w.])cast\s*\((?:[^()]|\([^()]*\))+?\s+as\s+{_type_pattern(target)}\s*\)", re.I)
        operations = rewrite_sql_sites(
            package, lambda t: to_target.sub(lambda m: sql_edit.cast_to_try_cast(m.group(0)), t) if to_target.search(t) else None
        )  # fmt: skip
    if not operations:
        return None
    refusal = _evidence_refusal(package, "TRY_CAST")
    if refusal is not None:
        return refusal
    where = f" (it surfaced in '{package.surfaced_in}')" if _surfaced_elsewhere(package) else ""
    return new_patch(
        package, "try-cast", operations,
        rationale=f"malformed values cannot be cast to {target}; TRY_CAST in '{package.failed_module}' turns them "
        f"into NULL{where}{_measured(package)}",
        root_cause=f"CAST_INVALID_INPUT: some source values are not valid {target} under ANSI mode",
        category="data_quality", confidence=0.8,
    )  # fmt: skip


def divide_by_zero(package: FailurePackage) -> PatchSpec | Refusal | None:
    if package.condition != "DIVIDE_BY_ZERO":
        return None
    fragment = _located_fragment(package)
    if fragment is not None and "/" not in fragment:
        fragment = None
    if fragment is None and _surfaced_elsewhere(package):
        return None
    if fragment is not None:
        operations = rewrite_sql_sites(package, lambda t: _rewrite_fragment(t, fragment, sql_edit.divide_to_try_divide))
    else:
        operations = rewrite_sql_sites(package, sql_edit.divide_to_try_divide)
    if not operations:
        return None
    refusal = _evidence_refusal(package, "try_divide")
    if refusal is not None:
        return refusal
    where = f" (it surfaced in '{package.surfaced_in}')" if _surfaced_elsewhere(package) else ""
    return new_patch(
        package, "try-divide", operations,
        rationale=f"a divisor is zero for some rows; try_divide in '{package.failed_module}' returns NULL for those "
        f"rows instead of failing{where}{_measured(package)}",
        root_cause="DIVIDE_BY_ZERO under ANSI mode: a denominator column holds zeros",
        category="data_quality", confidence=0.8,
    )  # fmt: skip


def _fault_evidence(package: FailurePackage) -> dict[str, Any] | None:
    evidence = package.fault.get("evidence")
    return evidence if isinstance(evidence, dict) else None


def _evidence_refusal(package: FailurePackage, safe_form: str) -> Refusal | None:
    evidence = _fault_evidence(package)
    if evidence is None:
        return None
    if not evidence.get("measured"):
        return Refusal(f"{safe_form} not proposed for '{package.failed_module}': its effect could not be "
                       f"measured on sampled input ({evidence.get('why', 'no sample')})")  # fmt: skip
    if blame.nulls_whole_column(evidence):
        return Refusal(
            f"{safe_form} would turn every value of {evidence.get('expression')!r} in '{package.failed_module}' "
            f"into NULL: {evidence.get('had_values')} of {evidence.get('rows')} sampled rows had a value, "
            f"{evidence.get('kept_values')} would keep one; the data changed shape, a person decides"
        )  # fmt: skip
    lost = blame.lost_data_values(evidence)
    if lost > 0:
        return Refusal(
            f"{safe_form} in '{package.failed_module}' would turn {lost} of {evidence.get('had_values')} sampled values "
            f"of {evidence.get('expression')!r} into NULL that are not empty markers (N/A, -, null...): they look "
            f"like data in a new shape (another format, a unit or currency sign); a person decides"
        )  # fmt: skip
    return None


def _fragment_pattern(fragment: str) -> re.Pattern[str]:
    """`fragment` as written in SQL, whatever its spacing, quoting and case."""
    parts = re.split(r"(\s+|[(),/*+<>=-])", fragment.strip())
    pieces = []
    for part in parts:
        if not part:
            continue
        if part.isspace():
            pieces.append(r"\s*")
        elif re.fullmatch(r"[(),/*+<>=-]", part):
            pieces.append(rf"\s*{re.escape(part)}\s*")
        else:
            pieces.append("`?" + re.escape(part.strip("`")) + "`?")
    # Not inside a longer name: CAST(...) must not match the tail of TRY_CAST(...).
    return re.compile(r"(?<![\w.])" + "".join(pieces), re.I)


def _rewrite_fragment(text: str, fragment: str, rewrite: Callable[[str], str | None]) -> str | None:
    """`text` with each occurrence of the failing expression (outside literals) rewritten."""
    pattern = _fragment_pattern(fragment)
    if not pattern.search(text):
        return None
    return sql_edit._edit_outside_protected(text, lambda segment: pattern.sub(lambda m: rewrite(m.group(0)) or m.group(0), segment))


def _located_fragment(package: FailurePackage) -> str | None:
    fragment = blame.fault_fragment(package.error.model_dump())
    return fragment or package.fault.get("fragment") or None


def _surfaced_elsewhere(package: FailurePackage) -> bool:
    return bool(package.surfaced_in) and package.surfaced_in != package.failed_module


def _type_pattern(target: str) -> str:
    """A type name as SQL may write it: `DECIMAL(12,2)` matches `decimal(12, 2)`."""
    return re.escape(target.replace(" ", "")).replace(",", r"\s*,\s*")


def _measured(package: FailurePackage) -> str:
    evidence = _fault_evidence(package)
    if not evidence or not evidence.get("measured"):
        return ""
    lost = evidence["had_values"] - evidence["kept_values"]
    return f"; on {evidence['rows']} sampled rows {lost} of {evidence['had_values']} values become NULL"
