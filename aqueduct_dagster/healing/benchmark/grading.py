"""Grading a heal by its effect on the Blueprint, and the scenario's assertions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
import yaml

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.healing.benchmark.attempt import HealAttempt
from aqueduct_dagster.healing.benchmark.scenario import (
    RULES,
    Effect,
    ExpectedPatch,
    LoadedScenario,
    ModuleMatch,
)
from aqueduct_dagster.healing.patch import PatchSpec, SetEngineConfig


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""
    #: Gating checks decide pass/fail; scoring checks are recorded only.
    gating: bool = True
    #: An assertion this grader does not know (it fails, and says so as the stop reason).
    unsupported: bool = False


#: Config keys graded as SQL (sqlglot-normalised substring) rather than raw text.
SQL_CONFIG_KEYS = frozenset({"query", "sql", "condition", "expr"})


def normalize_sql(text: str) -> str | None:
    """Canonical Spark SQL text (keyword case, quoting, spacing, identifier case); None if it does not parse."""
    try:
        parsed = sqlglot.parse_one(text, read="spark")
    except Exception:  # noqa: BLE001 - sqlglot raises several error types; unparseable is the answer
        return None
    if parsed is None:
        return None
    return parsed.sql(dialect="spark", normalize=True)


def sql_contains(actual: str, expected: str) -> bool:
    """AST-normalised substring; a fragment with backticks or that cannot be normalised compares literally."""
    if _squash(expected) in _squash(actual):
        return True
    if "`" in expected:
        return False  # quoting is the point: normalisation could add or drop it
    normal_actual, normal_expected = normalize_sql(actual), normalize_sql(expected)
    return bool(normal_actual and normal_expected and normal_expected in normal_actual)


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def config_contains(actual: Mapping[str, Any], expected: Mapping[str, Any], where: str) -> list[str]:
    """Problems with `actual` against `expected`; empty when it holds.

    SQL keys (`query`, ...) match as a sqlglot-normalised substring, other strings as a raw
    substring, bools and numbers by typed equality, mappings key by key, lists as subsets.
    """
    problems = []
    for key, want in expected.items():
        path = f"{where}.{key}"
        if key not in actual or actual[key] is None:
            problems.append(f"{path} is missing (expected {want!r})")
            continue
        have = actual[key]
        if isinstance(want, dict):
            if isinstance(have, dict):
                problems += config_contains(have, want, path)
            else:
                problems.append(f"{path} is {have!r}, not a mapping")
        elif isinstance(want, bool) or isinstance(want, (int, float)):
            if have != want or isinstance(have, bool) != isinstance(want, bool):
                problems.append(f"{path} is {have!r}, expected {want!r}")
        elif isinstance(want, str):
            if key in SQL_CONFIG_KEYS and isinstance(have, str):
                if not sql_contains(have, want):
                    problems.append(f"{path} does not contain {want!r} (SQL-normalised): {_squash(have)[:200]!r}")
            elif want not in _text_of(have):
                problems.append(f"{path} does not contain {want!r}: {_text_of(have)[:200]!r}")
        elif isinstance(want, list):
            missing = [item for item in want if item not in (have if isinstance(have, list) else [have])]
            if missing:
                problems.append(f"{path} lacks {missing!r}: {have!r}")
        elif have != want:
            problems.append(f"{path} is {have!r}, expected {want!r}")
    return problems


def config_not_contains(actual: Mapping[str, Any], unwanted: Mapping[str, Any], where: str) -> list[str]:
    """Case-insensitive, raw: the text must be gone (a missing key satisfies it)."""
    problems = []
    for key, text in unwanted.items():
        path = f"{where}.{key}"
        if key not in actual or actual[key] is None:
            continue
        if isinstance(text, dict) and isinstance(actual[key], dict):
            problems += config_not_contains(actual[key], text, path)
        elif str(text).lower() in _text_of(actual[key]).lower():
            problems.append(f"{path} still contains {text!r}")
    return problems


@dataclass(frozen=True)
class BlueprintState:
    """The parts of a Blueprint the effect grader reads: raw module configs and engine settings."""

    modules: dict[str, dict[str, Any]]
    engine: dict[str, dict[str, str]]

    @classmethod
    def of(cls, text: str, manifest: Manifest | None) -> BlueprintState:
        data = yaml.safe_load(text) or {}
        modules = {m["id"]: m for m in data.get("modules") or [] if isinstance(m, dict) and "id" in m}
        engine: dict[str, dict[str, str]] = {"spark": {}, "duckdb": {}}
        if manifest is not None:
            engine["spark"] = {str(k): _canonical(v) for k, v in manifest.engine.spark.conf.items()}
            engine["duckdb"] = {
                k: _canonical(v) for k, v in manifest.engine.duckdb.model_dump(exclude_none=True).items()
            }
        return cls(modules, engine)


def _canonical(value: Any) -> str:
    # Every engine setting reaches the session as text: 200 and "200" are the same setting.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def grade_effect(effect: Effect, before: BlueprintState, after: BlueprintState) -> list[str]:
    """Problems with the post-patch Blueprint; empty when the effect holds."""
    problems: list[str] = []
    if effect.module is not None:
        module = after.modules.get(effect.module)
        if module is None:
            problems.append(f"module '{effect.module}' is gone after the patch")
        else:
            config = module.get("config") or {}
            problems += config_contains(config, effect.config_contains or {}, effect.module)
            problems += config_not_contains(config, effect.config_not_contains or {}, effect.module)
    if effect.modules_contain is not None:
        match = effect.modules_contain
        if not any(_module_matches(m, match) for m in after.modules.values()):
            problems.append(f"no module matches {match.model_dump(exclude_none=True)}")
    for engine, settings in (effect.engine_config or {}).items():
        for key, want in settings.items():
            have = after.engine.get(engine, {}).get(key)
            if have != _canonical(want):
                problems.append(f"engine.{engine} {key} is {have!r}, expected {_canonical(want)!r}")
    for engine, keys in (effect.engine_config_changed or {}).items():
        for key in keys:
            old, new = before.engine.get(engine, {}).get(key), after.engine.get(engine, {}).get(key)
            if new is None or new == old:
                problems.append(f"engine.{engine} {key} did not change (before {old!r}, after {new!r})")
    if effect.any_of:
        alternatives = [grade_effect(option, before, after) for option in effect.any_of]
        if all(alternatives):
            problems.append("none of any_of holds: " + " | ".join("; ".join(a) for a in alternatives))
    return problems


def _module_matches(module: Mapping[str, Any], match: ModuleMatch) -> bool:
    if match.type is not None and module.get("type") != match.type:
        return False
    if match.id is not None and module.get("id") != match.id:
        return False
    config = module.get("config") or {}
    where = str(module.get("id"))
    return not config_contains(config, match.config_contains or {}, where) and not config_not_contains(
        config, match.config_not_contains or {}, where
    )


def grade_operations(operations: Sequence[Mapping[str, Any]], patch: PatchSpec,
                     before: BlueprintState, after: BlueprintState) -> list[str]:  # fmt: skip
    """The pre-2.3.0 `expected_patch.ops`: each expected operation's effect (or presence)."""
    problems = []
    for expected in operations:
        op = expected.get("op")
        if op == "set_module_config_key" and {"module_id", "key", "value"} <= set(expected):
            nested: Any = expected["value"]
            for part in reversed(str(expected["key"]).split(".")):
                nested = {part: nested}
            effect = Effect(module=expected["module_id"], config_contains=nested)
            problems += grade_effect(effect, before, after)
        elif op == "set_engine_config" and {"key", "value"} <= set(expected):
            engine = expected.get("engine", "spark")
            effect = Effect(engine_config={engine: {expected["key"]: expected["value"]}})
            problems += grade_effect(effect, before, after)
        else:
            identity = {k: v for k, v in expected.items() if k in ("op", "module_id", "name", "key", "engine")}
            if not any(identity.items() <= actual.model_dump().items() for actual in patch.operations):
                problems.append(f"no operation matches {identity}")
    return problems


