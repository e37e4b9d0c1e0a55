"""Assert quarantine -> spillway: the split, the `_aq_error_*` columns, the counts from the one
aggregate action, `spillway_rate`, and spillway `error_types` filtering."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.modules.assertion import evaluate_assert, split_quarantine
from aqueduct_dagster.engine.modules.spillway import ERROR_COLUMNS, filter_spillway
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.session import run_session

from .conftest import spark_jobs


@pytest.fixture
def counted(spark):
    """A run session without adaptive execution: one action is then exactly one Spark job."""
    return run_session(spark, {"spark.sql.adaptive.enabled": "false"})


@pytest.fixture
def orders(counted):
    """The gallery's assert-quarantine aqtest rows, plus an order without an amount."""
    return counted.createDataFrame(
        [(1, 5.0), (2, 12.5), (3, 9.99), (4, 45.0), (5, None)],
        "order_id BIGINT, amount DOUBLE",
    )


def _assert(module, rules):
    return module("Assert", "quality", {"rules": rules}, inputs=("orders",))


def _ids(frame):
    return sorted(r.order_id for r in frame.collect())


def test_quarantine_splits_rows_with_error_columns_in_one_action(counted, module, orders):
    quality = _assert(
        module, [{"type": "sql_row", "expr": "amount >= 10", "on_fail": "quarantine"}]
    )
    with spark_jobs(counted) as jobs:
        result = execute_module(counted, quality, {"orders": orders})
    assert len(jobs) == 1, "rule counts and quarantine count come from the one agg"
    assert result.assertion.actions == 1

    assert _ids(result.outputs["main"]) == [2, 4]  # what the gallery aqtest expects
    spilled = result.outputs["spillway"]
    assert spilled.columns == ["order_id", "amount", *ERROR_COLUMNS]
    assert dict(spilled.dtypes)["_aq_error_ts"] == "timestamp"
    rows = sorted(spilled.collect(), key=lambda r: r.order_id)
    assert [r.order_id for r in rows] == [1, 3, 5], "a null amount breaks the rule too"
    first = rows[0]
    assert (first._aq_error_module, first._aq_error_rule, first._aq_error_type) == (
        "quality", "sql_row", "sql_row",
    )  # fmt: skip
    assert first._aq_error_message == "row breaks `amount >= 10`"
    assert all(r._aq_error_ts is not None for r in rows)

    outcome = result.assertion
    (rule,) = outcome.results
    assert not rule.passed and not outcome.blocking and rule.action == "quarantine"
    assert rule.observed == {"violations": 3, "rows": 5, "pass_rate": 0.4, "quarantined": 3}
    assert outcome.quarantined == 3
    assert result.metadata["quarantined"] == 3


def test_a_row_breaking_two_rules_is_quarantined_once_under_the_first(counted, module, orders):
    rules = [
        {"type": "not_null", "column": "amount", "on_fail": "quarantine",
         "error_type": "MissingAmount"},
        {"type": "sql_row", "id": "big_enough", "expr": "amount >= 9", "on_fail": "quarantine"},
        {"type": "min_rows", "min": 1},
    ]  # fmt: skip
    with spark_jobs(counted) as jobs:
        outcome = evaluate_assert(counted, _assert(module, rules), orders)
    assert len(jobs) == 1 and outcome.actions == 1
    results = {r.name: r for r in outcome.results}
    assert results["not_null:amount"].observed == {"nulls": 1, "rows": 5, "quarantined": 1}
    assert results["big_enough"].observed["violations"] == 2  # order 1 and the null amount
    assert outcome.quarantined == 2, "rows, not violations: order 5 breaks both rules"
    assert outcome.passed is False and outcome.blocking is False
    assert outcome.to_dict()["quarantined"] == 2

    passed, quarantined = split_quarantine(_assert(module, rules), orders)
    assert _ids(passed) == [2, 3, 4]
    spilled = {
        r.order_id: (r._aq_error_rule, r._aq_error_type, r._aq_error_message)
        for r in quarantined.collect()
    }
    assert spilled == {
        1: ("big_enough", "sql_row", "row breaks `amount >= 9`"),
        5: ("not_null:amount", "MissingAmount", "'amount' is null"),
    }


def test_without_quarantine_rules_the_frame_passes_through_untouched(counted, module, orders):
    quality = _assert(module, [{"type": "not_null", "column": "amount", "on_fail": "warn"}])
    assert split_quarantine(quality, orders) == (orders, None)
    result = execute_module(counted, quality, {"orders": orders})
    assert list(result.outputs) == ["main"] and result.main is orders
    assert result.assertion.quarantined is None
    assert "quarantined" not in result.metadata


def test_quarantine_on_an_aggregate_rule_only_warns(counted, module, orders):
    quality = _assert(module, [{"type": "min_rows", "min": 10, "on_fail": "quarantine"}])
    result = execute_module(counted, quality, {"orders": orders})
    assert list(result.outputs) == ["main"], "no rows to move for an aggregate rule"
    assert not result.assertion.passed and not result.assertion.blocking


def test_spillway_rate_judges_the_quarantined_share_in_the_same_action(counted, module, orders):
    rules = [
        {"type": "sql_row", "expr": "amount >= 10", "on_fail": "quarantine"},
        {"type": "spillway_rate", "max": 0.5, "on_fail": "abort"},
    ]
    with spark_jobs(counted) as jobs:
        outcome = evaluate_assert(counted, _assert(module, rules), orders)
    assert len(jobs) == 1
    rate = outcome.results[1]
    assert not rate.passed and outcome.blocking
    assert rate.observed == {"quarantined": 3, "rows": 5, "rate": 0.6}
    assert rate.message == "3 of 5 rows quarantined (rate 0.6), expected at most 0.5"

    lenient = evaluate_assert(
        counted, _assert(module, [{"type": "spillway_rate", "max": 0.0}]), orders
    )
    assert lenient.passed, "no quarantine rules: nothing is quarantined"


def test_filter_spillway_keeps_the_named_error_types(counted, module, orders):
    rules = [
        {"type": "not_null", "column": "amount", "on_fail": "quarantine",
         "error_type": "MissingAmount"},
        {"type": "sql_row", "expr": "amount >= 10", "on_fail": "quarantine"},
    ]  # fmt: skip
    spilled = execute_module(counted, _assert(module, rules), {"orders": orders}).outputs[
        "spillway"
    ]
    assert _ids(filter_spillway(spilled, ["MissingAmount"])) == [5]
    assert _ids(filter_spillway(spilled, ["sql_row", "Other"])) == [1, 3]
    assert filter_spillway(spilled, []) is spilled and filter_spillway(spilled, None) is spilled


def test_channel_spillway_rows_carry_the_same_error_columns(run_spark, module, people):
    channel = module(
        "Channel", "step", {"op": "select", "columns": ["id", "city"],
                            "spillway_condition": "city IS NULL"}, inputs=("p",)
    )  # fmt: skip
    spilled = execute_module(run_spark, channel, {"p": people}).outputs["spillway"]
    assert spilled.columns == ["id", "city", *ERROR_COLUMNS]
    (row,) = spilled.collect()
    assert (row.id, row._aq_error_type, row._aq_error_rule) == (
        2,
        "SpillwayCondition",
        "city IS NULL",
    )
    assert row._aq_error_message == "row matches spillway_condition `city IS NULL`"
    assert row._aq_error_ts is not None
    assert filter_spillway(spilled, ["MissingAmount"]).count() == 0
