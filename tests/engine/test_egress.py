"""Egress: every format and mode, atomic overwrite, Delta checked with delta-rs."""

from __future__ import annotations

import os

import pytest

from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.registry import execute_module

from .conftest import delta_table


def _write(spark, module, frame, config, module_id="sink"):
    egress = module("Egress", module_id, config, inputs=("upstream",))
    return execute_module(spark, egress, {"upstream": frame})


def _failing(spark):
    """A frame whose evaluation fails half-way through a write."""
    return spark.sql(
        "SELECT CASE WHEN id = 3 THEN raise_error('boom in row 3') ELSE id END AS id FROM range(6)"
    )


def _ids(spark, path, fmt="parquet"):
    return sorted(row.id for row in spark.read.format(fmt).load(str(path)).collect())


# --------------------------------------------------------------------------- file formats


def test_parquet_overwrite_replaces_the_data_and_leaves_nothing_behind(
    run_spark, module, people, tmp_path
):
    target = tmp_path / "out"
    first = _write(
        run_spark, module, people, {"format": "parquet", "path": str(target), "mode": "overwrite"}
    )
    assert first.metadata | {"columns": None} == first.metadata | {
        "format": "parquet",
        "mode": "overwrite",
        "path": str(target),
        "written": True,
        "columns": None,
    }
    # The new frame reads the old files: the staging write makes that safe.
    source = run_spark.read.parquet(str(target)).filter("id > 2")
    _write(
        run_spark, module, source, {"format": "parquet", "path": str(target), "mode": "overwrite"}
    )
    assert _ids(run_spark, target) == [3, 4]
    assert os.listdir(tmp_path) == ["out"]


def test_failed_overwrite_keeps_the_old_data(run_spark, module, people, tmp_path):
    target = tmp_path / "out"
    config = {"format": "parquet", "path": str(target), "mode": "overwrite"}
    _write(run_spark, module, people, config)
    before = sorted(os.listdir(target))
    with pytest.raises(ModuleFailed) as caught:
        _write(run_spark, module, _failing(run_spark), config)
    assert caught.value.error.condition == "USER_RAISED_EXCEPTION"
    assert sorted(os.listdir(target)) == before
    assert _ids(run_spark, target) == [1, 2, 3, 4]
    assert os.listdir(tmp_path) == ["out"], "no staging or backup folder remains"


def test_failed_first_write_leaves_no_target(run_spark, module, tmp_path):
    target = tmp_path / "nested" / "out"
    with pytest.raises(ModuleFailed):
        _write(
            run_spark,
            module,
            _failing(run_spark),
            {"format": "parquet", "path": str(target), "mode": "overwrite"},
        )
    assert not target.exists()
    assert not target.parent.exists() or os.listdir(target.parent) == []


def test_append_error_and_ignore_modes(run_spark, module, people, tmp_path):
    target = tmp_path / "out"
    path = str(target)
    _write(run_spark, module, people, {"format": "parquet", "path": path, "mode": "append"})
    _write(
        run_spark,
        module,
        people.filter("id = 1"),
        {"format": "parquet", "path": path, "mode": "append"},
    )
    assert _ids(run_spark, target) == [1, 1, 2, 3, 4]

    with pytest.raises(ModuleFailed) as caught:
        _write(run_spark, module, people, {"format": "parquet", "path": path, "mode": "error"})
    assert caught.value.error.condition == "PATH_ALREADY_EXISTS"
    assert "overwrite" in caught.value.hint

    ignored = _write(
        run_spark, module, people, {"format": "parquet", "path": path, "mode": "ignore"}
    )
    assert ignored.metadata["written"] is False
    assert _ids(run_spark, target) == [1, 1, 2, 3, 4]
    fresh = _write(
        run_spark,
        module,
        people,
        {"format": "parquet", "path": str(tmp_path / "new"), "mode": "ignore"},
    )
    assert fresh.metadata["written"] is True
    assert _ids(run_spark, tmp_path / "new") == [1, 2, 3, 4]


def test_csv_has_a_header_by_default_and_coalesce_gives_one_file(
    run_spark, module, people, tmp_path
):
    target = tmp_path / "csv"
    _write(
        run_spark,
        module,
        people.repartition(3),
        {"format": "csv", "path": str(target), "mode": "overwrite", "coalesce": 1},
    )
    parts = [name for name in os.listdir(target) if name.startswith("part-")]
    assert len(parts) == 1
    assert (target / parts[0]).read_text().splitlines()[0] == "id,name,city,age,salary"
    no_header = tmp_path / "csv_plain"
    _write(
        run_spark,
        module,
        people,
        {
            "format": "csv",
            "path": str(no_header),
            "mode": "overwrite",
            "header": False,
            "coalesce": True,
        },
    )
    plain = [n for n in os.listdir(no_header) if n.startswith("part-")][0]
    assert not (no_header / plain).read_text().startswith("id,")


