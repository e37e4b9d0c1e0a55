"""Ingress: every format, reader options, schema hints, secrets, missing paths."""

from __future__ import annotations

import json

import pytest

from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.modules.ingress import check_schema_hint
from aqueduct_dagster.engine.registry import execute_module

from .conftest import delta_table, spark_jobs


@pytest.fixture
def orders_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id;customer;amount\n1;ann;19.99\n2;bob;5.0\n3;cy;7.5\n")
    return path


def _read(spark, module, config, module_id="source"):
    return execute_module(spark, module("Ingress", module_id, config), {})


def test_csv_with_options_shortcuts_and_a_passing_hint(run_spark, module, orders_csv):
    result = _read(
        run_spark,
        module,
        {
            "format": "csv",
            "path": str(orders_csv),
            "options": {"sep": ";"},
            "header": True,
            "infer_schema": True,
            "schema_hint": {"order_id": "integer", "customer": "string", "amount": "double"},
        },
    )
    frame = result.main
    assert [tuple(r) for r in frame.orderBy("order_id").collect()][0] == (1, "ann", 19.99)
    assert result.metadata["format"] == "csv"
    assert result.metadata["columns"][2] == {"name": "amount", "type": "double"}
    assert result.metadata["option_keys"] == ["header", "inferSchema", "sep"]


def test_csv_hint_type_mismatch_names_column_expected_and_actual(run_spark, module, orders_csv):
    with pytest.raises(ModuleFailed) as caught:
        _read(
            run_spark,
            module,
            {
                "format": "csv",
                "path": str(orders_csv),
                "options": {"sep": ";"},
                "header": True,
                "infer_schema": True,
                "schema_hint": {"order_id": "int", "customer": "string", "amount": "int"},
            },
            module_id="orders_raw",
        )
    error = caught.value.error
    assert error.condition == "AQ_SCHEMA_HINT_MISMATCH"
    assert error.message_parameters["kind"] == "type"
    assert (
        error.message_parameters["column"],
        error.message_parameters["expected"],
        error.message_parameters["actual"],
    ) == ("amount", "int", "double")
    assert caught.value.module_id == "orders_raw"
    assert "'double'" in caught.value.hint


def _source(spark, fmt, folder):
    """Data in `fmt` whose reading needs the option returned with it; the expected hint."""
    frame = spark.createDataFrame([(1, "ann"), (2, "bob")], "id BIGINT, name STRING")
    path = str(folder / fmt)
    if fmt == "csv":
        frame.write.option("sep", "|").option("header", True).csv(path)
        return path, {"sep": "|"}, {"id": "int", "name": "string"}
    if fmt == "json":
        frame.write.json(path)
        return path, {"primitivesAsString": True}, {"id": "string", "name": "string"}
    if fmt == "parquet":
        frame.write.parquet(f"{path}/part=1")
        frame.selectExpr("id", "upper(name) AS label").write.parquet(f"{path}/part=2")
        return path, {"mergeSchema": True}, {"id": "long", "name": "string", "label": "string"}
    frame.write.format("delta").save(path)
    frame.filter("id = 1").write.format("delta").mode("overwrite").save(path)
    return path, {"versionAsOf": 0}, {"id": "bigint", "name": "string"}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet", "delta"])
def test_each_format_reads_with_its_options_and_checks_a_hint(run_spark, module, tmp_path, fmt):
    path, options, hint = _source(run_spark, fmt, tmp_path)
    config = {"format": fmt, "path": path, "options": options, "schema_hint": hint}
    if fmt == "csv":
        config.update(header=True, infer_schema=True)
    result = _read(run_spark, module, config)
    # Each expectation holds only if the option reached the reader.
    ids = sorted(row.id for row in result.main.collect())
    assert ids == (["1", "2"] if fmt == "json" else [1, 1, 2, 2] if fmt == "parquet" else [1, 2])
    assert result.metadata["format"] == fmt

    with pytest.raises(ModuleFailed) as caught:
        _read(run_spark, module, {**config, "schema_hint": {**hint, "name": "int"}})
    parameters = caught.value.error.message_parameters
    assert caught.value.error.condition == "AQ_SCHEMA_HINT_MISMATCH"
    assert (parameters["column"], parameters["expected"], parameters["actual"]) == (
        "name",
        "int",
        "string",
    )


