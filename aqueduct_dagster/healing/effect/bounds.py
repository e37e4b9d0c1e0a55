"""The numbers a patch may set: engine conf under its ceilings, counts, durations and retry
values within fixed ranges (a huge partition count or a retry storm stalls the run)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from aqueduct_dagster.healing.effect.records import Effect

#: Settings that count something (partitions, seconds, threads): whole numbers only.
_COUNT_KEYS = frozenset({"spark.sql.shuffle.partitions", "spark.sql.broadcastTimeout", "duckdb.threads"})

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}

#: Counts and durations a module asks the engine for, by module type, with the range a patch
#: may write (`num_partitions: 1000000000` or a Regulator waiting a year stalls the sandbox
#: and the run).
AMOUNT_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "Channel": {"num": (1, 10_000), "num_partitions": (1, 10_000)},
    "Egress": {"coalesce": (1, 10_000), "repartition": (1, 10_000)},
    "Regulator": {"timeout_seconds": (0, 86_400), "poll_seconds": (0.1, 3_600)},
}
_SIGNAL_SAMPLE_BOUNDS = (1, 1_000_000)

#: The keys an `on_failure:` block may hold: retry settings only.
RETRY_FIELDS = frozenset({"max_attempts", "backoff", "deadline_seconds", "on_exhaustion",
                          "transient_errors", "non_transient_errors"})  # fmt: skip
#: Bounds on retry settings a patch may write (a retry storm is a denial of service).
_RETRY_BOUNDS = {"max_attempts": (1, 10), "base_seconds": (0, 3600), "max_seconds": (0, 86400),
                 "deadline_seconds": (1, 86400)}  # fmt: skip


def as_number(value: Any) -> float:
    """`value` as a float; NaN (which compares false with every bound) when it is none."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number


def amount_problems(before: Effect, after: Effect) -> list[str]:
    problems = []
    for where, value in after.amounts.items():
        if before.amounts.get(where) == value or isinstance(value, bool):
            continue
        key = where.rsplit(".", 1)[-1]
        low, high = _SIGNAL_SAMPLE_BOUNDS if key == "n" else next(
            (bounds[key] for bounds in AMOUNT_BOUNDS.values() if key in bounds), (0, math.inf))  # fmt: skip
        if not low <= as_number(value) <= high:
            problems.append(f"{where} = {value!r} is outside {low}..{high}; a patch may only set it within these bounds")
    return problems


def failure_problems(before: Effect, after: Effect) -> list[str]:
    """`on_failure:` holds retry fields only; retry values within bounds."""
    problems = []
    for module_id, block in after.on_failure.items():
        if before.on_failure.get(module_id) == block:
            continue
        others = sorted(str(k) for k in block if k not in RETRY_FIELDS)
        if others:
            problems.append(f"module '{module_id}' on_failure: keys {', '.join(others)} are not retry "
                            f"settings; a patch may set only {', '.join(sorted(RETRY_FIELDS))}")  # fmt: skip
    for where, values in after.retry.items():
        if before.retry.get(where) == values:
            continue
        flat = {**values, **(values.get("backoff") or {})} if isinstance(values.get("backoff"), Mapping) else dict(values)
        for key, (low, high) in _RETRY_BOUNDS.items():
            value = flat.get(key)
            if value is None:
                continue
            number = as_number(value)
            if isinstance(value, bool) or not (low <= number <= high) or number != int(number):
                problems.append(f"{where}: {key} = {value!r} is outside {low}..{high}; a patch may "
                                "only set retry values within these bounds")  # fmt: skip
    return problems


def engine_problems(before: Mapping[str, Any], after: Mapping[str, Any], ceilings: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key not in ceilings:
            problems.append(f"engine config '{key}' may not be changed by a patch (allowed keys: "
                            f"{', '.join(sorted(ceilings))})")  # fmt: skip
            continue
        if key not in after:
            continue  # back to the engine default
        problem = _bounded(key, after[key], ceilings[key])
        if problem:
            problems.append(problem)
    return problems


def _bounded(key: str, value: Any, ceiling: Any) -> str | None:
    if isinstance(ceiling, bool) or ceiling is None:
        if ceiling is None or str(value).strip().lower() in ("true", "false"):
            return None
        return f"engine config '{key}' = {value!r}: must be true or false"
    limit = _size(ceiling)
    amount = _size(value)
    if limit is None:
        return f"engine config '{key}': the ceiling {ceiling!r} in aqueduct.yml is not a number or size"
    if amount is None or not math.isfinite(amount):
        return f"engine config '{key}' = {value!r}: not a number or size (e.g. 200, 4g)"
    if key in _COUNT_KEYS and not (isinstance(value, int) or re.fullmatch(r"\s*-?\d+\s*", str(value))):
        return f"engine config '{key}' = {value!r}: must be a whole number"
    if amount == -1 and key == "spark.sql.autoBroadcastJoinThreshold":
        return None  # -1 switches broadcasting off
    if amount <= 0 or amount > limit:
        return (f"engine config '{key}' = {value!r} is outside 1..{ceiling} (the ceiling; an operator "
                "raises it with agent.guardrails.engine_conf_ceilings in aqueduct.yml)")  # fmt: skip
    return None


def _size(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf
    text = str(value).strip()
    if len(text) > 64:
        return None
    if re.fullmatch(r"-?\d+", text):
        return float(text)
    match = _SIZE.match(text)
    if not match:
        return None
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
