"""Junction (every mode, `_else_`, the unrouted spillway) and Funnel (every mode, both
schema checks), on real Spark."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.modules.spillway import ERROR_COLUMNS
from aqueduct_dagster.engine.registry import execute_module

from .conftest import spark_jobs


def _names(frame):
    return sorted(r.name for r in frame.select("name").collect())


@pytest.fixture
def tickets(run_spark):
    """The rows of the gallery's junction aqtest, plus one ticket without a status."""
    return run_spark.createDataFrame(
        [(1, "NEW"), (2, "PENDING"), (3, "CLOSED"), (4, "RESOLVED"), (5, None)],
        "ticket_id BIGINT, status STRING",
    )


def _junction(module, config):
    return module("Junction", "route", config, inputs=("raw",))


# --------------------------------------------------------------------------- Junction


def test_conditional_routes_like_the_gallery_aqtest_and_else_takes_the_rest(
    run_spark, module, tickets
):
    junction = _junction(
        module,
        {
            "mode": "conditional",
            "branches": [
                {"id": "active", "condition": "status IN ('NEW', 'PENDING')"},
                {"id": "other", "condition": "_else_"},
            ],
        },
    )
    with spark_jobs(run_spark) as jobs:
        result = execute_module(run_spark, junction, {"raw": tickets})
    assert jobs == [], "a Junction only builds filters"
    assert list(result.outputs) == ["active", "other", "spillway"]
    ids = {port: sorted(r.ticket_id for r in f.collect()) for port, f in result.outputs.items()}
    # A null status matches no condition: it goes to `_else_`, not nowhere.
    assert ids == {"active": [1, 2], "other": [3, 4, 5], "spillway": []}
    assert result.metadata == {"mode": "conditional", "branches": ["active", "other"]}


def test_conditional_branches_overlap_and_else_excludes_every_match(run_spark, module, people):
    junction = _junction(
        module,
        {
            "branches": [  # mode defaults to conditional
                {"id": "oslo", "condition": "city = 'oslo'"},
                {"id": "rest", "condition": "_else_"},  # declared in the middle on purpose
                {"id": "senior", "condition": "age >= 38"},
            ]
        },
    )
    outputs = execute_module(run_spark, junction, {"p": people}).outputs
    assert _names(outputs["oslo"]) == ["ann", "dee"]
    assert _names(outputs["senior"]) == ["bob", "dee"], "dee matches two branches: both get her"
    assert _names(outputs["rest"]) == ["cy"]


def test_conditional_without_else_spills_the_unrouted_rows(run_spark, module, people):
    junction = _junction(module, {"branches": [{"id": "oslo", "condition": "city = 'oslo'"}]})
    spilled = execute_module(run_spark, junction, {"p": people}).outputs["spillway"]
    assert spilled.columns[-5:] == list(ERROR_COLUMNS)
    rows = sorted(spilled.collect(), key=lambda r: r.id)
    assert [(r.name, r._aq_error_type, r._aq_error_module) for r in rows] == [
        ("bob", "JunctionUnrouted", "route"),
        ("cy", "JunctionUnrouted", "route"),
    ]
    assert rows[0]._aq_error_message == "row matches no branch of Junction 'route'"


def test_broadcast_gives_every_branch_every_row(run_spark, module, people):
    junction = _junction(module, {"mode": "broadcast", "branches": [{"id": "a"}, {"id": "b"}]})
    outputs = execute_module(run_spark, junction, {"p": people}).outputs
    assert list(outputs) == ["a", "b"], "no main, no spillway"
    assert outputs["a"] is people and outputs["b"] is people


def test_partition_matches_the_key_to_each_value_and_else(run_spark, module, people):
    junction = _junction(
        module,
        {
            "mode": "partition",
            "partition_key": "city",
            "branches": [
                {"id": "oslo"},  # no value: the branch id is the value
                {"id": "south", "value": "rome"},
                {"id": "unknown", "value": "_else_"},
            ],
        },
    )
    result = execute_module(run_spark, junction, {"p": people})
    assert _names(result.outputs["oslo"]) == ["ann", "dee"]
    assert _names(result.outputs["south"]) == ["cy"]
    assert _names(result.outputs["unknown"]) == ["bob"], "a null key belongs to _else_"
    assert result.outputs["spillway"].count() == 0
    assert result.metadata["partition_key"] == "city"


def test_junction_config_errors_name_the_key(run_spark, module, people):
    with pytest.raises(ModuleFailed) as no_condition:
        execute_module(run_spark, _junction(module, {"branches": [{"id": "x"}]}), {"p": people})
    assert no_condition.value.error.condition == "AQ_MISSING_CONFIG"
    assert "branch 'x' needs a `condition`" in str(no_condition.value)

    with pytest.raises(ModuleFailed) as no_key:
        execute_module(
            run_spark,
            _junction(module, {"mode": "partition", "branches": [{"id": "x"}]}),
            {"p": people},
        )
    assert "config key 'partition_key' is required for mode: partition" in str(no_key.value)


# --------------------------------------------------------------------------- Funnel


@pytest.fixture
def sources(run_spark):
    """The gallery funnel aqtest's two sources; b repeats one of a's rows."""
    a = run_spark.createDataFrame([(1, "Alice"), (2, "Bob")], "id BIGINT, name STRING")
    b = run_spark.createDataFrame([(3, "Charlie"), (2, "Bob")], "id BIGINT, name STRING")
    return a, b