def test_json_with_options_and_secret_options(run_spark, module, people, tmp_path, monkeypatch):
    monkeypatch.setenv("AQ_TEST_CODEC", "gzip")
    target = tmp_path / "json"
    result = _write(
        run_spark,
        module,
        people,
        {
            "format": "json",
            "path": str(target),
            "mode": "overwrite",
            "options": {"compression": "@aq.secret('AQ_TEST_CODEC')"},
        },
    )
    assert any(name.endswith(".json.gz") for name in os.listdir(target))
    assert _ids(run_spark, target, "json") == [1, 2, 3, 4]
    assert "gzip" not in repr(result.metadata)


def test_partition_by_and_overwrite_partitions(run_spark, module, people, tmp_path):
    target = tmp_path / "by_city"
    base = {"format": "parquet", "path": str(target), "partition_by": ["city"]}
    _write(run_spark, module, people, {**base, "mode": "overwrite"})
    partitions = sorted(name for name in os.listdir(target) if name.startswith("city="))
    assert partitions == ["city=__HIVE_DEFAULT_PARTITION__", "city=oslo", "city=rome"]
    oslo = run_spark.createDataFrame([(9, "eve", "oslo", 50, 1.0)], people.schema)
    _write(run_spark, module, oslo, {**base, "mode": "overwrite_partitions"})
    rows = {(r.id, r.city) for r in run_spark.read.parquet(str(target)).collect()}
    assert rows == {(9, "oslo"), (2, None), (3, "rome")}, "only the oslo partition was replaced"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_replace_where_on_files_replaces_only_the_matching_rows(run_spark, module, people, tmp_path, fmt):
    target = tmp_path / "people"
    base = {"format": fmt, "path": str(target), "mode": "overwrite"}
    _write(run_spark, module, people, base)
    cities = {(int(r.id), r.city) for r in run_spark.read.format(fmt).option("header", "true").load(str(target)).collect()}

    update = run_spark.createDataFrame(
        [(7, "gus", "oslo", 20, 1.0), (8, "hal", "rome", 30, 2.0)], people.schema
    )  # hal is not in oslo: outside the predicate, not written (as Delta would refuse him)
    result = _write(run_spark, module, update, {**base, "mode": "overwrite_partitions",
                                                 "replace_where": "city = 'oslo'"})  # fmt: skip
    assert result.metadata["replace_where"] == "city = 'oslo'"
    rows = {(int(r.id), r.city) for r in run_spark.read.format(fmt).option("header", "true").load(str(target)).collect()}
    assert rows == {(i, c) for i, c in cities if c != "oslo"} | {(7, "oslo")}
    assert os.listdir(tmp_path) == ["people"]  # staged and swapped, nothing left behind


def test_replace_where_needs_an_overwrite_mode(run_spark, module, people, tmp_path):
    with pytest.raises(ModuleFailed) as raised:
        _write(run_spark, module, people, {"format": "parquet", "path": str(tmp_path / "x"),
                                           "mode": "append", "replace_where": "id > 1"})  # fmt: skip
    assert raised.value.error.condition == "AQ_EGRESS_UNSUPPORTED"
    assert "mode: overwrite_partitions" in raised.value.hint


def test_merge_needs_delta_and_a_key(run_spark, module, people, tmp_path):
    with pytest.raises(ModuleFailed) as parquet:
        _write(
            run_spark,
            module,
            people,
            {"format": "parquet", "path": str(tmp_path / "p"), "mode": "merge", "merge_key": "id"},
        )
    assert parquet.value.error.condition == "AQ_EGRESS_MERGE_REQUIRES_DELTA"
    with pytest.raises(ModuleFailed) as keyless:
        _write(
            run_spark,
            module,
            people,
            {"format": "delta", "path": str(tmp_path / "d"), "mode": "merge"},
        )
    assert keyless.value.error.condition == "AQ_EGRESS_MERGE_KEY_MISSING"
    assert not (tmp_path / "p").exists() and not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- Delta


def test_delta_overwrite_append_error_ignore(run_spark, module, people, tmp_path):
    path = str(tmp_path / "delta")
    created = _write(
        run_spark, module, people, {"format": "delta", "path": path, "mode": "overwrite"}
    )
    assert (created.metadata["delta_version"], created.metadata["rows_written"]) == (0, 4)
    # The commit is read from its log file on both kinds of session (no DESCRIBE HISTORY on a
    # Connect server of this machine): the added files' statistics come with it.
    assert created.metadata["profile"]["rows"] == 4
    assert created.metadata["profile"]["min"]["id"] == 1
    appended = _write(
        run_spark,
        module,
        people.filter("id < 3"),
        {"format": "delta", "path": path, "mode": "append"},
    )
    assert (appended.metadata["delta_version"], appended.metadata["rows_written"]) == (1, 2)
    assert appended.metadata["delta_operation"] == "WRITE"

    table = delta_table(path)
    assert table.version() == 1
    assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == [1, 1, 2, 2, 3, 4]

    with pytest.raises(ModuleFailed) as caught:
        _write(run_spark, module, people, {"format": "delta", "path": path, "mode": "error"})
    assert caught.value.error.condition == "DELTA_PATH_EXISTS"
    ignored = _write(run_spark, module, people, {"format": "delta", "path": path, "mode": "ignore"})
    assert ignored.metadata == ignored.metadata | {"written": False, "delta_version": 1}
    assert delta_table(path).version() == 1


