"""Channel: every op, lazily, plus the errors a Blueprint author meets."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint.models import ChannelConfig
from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.registry import execute_module

from .conftest import partitions_of, spark_jobs


@pytest.fixture
def cities(run_spark):
    return run_spark.createDataFrame(
        [("oslo", "NO"), ("rome", "IT"), ("lima", "PE")], "city STRING, country STRING"
    )


def _channel(spark, module, config, inputs):
    channel = module("Channel", "step", config, inputs=tuple(inputs))
    return execute_module(spark, channel, inputs)


def _rows(frame, *columns):
    return sorted(tuple(row[c] for c in columns) for row in frame.collect())


def test_sql_sees_inputs_by_alias_and_leaves_no_views(run_spark, module, people, cities):
    result = _channel(
        run_spark,
        module,
        {
            "query": "SELECT p.name, c.country FROM people p JOIN cities c ON p.city = c.city",
        },
        {"people": people, "cities": cities},
    )
    assert result.metadata["op"] == "sql" and "JOIN cities" in result.metadata["sql"]
    assert not run_spark.catalog.tableExists("people")
    assert not run_spark.catalog.tableExists("cities")
    # The analysed plan no longer needs the views.
    assert _rows(result.main, "name", "country") == [("ann", "NO"), ("cy", "IT"), ("dee", "NO")]


def test_sql_single_input_is_also_visible_as_input_view(run_spark, module, people):
    result = _channel(
        run_spark,
        module,
        {"op": "sql", "query": "SELECT count(*) AS n FROM __input__"},
        {"people": people},
    )
    assert result.main.collect()[0].n == 4


def test_sql_takes_frames_built_in_another_session(spark, run_spark, module):
    foreign = spark.createDataFrame([(1,), (2,)], "id INT")
    result = _channel(
        run_spark, module, {"query": "SELECT sum(id) AS s FROM numbers"}, {"numbers": foreign}
    )
    assert result.main.collect()[0].s == 3


def test_filter_select_rename_cast_are_lazy(run_spark, module, people):
    with spark_jobs(run_spark) as jobs:
        adults = _channel(
            run_spark, module, {"op": "filter", "condition": "age > 30"}, {"p": people}
        ).main
        oslo = _channel(
            run_spark, module, {"op": "filter", "expr": "city = 'oslo'"}, {"p": adults}
        ).main
        picked = _channel(
            run_spark,
            module,
            {"op": "select", "columns": ["id", "upper(name) AS name", "salary"]},
            {"p": oslo},
        ).main
        renamed = _channel(
            run_spark, module, {"op": "rename", "columns": {"salary": "annual_comp"}}, {"p": picked}
        ).main
        cast = _channel(
            run_spark,
            module,
            {"op": "cast", "columns": {"annual_comp": "long", "id": "string"}},
            {"p": renamed},
        )
    assert jobs == []
    assert cast.metadata["columns"] == [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "annual_comp", "type": "bigint"},
    ]
    assert _rows(cast.main, "id", "name", "annual_comp") == [("1", "ANN", 100), ("4", "DEE", 120)]


def test_select_accepts_cols_and_a_comma_separated_string(run_spark, module, people):
    listed = _channel(run_spark, module, {"op": "select", "cols": ["name"]}, {"p": people})
    text = _channel(
        run_spark,
        module,
        {"op": "select", "columns": "name, coalesce(city, 'n/a') AS city"},
        {"p": people},
    )
    assert listed.main.columns == ["name"]
    assert ("bob", "n/a") in _rows(text.main, "name", "city")


def test_rename_of_an_unknown_column_fails_instead_of_doing_nothing(run_spark, module, people):
    with pytest.raises(ModuleFailed) as caught:
        _channel(run_spark, module, {"op": "rename", "columns": {"salry": "pay"}}, {"p": people})
    assert caught.value.error.condition == "UNRESOLVED_COLUMN.WITH_SUGGESTION"


def test_deduplicate_by_keys_and_whole_rows(run_spark, module):
    frame = run_spark.createDataFrame([(1, "a"), (1, "a"), (1, "b"), (2, "b")], "k INT, v STRING")
    by_key = _channel(run_spark, module, {"op": "deduplicate", "key": "k"}, {"f": frame})
    by_cols = _channel(run_spark, module, {"op": "deduplicate", "cols": ["v"]}, {"f": frame})
    whole = _channel(run_spark, module, {"op": "deduplicate"}, {"f": frame})
    assert by_key.main.count() == 2
    assert by_cols.main.count() == 2
    assert _rows(whole.main, "k", "v") == [(1, "a"), (1, "b"), (2, "b")]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"condition": "people.city = cities.city"}, [("ann", "NO"), ("cy", "IT"), ("dee", "NO")]),
        (
            {
                "condition": "people.city = cities.city",
                "join_type": "left",
                "broadcast_side": "right",
            },
            [("ann", "NO"), ("bob", None), ("cy", "IT"), ("dee", "NO")],
        ),
        ({"key": "city", "join_type": "semi"}, [("ann",), ("cy",), ("dee",)]),
        (
            {
                "left": "people",
                "right": "cities",
                "condition": "people.city = cities.city",
                "join_type": "anti",
            },
            [("bob",)],
        ),
    ],
)
def test_join(run_spark, module, people, cities, config, expected):
    result = _channel(
        run_spark, module, {"op": "join", **config}, {"people": people, "cities": cities}
    )
    columns = ("name", "country") if "country" in result.main.columns else ("name",)
    assert _rows(result.main, *columns) == expected


def test_join_sides_by_name_and_cross(run_spark, module, people, cities):
    swapped = _channel(
        run_spark,
        module,
        {
            "op": "join",
            "left": "cities",
            "right": "people",
            "condition": "cities.city = people.city",
            "join_type": "left",
        },
        {"people": people, "cities": cities},
    )
    assert _rows(swapped.main, "country", "name")[-1] == ("PE", None)
    cross = _channel(
        run_spark,
        module,
        {"op": "join", "join_type": "cross"},
        {"people": people, "cities": cities},
    )
    assert cross.main.count() == 12


def test_union_by_name_and_with_missing_columns(run_spark, module, people):
    first = people.select("id", "name")
    second = people.select("name", "id")
    narrow = people.select("id")
    union = _channel(run_spark, module, {"op": "union"}, {"a": first, "b": second})
    assert union.main.count() == 8 and union.main.columns == ["id", "name"]
    loose = _channel(
        run_spark, module, {"op": "union", "allow_missing_columns": True}, {"a": first, "b": narrow}
    )
    assert loose.main.filter("name IS NULL").count() == 4
    with pytest.raises(ModuleFailed):
        _channel(run_spark, module, {"op": "union"}, {"a": first, "b": narrow})


def test_sort_by_text_and_list(run_spark, module, people):
    text = _channel(run_spark, module, {"op": "sort", "order_by": "age DESC"}, {"p": people})
    assert [r.age for r in text.main.collect()] == [45, 38, 31, 27]
    listed = _channel(
        run_spark,
        module,
        {"op": "sort", "order_by": ["city ASC NULLS LAST", "name desc"]},
        {"p": people},
    )
    assert [r.name for r in listed.main.collect()] == ["dee", "ann", "cy", "bob"]


def test_repartition_coalesce_and_cache(run_spark, module, people):
    spread = _channel(
        run_spark, module, {"op": "repartition", "num_partitions": 3}, {"p": people}
    ).main
    assert partitions_of(spread) == 3
    by_city = _channel(
        run_spark,
        module,
        {"op": "repartition", "num_partitions": 2, "cols": ["city"]},
        {"p": people},
    ).main
    assert partitions_of(by_city) == 2
    merged = _channel(run_spark, module, {"op": "coalesce", "num": 1}, {"p": spread}).main
    assert partitions_of(merged) == 1
    cached = _channel(
        run_spark, module, {"op": "cache", "storage_level": "MEMORY_ONLY_SER"}, {"p": people}
    )
    try:
        assert cached.main.storageLevel.useMemory and not cached.main.storageLevel.useDisk
        assert cached.metadata["persisted"] is True
    finally:
        cached.main.unpersist()


def test_spillway_condition_splits_rows_onto_two_ports(run_spark, module, people):
    result = _channel(
        run_spark,
        module,
        {"op": "filter", "condition": "age > 30", "spillway_condition": "city IS NULL"},
        {"p": people},
    )
    assert _rows(result.outputs["main"], "name") == [("ann",), ("dee",)]
    spilled = result.outputs["spillway"].collect()
    assert [(r.name, r._aq_error_type, r._aq_error_module) for r in spilled] == [
        ("bob", "SpillwayCondition", "step")
    ]


def test_missing_and_unknown_ops_are_clear_errors(run_spark, module, people):
    with pytest.raises(ModuleFailed) as missing:
        _channel(run_spark, module, {}, {"p": people})
    assert missing.value.error.condition == "AQ_CHANNEL_OP_MISSING"
    channel = module("Channel", "step", {}, inputs=("p",))
    bad = channel.model_copy(
        update={
            "spec": channel.spec.model_copy(
                update={"config": ChannelConfig.model_construct(op="filtr")}
            )
        }
    )
    with pytest.raises(ModuleFailed) as unknown:
        execute_module(run_spark, bad, {"p": people})
    assert unknown.value.error.condition == "AQ_CHANNEL_OP_UNKNOWN"
    assert "did you mean 'filter'" in str(unknown.value)


def test_single_input_op_with_two_inputs_and_missing_keys(run_spark, module, people):
    with pytest.raises(ModuleFailed) as two:
        _channel(
            run_spark, module, {"op": "filter", "condition": "true"}, {"a": people, "b": people}
        )
    assert two.value.error.condition == "AQ_INPUT_COUNT"
    with pytest.raises(ModuleFailed) as no_condition:
        _channel(run_spark, module, {"op": "filter"}, {"a": people})
    assert no_condition.value.error.condition == "AQ_MISSING_CONFIG"
    assert no_condition.value.error.message_parameters["key"] == "condition"