def test_hint_modes_flat_strict_additive_subset(run_spark):
    frame = run_spark.createDataFrame([], "id BIGINT, amount DECIMAL(10,2), extra STRING")
    hinted = [{"name": "id", "type": "long"}, {"name": "amount", "type": "decimal(10, 2)"}]
    gone = [{"name": "gone", "type": "int"}]
    extra = [{"name": "extra", "type": "string"}]

    def problem(hint):
        try:
            check_schema_hint(frame, hint)
        except Exception as exc:  # noqa: BLE001
            return exc.message_parameters["kind"], exc.message_parameters["column"]
        return None

    with spark_jobs(run_spark) as jobs:
        # flat: presence and type of the hinted columns; other columns may come along
        assert problem({"id": "bigint", "amount": "decimal(10,2)"}) is None
        assert (
            problem([{"name": "ID", "type": "int64"}, {"name": "amount", "type": "numeric(10,2)"}])
            is None
        )
        assert problem({"id": "bigint", "gone": "int"}) == ("missing_column", "gone")
        assert problem({"id": "int"}) == ("type", "id")
        # strict (the default mode): exactly the hinted columns
        assert problem({"columns": hinted}) == ("unexpected_column", "extra")
        assert problem({"mode": "strict", "columns": hinted + extra}) is None
        # additive: extra upstream columns allowed, hinted ones required
        assert problem({"mode": "additive", "columns": hinted}) is None
        assert problem({"mode": "additive", "columns": hinted + gone}) == ("missing_column", "gone")
        # subset: hinted columns may be missing, nothing beyond them
        assert problem({"mode": "subset", "columns": hinted + extra + gone}) is None
        assert problem({"mode": "subset", "columns": hinted}) == ("unexpected_column", "extra")
    assert jobs == [], "a schema hint is checked without running Spark"


def test_json_and_parquet_and_format_from_suffix(run_spark, module, tmp_path):
    lines = tmp_path / "events.jsonl"
    lines.write_text("\n".join(json.dumps({"id": i, "kind": k}) for i, k in [(1, "a"), (2, "b")]))
    multi = tmp_path / "multi.json"
    multi.write_text(json.dumps([{"id": 7, "kind": "z"}]))
    events = _read(
        run_spark, module, {"path": str(lines), "schema_hint": {"id": "long", "kind": "string"}}
    )
    assert events.metadata["format"] == "json"
    assert sorted(r.id for r in events.main.collect()) == [1, 2]
    option = _read(
        run_spark, module, {"format": "json", "path": str(multi), "options": {"multiLine": True}}
    )
    assert [r.kind for r in option.main.collect()] == ["z"]

    folder = tmp_path / "events_parquet"
    events.main.write.parquet(str(folder))
    parquet = _read(
        run_spark, module, {"format": "parquet", "path": str(folder), "partition_filters": "id > 1"}
    )
    assert [r.id for r in parquet.main.collect()] == [2]


def test_other_spark_formats_pass_through(run_spark, module, tmp_path):
    (tmp_path / "notes.txt").write_text("first\nsecond\n")
    text = _read(run_spark, module, {"path": str(tmp_path / "notes.txt")})
    assert text.metadata["format"] == "text"
    assert [r.value for r in text.main.collect()] == ["first", "second"]
    run_spark.range(3).write.orc(str(tmp_path / "numbers"))
    orc = _read(run_spark, module, {"format": "orc", "path": str(tmp_path / "numbers")})
    assert orc.main.count() == 3


def test_delta_by_path_with_time_travel_and_detection(run_spark, module, tmp_path):
    path = str(tmp_path / "accounts")
    run_spark.createDataFrame([(1, "a")], "id BIGINT, v STRING").write.format("delta").save(path)
    run_spark.createDataFrame([(2, "b")], "id BIGINT, v STRING").write.format("delta").mode(
        "append"
    ).save(path)
    assert delta_table(path).version() == 1

    latest = _read(run_spark, module, {"path": path, "schema_hint": {"id": "long", "v": "string"}})
    assert latest.metadata["format"] == "delta"  # found by its _delta_log
    assert sorted(r.id for r in latest.main.collect()) == [1, 2]
    first = _read(
        run_spark, module, {"format": "delta", "path": path, "time_travel": {"version": 0}}
    )
    assert [r.id for r in first.main.collect()] == [1]


def test_table_source(run_spark, module, people):
    people.createOrReplaceTempView("people_table")
    result = _read(run_spark, module, {"table": "people_table"})
    assert result.main.count() == 4
    assert result.metadata["table"] == "people_table"


def test_missing_path_surfaces_spark_path_not_found(run_spark, module, tmp_path):
    with pytest.raises(ModuleFailed) as caught:
        _read(run_spark, module, {"format": "parquet", "path": str(tmp_path / "nope")})
    assert caught.value.error.condition == "PATH_NOT_FOUND"
    assert caught.value.error.sqlstate == "42K03"
    assert "path" in caught.value.hint