def _funnel(module, config, inputs=("a", "b")):
    return module("Funnel", "merge", config, inputs=inputs)


def _rows(frame):
    return [tuple(r) for r in frame.collect()]


def test_union_all_keeps_duplicates_and_follows_config_inputs_order(run_spark, module, sources):
    a, b = sources
    funnel = _funnel(module, {"mode": "union_all", "inputs": ["b", "a"]})
    with spark_jobs(run_spark) as jobs:
        result = execute_module(run_spark, funnel, {"a": a, "b": b})
    assert jobs == []
    assert result.metadata["inputs"] == ["b", "a"]
    assert result.metadata["schema_check"] == "strict"
    assert _rows(result.main) == [(3, "Charlie"), (2, "Bob"), (1, "Alice"), (2, "Bob")]


def test_union_removes_duplicates(run_spark, module, sources):
    a, b = sources
    merged = execute_module(run_spark, _funnel(module, {"mode": "union"}), {"a": a, "b": b}).main
    assert sorted(_rows(merged)) == [(1, "Alice"), (2, "Bob"), (3, "Charlie")]


def test_strict_schema_check_names_the_input_and_what_differs(run_spark, module, sources):
    a, _ = sources
    b = run_spark.createDataFrame([(3, "cy")], "id INT, nick STRING")
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, _funnel(module, {"mode": "union_all"}), {"a": a, "b": b})
    error = caught.value.error
    assert error.condition == "AQ_FUNNEL_SCHEMA_MISMATCH"
    assert error.message == (
        "[AQ_FUNNEL_SCHEMA_MISMATCH] input 'b' (input 2) does not match the schema of 'a' "
        "(input 1): missing column(s) name; extra column(s) nick; "
        "different type(s): id int (in 'a': bigint)"
    )
    assert error.message_parameters["input"] == "b" and error.message_parameters["extra"] == "nick"
    assert "schema_check: permissive" in caught.value.hint


def test_permissive_schema_check_fills_missing_columns_with_nulls(run_spark, module, sources):
    a, _ = sources
    b = run_spark.createDataFrame([(3, "x@y")], "id BIGINT, email STRING")
    funnel = _funnel(module, {"mode": "union_all", "schema_check": "permissive"})
    merged = execute_module(run_spark, funnel, {"a": a, "b": b}).main
    assert merged.columns == ["id", "name", "email"]
    assert _rows(merged) == [(1, "Alice", None), (2, "Bob", None), (3, None, "x@y")]


def test_coalesce_takes_the_first_non_null_per_column_by_position(run_spark, module):
    primary = run_spark.createDataFrame(
        [(1, "ann", None), (2, None, "b@x"), (3, None, None)],
        "id BIGINT, name STRING, email STRING",
    )
    fallback = run_spark.createDataFrame(
        [(10, "ANN", "a@fallback"), (20, "BOB", "b@fallback"), (30, None, "c@fallback"),
         (40, "DEE", None)],
        "id BIGINT, name STRING, email STRING",
    )  # fmt: skip
    funnel = _funnel(module, {"mode": "coalesce", "inputs": ["primary", "fallback"]},
                     inputs=("fallback", "primary"))  # fmt: skip
    merged = execute_module(run_spark, funnel, {"fallback": fallback, "primary": primary}).main
    assert merged.columns == ["id", "name", "email"]
    assert _rows(merged) == [
        (1, "ann", "a@fallback"),
        (2, "BOB", "b@x"),
        (3, None, "c@fallback"),
        (40, "DEE", None),  # past the primary's last row: the fallback's row is kept
    ]


def test_coalesce_strict_wants_one_type_per_shared_column(run_spark, module, sources):
    a, _ = sources
    b = run_spark.createDataFrame([("9", "x")], "id STRING, name STRING")
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, _funnel(module, {"mode": "coalesce"}), {"a": a, "b": b})
    assert caught.value.error.condition == "AQ_FUNNEL_SCHEMA_MISMATCH"
    assert "input 'b' has column 'id' as string, but 'a' has it as bigint" in str(caught.value)


def test_zip_puts_columns_side_by_side_by_position(run_spark, module, sources):
    a, _ = sources
    scores = run_spark.createDataFrame([(0.5,), (0.9,)], "score DOUBLE")
    merged = execute_module(run_spark, _funnel(module, {"mode": "zip"}), {"a": a, "b": scores})
    assert merged.main.columns == ["id", "name", "score"]
    assert _rows(merged.main) == [(1, "Alice", 0.5), (2, "Bob", 0.9)]

    with pytest.raises(ModuleFailed) as clash:
        execute_module(run_spark, _funnel(module, {"mode": "zip"}), {"a": a, "b": a})
    assert clash.value.error.condition == "AQ_FUNNEL_COLUMN_CONFLICT"
    assert "'id' is in both 'a' and 'b'" in str(clash.value)


def test_funnel_needs_two_inputs_and_known_config_inputs(run_spark, module, sources):
    a, b = sources
    with pytest.raises(ModuleFailed) as one:
        execute_module(run_spark, _funnel(module, {}, inputs=("a",)), {"a": a})
    assert one.value.error.condition == "AQ_INPUT_COUNT"
    with pytest.raises(ModuleFailed) as unknown:
        execute_module(run_spark, _funnel(module, {"inputs": ["aa", "b"]}), {"a": a, "b": b})
    assert "funnel input 'aa' is not an input of this module (did you mean 'a'?)" in str(
        unknown.value
    )
