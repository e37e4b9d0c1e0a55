"""Whether a patch may change a Blueprint's effect: the unpatched and the patched effect
compared under the guardrail policy, each problem naming the location and what would pass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.simplify import simplify

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.healing.effect.bounds import (
    amount_problems,
    as_number,
    engine_problems,
    failure_problems,
)
from aqueduct_dagster.healing.effect.compiled import compiled_effect
from aqueduct_dagster.healing.effect.locations import (
    VIA_LINK,
    denied_by,
    is_under,
    normalized_pattern,
)
from aqueduct_dagster.healing.effect.records import Effect, EffectPolicy, Target
from aqueduct_dagster.healing.effect.sql_values import tables_read_by
from aqueduct_dagster.healing.sql_policy import sql_problem

#: on_fail actions from the strictest (stops the run) to the weakest.
_ACTION_RANK = {"abort": 4, "quarantine": 3, "trigger_agent": 3, "webhook": 1, "warn": 1}
#: Rule fields where a larger value lets more data through, and where a smaller one does.
_LOOSER_WHEN_LARGER = ("max", "max_age_hours", "fraction")
_LOOSER_WHEN_SMALLER = ("min", "min_pass_rate")


def judge_effect(before: Effect, after: Effect, policy: EffectPolicy | None = None,
                 base_dir: str | Path | None = None) -> list[str]:  # fmt: skip
    """Problems with going from `before` to `after` (empty: the patch may have this effect)."""
    policy = policy or EffectPolicy()
    base = str(base_dir) if base_dir is not None else os.getcwd()
    new_env = sorted(after.env - before.env)
    if new_env:
        # Alone, and by name only: another message could quote the value it resolved to.
        return [
            f"the patch makes the Blueprint read environment variable or secret "
            f"'{name.split(':', 1)[1]}', which it did not use before; a patch may not add one"
            if "(default " not in name else
            f"the patch changes an @aq.env default to {name.split(':', 1)[1]}; where the variable "
            "is unset the Blueprint would read and write elsewhere: a patch may not change one"
            for name in new_env
        ]  # fmt: skip
    problems: list[str] = []
    for target, where in after.writes.items():
        if target not in before.writes:
            problems.append(
                f"{where}: writes to a new {target.kind} '{target.value}'; a patch may not add a "
                f"write target (the Blueprint writes to: {_listing(before.writes)})"
            )
    # The folder a read reads from: a folder read is that folder, a file read the file's folder.
    # Locations found through links under a folder never widen it (a link to /etc/passwd in
    # the data folder must not make all of /etc readable).
    read_folders = [
        t.value if t.value == "/" or os.path.isdir(t.value) else os.path.dirname(t.value)
        for t, where in before.reads.items() if t.kind == "path" and not where.endswith(VIA_LINK)
    ]  # fmt: skip
    for target, where in after.reads.items():
        if target in before.reads:
            continue
        if target.kind != "path":
            problems.append(f"{where}: reads a new {target.kind} '{target.value}'; a patch may only read "
                            f"what the Blueprint already reads ({_listing(before.reads)})")  # fmt: skip
            continue
        if not any(is_under(target.value, folder) for folder in read_folders):
            problems.append(
                f"{where}: reads '{target.value}', outside every folder the Blueprint already reads "
                f"from ({', '.join(sorted(set(read_folders))) or 'none'}); keep the new path inside one of them"
            )
        elif policy.allowed_paths and not any(is_under(target.value, normalized_pattern(p, base)) for p in policy.allowed_paths):
            problems.append(f"{where}: reads '{target.value}', outside agent.guardrails.allowed_paths "
                            f"({', '.join(policy.allowed_paths)})")  # fmt: skip
    for targets, old in ((after.reads, before.reads), (after.writes, before.writes)):
        for target, where in targets.items():
            if target in old or target.kind != "path":
                continue
            for pattern in policy.denied_paths:
                if denied_by(target.value, pattern, base):
                    problems.append(f"{where}: '{target.value}' matches the denied path pattern '{pattern}'")
    for target, where in after.code.items():
        if target not in before.code:
            problems.append(f"{where}: loads new code ({target.value}); a patch may not add or change "
                            "code locations (UDFs, classes, hooks, plugins): a person must")  # fmt: skip
    problems += engine_problems(before.engine_conf, after.engine_conf, policy.engine_ceilings)
    problems += _sql_problems(before, after)
    problems += _output_problems(before, after)
    problems += _check_problems(before, after)
    problems += failure_problems(before, after)
    problems += amount_problems(before, after)
    return problems


def sql_problems_of(manifest: Manifest, baseline: Manifest | None = None) -> list[str]:
    """The SQL policy on every SQL value of `manifest`, before anything executes it.

    Tables allowed: each module's inputs, plus what the same module read in `baseline` (the
    unpatched Manifest, already trusted) and catalog names its own Egresses register.
    """
    after = compiled_effect(manifest)
    before = compiled_effect(baseline) if baseline is not None else Effect()
    registered = {t.value for t in after.writes if t.kind == "catalog"}
    problems = []
    for module_id, values in after.sql.items():
        tables = after.inputs.get(module_id, set()) | registered | tables_read_by(before.sql.get(module_id, []))
        for value in values:
            problem = sql_problem(value.text, kind=value.kind, tables=tables, udfs=after.udfs)
            if problem:
                problems.append(f"{value.where}: {problem}")
    return problems


def _sql_problems(before: Effect, after: Effect) -> list[str]:
    """The SQL policy on every module whose compiled SQL-bearing values changed."""
    problems = []
    for module_id, values in after.sql.items():
        old_values = before.sql.get(module_id)
        if old_values == values and before.inputs.get(module_id) == after.inputs.get(module_id):
            continue
        tables = after.inputs.get(module_id, set()) | tables_read_by(old_values or [])
        for value in values:
            if old_values and value in old_values:
                continue
            problem = sql_problem(value.text, kind=value.kind, tables=tables, udfs=after.udfs)
            if problem:
                problems.append(f"{value.where}: {problem}")
    return problems


def _output_problems(before: Effect, after: Effect) -> list[str]:
    """No output lost, none written in a new way (a new mode, merge key or schema handling)."""
    problems = []
    for target, where in after.outputs.items():
        if target not in before.outputs:
            problems.append(f"{where}: adds the output {target.value}; a patch may not add a write target "
                            f"(the Blueprint's outputs: {_listing(before.outputs)})")  # fmt: skip
    for target, where in {**before.writes, **before.outputs}.items():
        if target not in after.writes and target not in after.outputs and target.kind != "checkpoint":
            problems.append(f"{where}: the patch removes the write target {target.kind} '{target.value}'; "
                            "a patch may not remove or move an output: a person must")  # fmt: skip
    for module_id, mode in after.write_modes.items():
        old = before.write_modes.get(module_id)
        if old is not None and old != mode:
            problems.append(f"module '{module_id}': the patch changes how it writes ({old} -> {mode}); a "
                            "patch may not change an Egress's format, mode, keys, replace_where, "
                            "partitioning, schema overwrite or maintenance: a person must")  # fmt: skip
    return problems


def _check_problems(before: Effect, after: Effect) -> list[str]:
    """Quality checks may be fixed (a renamed column), never removed, loosened or bypassed."""
    problems = []
    for module_id, rules in before.checks.items():
        new_rules = after.checks.get(module_id)
        if new_rules is None:
            problems.append(f"module '{module_id}': the patch removes (or disables) the Assert; a patch "
                            "may not remove a quality check: a person must")  # fmt: skip
            continue
        if len(new_rules) < len(rules):
            problems.append(f"module '{module_id}': the patch removes {len(rules) - len(new_rules)} of its "
                            "rules; a patch may not remove a quality check: a person must")  # fmt: skip
            continue
        for index, (old, new) in enumerate(zip(rules, new_rules, strict=False)):
            problem = _looser_rule(old, new)
            if problem:
                problems.append(f"module '{module_id}' rules[{index}]: {problem}; a patch may not loosen a "
                                "quality check: a person must")  # fmt: skip
    for egress, guards in before.guards.items():
        if egress not in after.guards:
            continue
        bypassed = sorted((guards & set(after.checks)) - after.guards[egress])
        if bypassed:
            problems.append(f"module '{egress}': after the patch, data reaches it without passing the "
                            f"Assert {', '.join(repr(b) for b in bypassed)}; a patch may not route data "
                            "around a quality check")  # fmt: skip
    return problems


def _looser_rule(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    if old.get("type") != new.get("type"):
        return f"its type changes from {old.get('type')} to {new.get('type')}"
    old_action, new_action = _action(old.get("on_fail")), _action(new.get("on_fail"))
    if _ACTION_RANK.get(new_action, 0) < _ACTION_RANK.get(old_action, 0):
        return f"its on_fail changes from {old_action} to {new_action}"
    for key in _LOOSER_WHEN_LARGER + _LOOSER_WHEN_SMALLER:
        if old.get(key) == new.get(key):
            continue
        if new.get(key) is None or old.get(key) is None:
            return f"its `{key}` changes from {old.get(key)} to {new.get(key)}"
        larger = as_number(new[key]) > as_number(old[key])
        if larger == (key in _LOOSER_WHEN_LARGER):
            return f"its `{key}` loosens from {old[key]} to {new[key]}"
    expr = new.get("expr")
    if isinstance(expr, str) and expr != old.get("expr") and not _reads_a_column(expr):
        return f"its expression `{expr}` reads no column (it checks nothing)"
    if old.get("column") and not new.get("column"):
        return "its `column` is dropped"
    return None


def _action(on_fail: Any) -> str:
    if isinstance(on_fail, Mapping):
        return str(on_fail.get("action") or "abort")
    return str(on_fail or "abort")


def _reads_a_column(expr: str) -> bool:
    try:
        tree = sqlglot.parse_one(f"SELECT ({expr})", read="spark")
        if tree is not None:
            # `MIN(amount) > 0 OR TRUE` reads a column and still checks nothing.
            tree = simplify(tree)
    except Exception:  # noqa: BLE001 - the SQL policy names a parse error; here: not a check
        return False
    return tree is not None and any(True for _ in tree.find_all(exp.Column))


def _listing(targets: Mapping[Target, str]) -> str:
    return ", ".join(sorted(f"{t.kind} {t.value}" for t in targets)) or "nothing"
