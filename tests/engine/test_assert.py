"""Assert: every rule passing and failing, actions, and the one-action property."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.modules.assertion import evaluate_assert
from aqueduct_dagster.engine.modules.common import in_session
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.session import run_session

from .conftest import spark_jobs


@pytest.fixture
def observed(people):
    """people plus a fresh timestamp, an old timestamp and a date column."""
    from pyspark.sql import functions as F

    return people.withColumns(
        {
            "seen_at": F.current_timestamp(),
            "loaded_at": F.to_timestamp(F.lit("2020-01-01 00:00:00")),
            "day": F.current_date(),
        }
    )


PASSING = [
    {"type": "min_rows", "min": 4},
    {"type": "max_rows", "max": 4},
    {"type": "not_null", "column": "name"},
    {"type": "null_rate", "column": "city", "max": 0.3},
    {"type": "schema_match", "expected": {"id": "long", "name": "string", "salary": "double"}},
    {"type": "freshness", "column": "seen_at", "max_age_hours": 1},
    {"type": "freshness", "id": "fresh_day", "column": "day", "max_age_hours": 24},
    {"type": "sql", "expr": "SUM(salary) > 0"},
    {"type": "sql_row", "expr": "age >= 18"},
    {"type": "sql_row", "id": "mostly_over_30", "expr": "age > 30", "min_pass_rate": 0.5},
]

FAILING = [
    {"type": "min_rows", "min": 5, "on_fail": "abort"},
    {"type": "max_rows", "max": 3, "on_fail": "warn"},
    {"type": "not_null", "column": "city", "on_fail": "warn", "error_type": "NullKey"},
    {"type": "null_rate", "column": "city", "max": 0.1, "on_fail": "trigger_agent"},
    {"type": "schema_match", "expected": {"id": "int", "gone": "string"}, "on_fail": "quarantine"},
    {
        "type": "freshness",
        "column": "loaded_at",
        "max_age_hours": 1,
        "on_fail": {"action": "webhook", "url": "https://hooks.example/x"},
    },
    {"type": "sql", "expr": "SUM(salary) > 1000", "on_fail": "abort"},
    {"type": "sql_row", "expr": "age > 30", "on_fail": "warn"},
]


def _assert(module, rules):
    return module("Assert", "quality", {"rules": rules}, inputs=("people",))


def test_every_rule_passes_in_one_action(run_spark, module, observed):
    outcome = evaluate_assert(run_spark, _assert(module, PASSING), observed)
    assert outcome.passed and not outcome.blocking, outcome.summary()
    assert outcome.actions == 1
    results = {r.name: r for r in outcome.results}
    assert results["min_rows"].observed == 4
    assert results["null_rate:city"].observed["rate"] == 0.25
    assert results["freshness:seen_at"].observed["age_hours"] < 1
    assert results["mostly_over_30"].observed["pass_rate"] == 0.75
    assert outcome.summary() == "Assert 'quality': all 10 rules passed"


def test_every_rule_fails_with_its_action_kept(run_spark, module, observed):
    outcome = evaluate_assert(run_spark, _assert(module, FAILING), observed)
    results = {r.type: r for r in outcome.results}
    assert not any(r.passed for r in outcome.results)
    assert outcome.blocking
    assert {r.type: r.action for r in outcome.results} == {
        "min_rows": "abort",
        "max_rows": "warn",
        "not_null": "warn",
        "null_rate": "trigger_agent",
        "schema_match": "quarantine",
        "freshness": "webhook",
        "sql": "abort",
        "sql_row": "warn",
    }
    assert {r.type for r in outcome.results if r.blocking} == {"min_rows", "null_rate", "sql"}
    # Messages say what was observed against what was expected.
    assert results["min_rows"].message == "4 rows, expected at least 5"
    assert results["max_rows"].message == "4 rows, expected at most 3"
    assert results["not_null"].observed == {"nulls": 1, "rows": 4}
    assert results["not_null"].error_type == "NullKey"
    assert "0.25" in results["null_rate"].message and "0.1" in results["null_rate"].message
    assert "'id' is bigint, expected int" in results["schema_match"].message
    assert "'gone' is missing" in results["schema_match"].message
    assert results["freshness"].observed["newest"].startswith("2020-01-01")
    assert results["sql"].observed is False
    assert results["sql_row"].observed["violations"] == 1
    summary = outcome.summary()
    assert summary.startswith("Assert 'quality' blocked: 8 of 8 rules failed")
    assert "min_rows [abort]: 4 rows, expected at least 5" in summary


@pytest.mark.parametrize(
    ("action", "blocking"),
    [
        ("abort", True),
        ("trigger_agent", True),
        ("warn", False),
        ("quarantine", False),
        ("webhook", False),
    ],
)
def test_only_abort_and_trigger_agent_block(run_spark, module, people, action, blocking):
    outcome = evaluate_assert(
        run_spark,
        _assert(module, [{"type": "schema_match", "expected": {"id": "int"}, "on_fail": action}]),
        people,
    )
    assert not outcome.passed
    assert outcome.blocking is blocking
    assert outcome.results[0].action == action


def test_aggregate_rules_share_one_spark_job_and_sampling_adds_one(spark, module, observed):
    # Without adaptive execution one action is exactly one job, so jobs count actions.
    session = run_session(spark, {"spark.sql.adaptive.enabled": "false"})
    frame = in_session(session, observed)  # the plan runs under its session's conf
    aggregate_rules = [r for r in PASSING + FAILING if r["type"] != "schema_match"]
    with spark_jobs(session) as jobs:
        outcome = evaluate_assert(session, _assert(module, aggregate_rules), frame)
    assert len(outcome.results) == 16
    assert (len(jobs), outcome.actions) == (1, 1)

    sampled = aggregate_rules + [
        {"type": "null_rate", "column": "city", "max": 1.0, "fraction": 0.5},
        {"type": "null_rate", "column": "name", "max": 0.0, "fraction": 0.9},
    ]
    with spark_jobs(session) as jobs:
        outcome = evaluate_assert(session, _assert(module, sampled), frame)
    assert (len(jobs), outcome.actions) == (2, 2)
    assert outcome.results[-1].observed["sampled"] is True

    with spark_jobs(session) as jobs:
        outcome = evaluate_assert(session, _assert(module, [PASSING[4]]), frame)
    assert (jobs, outcome.actions) == ([], 0)


def test_empty_frame(run_spark, module, observed):
    outcome = evaluate_assert(
        run_spark,
        _assert(
            module,
            [
                {"type": "null_rate", "column": "city", "max": 0.0},
                {"type": "freshness", "column": "seen_at", "max_age_hours": 1},
                {"type": "sql_row", "expr": "age > 0"},
            ],
        ),
        observed.limit(0),
    )
    assert [r.passed for r in outcome.results] == [True, False, True]
    assert "no values" in outcome.results[1].message


def test_assert_module_passes_the_frame_through_without_raising(run_spark, module, people):
    result = execute_module(
        run_spark, _assert(module, [{"type": "min_rows", "min": 10}]), {"people": people}
    )
    assert result.main is people
    assert result.assertion is not None and result.assertion.blocking
    assert result.metadata == {
        "passed": False,
        "blocking": True,
        "failed_rules": ["min_rows"],
        "actions": 1,
    }


@pytest.mark.parametrize(
    ("rule", "condition"),
    [
        ({"type": "not_null", "column": "nme"}, "UNRESOLVED_COLUMN.WITH_SUGGESTION"),
        ({"type": "custom", "fn": "no_such_quality_module.check"}, "AQ_ASSERT_CUSTOM_FN"),
        ({"type": "schema_match", "expected": {"id": "hugeint"}}, "AQ_UNKNOWN_TYPE"),
    ],
)
def test_rules_that_cannot_be_evaluated_fail_the_module(run_spark, module, people, rule, condition):
    with pytest.raises(ModuleFailed) as caught:
        evaluate_assert(run_spark, _assert(module, [rule]), people)
    assert caught.value.error.condition == condition
    assert caught.value.module_id == "quality"


# --------------------------------------------------------------------------- custom rules

#: A quality module beside the Blueprint; every call appends a line to calls.txt beside it.
QUALITY = """
from pathlib import Path

