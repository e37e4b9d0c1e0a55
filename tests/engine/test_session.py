"""Session set-up: jars, Delta, small-data defaults, run isolation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.engine.session import (
    create_base_session,
    jars_dir,
    resolve_master,
    run_session,
)
from aqueduct_dagster.errors import ConfigError


def test_jars_dir_defaults_to_the_repository_jars():
    folder = jars_dir()
    assert folder.name == ".jars"
    assert any(folder.glob("delta-spark_*.jar"))


@pytest.mark.parametrize("make_jar", [False, True])
def test_jars_dir_without_jars_says_make_jars(tmp_path, monkeypatch, make_jar):
    if make_jar:
        (tmp_path / "postgresql.jar").write_bytes(b"")
    monkeypatch.setenv("AQUEDUCT_JARS_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        jars_dir()
    assert "make jars" in str(caught.value)


def test_master_resolution_order(monkeypatch):
    engine = EngineBlock.model_validate({"spark": {"master_url": "spark://cluster:7077"}})
    monkeypatch.setenv("AQUEDUCT_SPARK_MASTER", "local[1]")
    assert resolve_master(engine, "local[3]") == "local[3]"
    assert resolve_master(engine) == "spark://cluster:7077"
    assert resolve_master(None) == "local[1]"
    monkeypatch.delenv("AQUEDUCT_SPARK_MASTER")
    assert resolve_master(None) == "local[2]"


def test_base_session_has_delta_jars_and_small_data_defaults(spark):
    conf = spark.sparkContext.getConf()
    assert "io.delta.sql.DeltaSparkSessionExtension" in conf.get("spark.sql.extensions")
    assert conf.get("spark.sql.catalog.spark_catalog").endswith("DeltaCatalog")
    assert "delta-spark_" in conf.get("spark.jars")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.databricks.delta.snapshotPartitions") == "2"
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    assert "spark-state" in warehouse and not warehouse.startswith(
        str(Path.cwd()) + "/spark-warehouse"
    )
    assert "-Dderby.system.home=" in conf.get("spark.driver.extraJavaOptions")


def test_create_base_session_returns_the_running_session_unchanged(spark, tmp_path):
    engine = EngineBlock.model_validate({"spark": {"conf": {"spark.sql.shuffle.partitions": 11}}})
    again = create_base_session(engine, state_dir=tmp_path / "other-state")
    assert again.sparkContext is spark.sparkContext
    assert again.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert not (tmp_path / "other-state").exists()


def test_run_sessions_isolate_temp_views_and_sql_conf(spark):
    first, second = run_session(spark), run_session(spark)
    first.range(2).createOrReplaceTempView("only_in_first")
    first.conf.set("spark.sql.shuffle.partitions", "9")
    assert first.catalog.tableExists("only_in_first")
    assert not second.catalog.tableExists("only_in_first")
    assert not spark.catalog.tableExists("only_in_first")
    assert second.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"


def test_run_session_starts_from_the_base_conf_and_applies_run_conf(spark, caplog):
    key = "spark.sql.files.maxRecordsPerFile"
    spark.conf.set(key, "123")
    try:
        inherited = run_session(spark)
        assert inherited.conf.get(key) == "123"
    finally:
        spark.conf.unset(key)
    with caplog.at_level(logging.WARNING, logger="aqueduct_dagster.engine.session"):
        tuned = run_session(
            spark, {"spark.sql.shuffle.partitions": 7, "spark.sql.warehouse.dir": "/elsewhere"}
        )
    assert tuned.conf.get("spark.sql.shuffle.partitions") == "7"
    assert tuned.conf.get("spark.sql.warehouse.dir") != "/elsewhere"
    assert "spark.sql.warehouse.dir" in caplog.text
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