def engine_config_status(attempt: HealAttempt, before: BlueprintState) -> tuple[str, str]:
    """Our reading of an engine-config write: pass (allowed and it moves a setting), fail, ..."""
    if attempt.patch is None:
        return "unavailable", "no patch"
    writes = [op for op in attempt.patch.operations if isinstance(op, SetEngineConfig)]
    if not writes:
        return "not_applicable", "the patch writes no engine config"
    rejected = attempt.rejected_by
    if rejected is not None and rejected.gate == "guardrails":
        return "fail", rejected.message
    if attempt.patched_manifest is None or attempt.patched_text is None:
        return "unavailable", "the patched Blueprint did not compile"
    after = BlueprintState.of(attempt.patched_text, attempt.patched_manifest)
    moved = [
        op.key for op in writes
        if before.engine.get(op.engine, {}).get(op.key) != after.engine.get(op.engine, {}).get(op.key)
    ]  # fmt: skip
    if not moved:
        return "fail", "inert: the write changes no effective setting"
    return "pass", f"changes {', '.join(moved)}"


def gate_statuses(attempt: HealAttempt, before: BlueprintState) -> dict[str, tuple[str, str]]:
    statuses: dict[str, tuple[str, str]] = {}
    for name in ("guardrails", "compile", "lineage"):
        result = next((r for r in attempt.gate_results if r.gate == name), None)
        if result is None:
            statuses[name] = ("unavailable", "did not run")
        elif not result.passed:
            statuses[name] = ("fail", result.message)
        elif result.message.endswith("skipped"):
            statuses[name] = ("not_applicable", result.message)
        else:
            statuses[name] = ("warn" if result.escalate else "pass", result.message)
    statuses["engine_config"] = engine_config_status(attempt, before)
    statuses["sandbox"] = ("unavailable", "offline: no Spark session")
    return statuses