def test_path_and_table_together_is_an_error(run_spark, module):
    with pytest.raises(ModuleFailed) as caught:
        _read(run_spark, module, {"path": "/a", "table": "b"})
    assert caught.value.error.condition == "AQ_INGRESS_TARGET"


def test_secret_options_are_revealed_at_use_and_never_in_metadata(
    run_spark, module, orders_csv, monkeypatch
):
    config = {
        "format": "csv",
        "path": str(orders_csv),
        "header": True,
        "options": {"sep": "@aq.secret('AQ_TEST_SEPARATOR')"},
    }
    monkeypatch.delenv("AQ_TEST_SEPARATOR", raising=False)
    with pytest.raises(ModuleFailed) as caught:
        _read(run_spark, module, config)
    assert caught.value.error.condition == "AQ_SECRET_NOT_SET"
    assert caught.value.error.message_parameters == {"name": "AQ_TEST_SEPARATOR"}

    monkeypatch.setenv("AQ_TEST_SEPARATOR", ";")
    result = _read(run_spark, module, config)
    assert result.main.columns == ["order_id", "customer", "amount"]
    assert ";" not in json.dumps(result.metadata)


def test_a_frame_an_earlier_run_persisted_is_not_served_after_the_files_changed(run_spark, module, tmp_path):
    """Spark matches a cached frame by its plan, not by the files' content: each read of an
    Ingress must see the files as they are (the next run after an upstream change)."""
    folder = tmp_path / "orders"
    folder.mkdir()
    (folder / "part-0.csv").write_text("id,amount\n1,10\n2,20\n")
    config = {"format": "csv", "path": str(folder), "header": True}
    earlier = _read(run_spark, module, config).main.persist()
    assert earlier.count() == 2

    (folder / "part-0.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    later = _read(run_spark, module, config).main
    assert sorted(r.id for r in later.collect()) == ["1", "2", "3"]
    earlier.unpersist()


# --------------------------------------------------------------------------- custom data sources

#: A Python data source beside the Blueprint: `start` rows counting down, labelled by `path`.
READERS = """
from pyspark.sql.datasource import DataSource, DataSourceReader


class Countdown(DataSource):
    @classmethod
    def name(cls):
        return "countdown"

    def schema(self):
        return "n INT, label STRING"

    def reader(self, schema):
        return CountdownReader(self.options)


class CountdownReader(DataSourceReader):
    def __init__(self, options):
        self.start = int(options.get("start", 3))
        self.label = options.get("path", "none")

    def read(self, partition):
        for n in range(self.start, 0, -1):
            yield (n, self.label)


class NotASource:
    pass
"""


def _custom_ingress(tmp_path, module_name: str, config: dict):
    from aqueduct_dagster.blueprint.manifest import Location

    from .conftest import build_module

    (tmp_path / f"{module_name}.py").write_text(READERS)
    built = build_module("Ingress", "source", {"format": "custom", **config})
    return built.model_copy(update={"location": Location(file=str(tmp_path / "bp.yml"), line=2)})


def test_a_custom_data_source_beside_the_blueprint_reads_with_its_options(run_spark, tmp_path):
    config = {"class": "readers_a.Countdown", "options": {"start": 4}, "path": "/somewhere"}
    result = execute_module(run_spark, _custom_ingress(tmp_path, "readers_a", config), {})

    assert [tuple(r) for r in result.main.collect()] == [(n, "/somewhere") for n in (4, 3, 2, 1)]
    assert result.metadata["format"] == "countdown"
    assert result.metadata["columns"] == [{"name": "n", "type": "int"}, {"name": "label", "type": "string"}]


def test_a_custom_data_source_needs_no_path_or_options(run_spark, tmp_path):
    module = _custom_ingress(tmp_path, "readers_b", {"class": "readers_b.Countdown"})
    assert execute_module(run_spark, module, {}).main.count() == 3


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"class": "readers_c.NotASource"}, "is not a subclass of pyspark.sql.datasource.DataSource"),
        ({"class": "readers_c.Countdwn"}, "did you mean 'Countdown'"),
        ({"class": "no_such_readers_module.Countdown"}, "cannot import module 'no_such_readers_module'"),
    ],
)
def test_a_custom_data_source_that_cannot_load_names_the_class(run_spark, tmp_path, config, words):
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, _custom_ingress(tmp_path, "readers_c", config), {})
    assert caught.value.error.condition == "AQ_INGRESS_CUSTOM_SOURCE"
    assert words in caught.value.error.message