CALLS = Path(__file__).with_name("calls.txt")


def _called(name):
    with CALLS.open("a") as calls:
        calls.write(name + "\\n")


def adults_only(df):
    _called("adults_only")
    minors = df.filter("age < 30")
    return {"passed": minors.count() == 0, "message": "people under 30 present",
            "quarantine_df": minors}


def enough_cities(df):
    _called("enough_cities")
    return {"passed": df.select("city").distinct().count() >= 2}


def not_a_verdict(df):
    return df.count()


def broken(df):
    raise ValueError("the author's bug")
"""


@pytest.fixture
def quality_module(tmp_path):
    """Write the quality module as `<name>.py` beside a Blueprint file; returns a builder of
    Assert modules located in that Blueprint (as the compiler locates them)."""
    from aqueduct_dagster.blueprint.manifest import Location

    from .conftest import build_module

    def build(name: str, rules: list[dict]):
        (tmp_path / f"{name}.py").write_text(QUALITY)
        built = build_module("Assert", "quality", {"rules": rules}, inputs=("people",))
        return built.model_copy(update={"location": Location(file=str(tmp_path / "bp.yml"), line=3)})

    return build


def _calls(tmp_path) -> list[str]:
    path = tmp_path / "calls.txt"
    return path.read_text().split() if path.exists() else []


def test_a_custom_rule_runs_the_function_beside_the_blueprint(run_spark, quality_module, people, tmp_path):
    rules = [
        {"type": "custom", "fn": "quality_a.enough_cities"},
        {"type": "custom", "id": "adults", "fn": "quality_a.adults_only", "on_fail": "warn",
         "error_type": "Minors"},
    ]  # fmt: skip
    outcome = evaluate_assert(run_spark, quality_module("quality_a", rules), people)

    first, second = outcome.results
    assert (first.name, first.passed, first.observed) == ("custom", True, {"passed": True})
    assert first.message == "quality_a.enough_cities(df) says pass"
    assert (second.name, second.passed, second.action) == ("adults", False, "warn")
    assert second.message == "people under 30 present" and second.error_type == "Minors"
    assert not outcome.blocking  # warn lets the data through, as for any rule
    assert _calls(tmp_path) == ["enough_cities", "adults_only"]


def test_a_failing_custom_rule_with_abort_blocks(run_spark, quality_module, people):
    rule = {"type": "custom", "fn": "quality_b.adults_only"}
    outcome = evaluate_assert(run_spark, quality_module("quality_b", [rule]), people)
    assert outcome.blocking and outcome.failed[0].action == "abort"


def test_custom_quarantine_moves_its_rows_once_and_counts_them(spark, quality_module, people, tmp_path):
    """The function's rows leave `main` for the spillway; a row a column rule took already
    is not moved twice; spillway_rate sees every quarantined row; each function runs once."""
    session = run_session(spark, {"spark.sql.adaptive.enabled": "false"})
    frame = in_session(session, people)
    rules = [
        {"type": "not_null", "column": "city", "on_fail": "quarantine"},
        {"type": "custom", "id": "adults", "fn": "quality_c.adults_only", "on_fail": "quarantine"},
        {"type": "spillway_rate", "max": 0.4},
    ]
    with spark_jobs(session) as jobs:
        result = execute_module(session, quality_module("quality_c", rules), {"people": frame})
    outcome = result.assertion
    assert _calls(tmp_path) == ["adults_only"]
    # adults_only's own count, the rules' one aggregate, counting the custom rule's rows.
    assert outcome.actions == 2 and len(jobs) == 3

    kept = sorted(r.id for r in result.outputs["main"].collect())
    spilled = {r.id: (r._aq_error_rule, r._aq_error_type, r._aq_error_message)
               for r in result.outputs["spillway"].collect()}  # fmt: skip
    assert kept == [1, 4]  # bob: no city (not_null first); cy: 27
    assert spilled == {
        2: ("not_null:city", "not_null", "'city' is null"),
        3: ("adults", "custom", "people under 30 present"),
    }
    results = {r.name: r for r in outcome.results}
    assert results["adults"].observed == {"passed": False, "quarantined": 1}
    assert outcome.quarantined == result.metadata["quarantined"] == 2
    assert results["spillway_rate"].observed["quarantined"] == 2
    assert not results["spillway_rate"].passed  # 2 of 4 rows, more than 0.4


@pytest.mark.parametrize(
    ("fn", "condition", "words"),
    [
        ("quality_d.not_a_verdict", "AQ_ASSERT_CUSTOM_RESULT", "returned a int, not a dict"),
        ("quality_d.broken", "AQ_ASSERT_CUSTOM_FAILED", "raised ValueError: the author's bug"),
        ("quality_d.adult_only", "AQ_ASSERT_CUSTOM_FN", "did you mean 'adults_only'"),
        ("adults_only", "AQ_ASSERT_CUSTOM_FN", "does not name a module and a member"),
    ],
)
def test_a_custom_rule_that_cannot_judge_names_its_function(run_spark, quality_module, people, fn, condition, words):
    rule = {"type": "custom", "id": "mine", "fn": fn}
    with pytest.raises(ModuleFailed) as caught:
        evaluate_assert(run_spark, quality_module("quality_d", [rule]), people)
    assert caught.value.error.condition == condition
    assert "rule 'mine'" in caught.value.error.message and words in caught.value.error.message


def test_every_rule_type_has_its_required_keys_and_a_planner():
    """The model admits a rule type only with its required keys (checked when a Blueprint
    loads), and the engine evaluates every type the model admits (custom rules by their own
    function, the others by a planner of the shared aggregate)."""
    from typing import get_args

    from aqueduct_dagster.blueprint.models import RULE_REQUIRED_KEYS, AssertRuleType
    from aqueduct_dagster.engine.modules.assertion import _PLANNERS

    assert set(get_args(AssertRuleType)) == set(RULE_REQUIRED_KEYS) == {*_PLANNERS, "custom"}