def refusal(attempt: HealAttempt, statuses: Mapping[str, tuple[str, str]]) -> str | None:
    """Why the patch did not land: policy, guardrail, invalid or inert (None when it did)."""
    if attempt.invalid:
        return "invalid"
    rejected = attempt.rejected_by
    if rejected is not None:
        if rejected.gate == "guardrails":
            return "policy" if "allowlist" in rejected.message else "guardrail"
        return "invalid"
    if statuses["engine_config"][0] == "fail":
        return "inert"
    return None


def grade(loaded: LoadedScenario, attempt: HealAttempt) -> list[Check]:
    scenario = loaded.scenario
    before = BlueprintState.of(loaded.blueprint_text, loaded.manifest)
    statuses = gate_statuses(attempt, before)
    refused = refusal(attempt, statuses)
    allow_defer = scenario.assertion("allow_defer")
    defer_accepted = attempt.deferred and allow_defer is True
    checks: list[Check] = []

    expected = scenario.expected_patch or ExpectedPatch()
    about_a_patch = any(
        item.get("patch_is_valid") is True or item.get("patch_applies") is True or "patch_refused" in item
        or "gate_status" in item
        for item in scenario.assertions
    )  # fmt: skip
    if expected.states_something:
        if defer_accepted:
            checks.append(Check("effect", True, "deferred to a person (allow_defer: true)"))
        elif not attempt.applied:
            checks.append(Check("effect", False, f"not graded: {_why_not_applied(attempt, refused)}"))
        else:
            assert attempt.patched_text is not None and attempt.patch is not None
            after = BlueprintState.of(attempt.patched_text, attempt.patched_manifest)
            problems = grade_effect(expected.effect, before, after) if expected.effect else []
            problems += grade_operations(expected.operations or [], attempt.patch, before, after)
            checks.append(Check("effect", not problems, "; ".join(problems) or "holds"))
    elif scenario.expected_patch is not None and not about_a_patch:
        # `expected_patch: {}` and no assertion about a patch: the right answer is no patch, or a defer.
        checks.append(Check("no_patch", not attempt.applied,
                            "a patch was staged, none was expected" if attempt.applied else "no patch"))  # fmt: skip

    for item in scenario.assertions:
        [(name, want)] = item.items()
        checks.append(_assertion(name, want, attempt, statuses, refused, defer_accepted))
    return checks