def test_delta_merge_upserts_and_a_rerun_changes_nothing(run_spark, module, people, tmp_path):
    path = str(tmp_path / "delta_merge")
    config = {
        "format": "delta",
        "path": path,
        "mode": "merge",
        "merge_key": ["id"],
        "partition_by": ["city"],
    }
    first = _write(run_spark, module, people, config)
    assert first.metadata["delta_version"] == 0  # created on the first run

    changes = run_spark.createDataFrame(
        [(2, "bob", "lima", 46, 81.0), (5, "eve", None, 22, 10.0)], people.schema
    )
    _write(run_spark, module, changes, config)
    once = sorted(delta_table(path).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])
    again = _write(run_spark, module, changes, config)
    twice = sorted(delta_table(path).to_pyarrow_table().to_pylist(), key=lambda r: r["id"])

    assert once == twice
    assert [(r["id"], r["city"], r["age"]) for r in twice] == [
        (1, "oslo", 31),
        (2, "lima", 46),
        (3, "rome", 27),
        (4, "oslo", 38),
        (5, None, 22),
    ]
    assert again.metadata["delta_operation"] == "MERGE"
    assert again.metadata["operation_metrics"]["numTargetRowsInserted"] == 0
    assert delta_table(path).version() == 2


def test_failed_delta_write_leaves_the_previous_version(run_spark, module, people, tmp_path):
    path = str(tmp_path / "delta_safe")
    _write(
        run_spark,
        module,
        people.select("id"),
        {"format": "delta", "path": path, "mode": "overwrite"},
    )
    with pytest.raises(ModuleFailed):
        _write(
            run_spark,
            module,
            _failing(run_spark),
            {"format": "delta", "path": path, "mode": "overwrite"},
        )
    table = delta_table(path)
    assert table.version() == 0
    assert sorted(table.to_pyarrow_table().column("id").to_pylist()) == [1, 2, 3, 4]


def test_delta_table_target(run_spark, module, people):
    name = "engine_test_people"
    try:
        result = _write(run_spark, module, people, {"table": name, "mode": "overwrite"})
        assert result.metadata["format"] == "delta"
        assert result.metadata["delta_version"] == 0
        assert run_spark.table(name).count() == 4
    finally:
        run_spark.sql(f"DROP TABLE IF EXISTS {name}")


def test_target_must_be_path_or_table(run_spark, module, people):
    with pytest.raises(ModuleFailed) as caught:
        _write(run_spark, module, people, {"format": "parquet", "mode": "overwrite"})
    assert caught.value.error.condition == "AQ_EGRESS_TARGET"


@pytest.mark.classic_only("a classic driver resolves relative paths against this process's folder")
def test_register_as_table_with_a_relative_path_points_at_the_written_files(run_spark, module, people, tmp_path):
    relative = os.path.relpath(tmp_path / "in_stock", os.getcwd())
    _write(run_spark, module, people, {"format": "parquet", "path": relative, "mode": "overwrite",
                                       "register_as_table": "relative_people"})  # fmt: skip
    # Not resolved against the warehouse folder, where nothing was written.
    assert run_spark.table("relative_people").count() == people.count()
    run_spark.sql("DROP TABLE IF EXISTS relative_people")


def test_a_local_delta_log_gives_its_newest_commit_unless_a_newer_one_is_staged(tmp_path):
    """What a Connect run reads instead of DESCRIBE HISTORY: the highest `NNN.json`; a newer
    commit still in `_staged_commits` (coordinated commits) sends it back to the history."""
    import json

    from aqueduct_dagster.engine.modules.egress import _last_commit_from_local_log

    log = tmp_path / "_delta_log"
    log.mkdir()
    for version, rows in ((0, 4), (1, 2)):
        info = {"commitInfo": {"operation": "WRITE", "operationMetrics": {"numOutputRows": str(rows)}}}
        add = {"add": {"path": f"part-{version}.parquet",
                       "stats": json.dumps({"numRecords": rows, "nullCount": {"id": 0},
                                            "minValues": {"id": 1}, "maxValues": {"id": rows}})}}  # fmt: skip
        (log / f"{version:020d}.json").write_text(json.dumps(info) + "\n" + json.dumps(add) + "\n")
    (log / "00000000000000000001.crc").write_text("{}")
    newest = _last_commit_from_local_log(log)
    assert (newest["version"], newest["operationMetrics"], newest["profile"]["rows"]) == (1, {"numOutputRows": "2"}, 2)

    (log / "_staged_commits").mkdir()
    (log / "_staged_commits" / "00000000000000000002.3f1c.json").write_text("{}")
    assert _last_commit_from_local_log(log) is None
    assert _last_commit_from_local_log(tmp_path / "no-log") is None