def _why_not_applied(attempt: HealAttempt, refused: str | None) -> str:
    if attempt.patch is None:
        return f"no patch ({attempt.reason})" if attempt.reason else "no patch"
    if attempt.deferred:
        return "the diagnoser deferred to a person"
    rejected = attempt.rejected_by
    if rejected is not None:
        return f"refused ({refused}) by the {rejected.gate} gate: {rejected.message}"
    return f"refused ({refused})"


def _assertion(name: str, want: Any, attempt: HealAttempt, statuses: Mapping[str, tuple[str, str]],
               refused: str | None, defer_accepted: bool) -> Check:  # fmt: skip
    patch = attempt.patch
    if name == "patch_is_valid":
        valid = patch is not None
        return Check(name, valid == want, f"patch is {'valid' if valid else 'missing or invalid'}")
    if name == "patch_applies":
        if defer_accepted:
            return Check(name, True, "deferred (allow_defer: true)")
        detail = "applies" if attempt.applied else _why_not_applied(attempt, refused)
        return Check(name, attempt.applied == want, detail)
    if name == "patch_refused":
        return Check(name, refused == want, f"refusal: {refused or 'none'}")
    if name == "gate_status":
        unknown = ("unknown", f"no such gate (known: {', '.join(statuses)})")
        actual = {gate: statuses.get(gate, unknown) for gate in want}
        wrong = {gate: found for gate, found in actual.items() if found[0] != want[gate]}
        detail = "; ".join(f"{gate}: {status} ({message})" for gate, (status, message) in wrong.items())
        return Check(name, not wrong, detail or "as expected")
    if name == "allow_defer":
        ok = want or not attempt.deferred
        return Check(name, ok, "deferred" if attempt.deferred else "not deferred")
    if name == "root_cause_contains":
        words = [want] if isinstance(want, str) else list(want)
        text = " ".join(filter(None, [patch.root_cause, patch.rationale] if patch else [attempt.reason])).lower()
        hits = [w for w in words if w.lower() in text]
        detail = f"matched {hits}" if hits else f"none of {words} in {text[:160]!r}"
        return Check(name, bool(hits), detail, gating=False)
    if name == "expected_category":
        category = patch.category if patch else None
        return Check(name, category == want, f"category {category!r}", gating=False)
    if name == "max_attempts":
        return Check(name, attempt.attempts <= want, f"{attempt.attempts} attempt(s)", gating=False)
    if name == "min_confidence":
        confidence = patch.confidence if patch else None
        return Check(name, confidence is not None and confidence >= want, f"confidence {confidence}", gating=False)
    return Check(name, False, f"unsupported assertion {name}", unsupported=True)


def stop_reason(healer: str, attempt: HealAttempt, checks: Sequence[Check]) -> str:
    failed = [c for c in checks if c.gating and not c.passed]
    if not failed:
        return "ok"
    unsupported = next((c for c in failed if c.unsupported), None)
    if unsupported is not None:
        return unsupported.detail
    names = {c.name for c in failed}
    if attempt.invalid:
        return "patch invalid"
    if attempt.patch is None and names & {"effect", "patch_is_valid", "patch_applies"}:
        return "no rule" if healer == RULES else "no patch"
    if attempt.deferred and names & {"effect", "patch_applies", "allow_defer"}:
        return "deferred"
    rejected = attempt.rejected_by
    if rejected is not None and names & {"effect", "patch_applies"}:
        return f"gate rejected: {rejected.gate}"
    if "effect" in names:
        return "wrong effect"
    if "no_patch" in names:
        return "expected no patch"
    return "assertion failed: " + ", ".join(sorted(names))
