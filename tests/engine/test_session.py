"""Session set-up: jars, Delta, small-data defaults, run isolation."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aqueduct_dagster.engine.jars import jars_dir
from aqueduct_dagster.engine.session import (
    connect_url_of,
    create_base_session,
    is_connect,
    run_session,
)
from aqueduct_dagster.engine.spark_conf import engine_spark_conf
from aqueduct_dagster.errors import ConfigError


def test_jars_dir_defaults_to_the_repository_jars():
    folder = jars_dir()
    assert folder.name == ".jars"
    assert any(folder.glob("delta-spark_*.jar"))


@pytest.mark.parametrize("make_jar", [False, True])
def test_jars_dir_without_jars_says_make_jars(tmp_path, make_jar):
    if make_jar:
        (tmp_path / "postgresql.jar").write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        jars_dir(tmp_path)
    assert "make jars" in str(caught.value)


def test_base_session_has_delta_jars_and_small_data_defaults(spark):
    # The session's conf shows the JVM's static settings too, classic and Connect alike.
    conf = spark.conf
    assert "io.delta.sql.DeltaSparkSessionExtension" in conf.get("spark.sql.extensions")
    assert conf.get("spark.sql.catalog.spark_catalog").endswith("DeltaCatalog")
    assert "delta-spark_" in conf.get("spark.jars")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"
    assert spark.conf.get("spark.databricks.delta.snapshotPartitions") == "2"
    warehouse = spark.conf.get("spark.sql.warehouse.dir")
    state = "connect-state" if is_connect(spark) else "spark-state"
    assert state in warehouse and not warehouse.startswith(
        str(Path.cwd()) + "/spark-warehouse"
    )
    assert "-Dderby.system.home=" in conf.get("spark.driver.extraJavaOptions")


def test_create_base_session_returns_the_running_session_unchanged(spark, tmp_path):
    # The engine reads no environment: the suite's session kind is named by its master.
    master = connect_url_of(spark) if is_connect(spark) else None
    again = create_base_session(master=master, conf={"spark.sql.shuffle.partitions": 11},
                                state_dir=tmp_path / "other-state")  # fmt: skip
    if is_connect(spark):  # the process's session for that server, its settings the server's
        assert again is spark
    else:
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


def test_two_concurrent_runs_on_one_session_kind_are_isolated(spark):
    """Two runs at once (threads), same view name, different SQL conf: each sees its own.

    On Spark Connect the two run sessions are two server-side sessions of one server.
    """
    import threading

    barrier = threading.Barrier(2, timeout=120)
    seen: dict[str, tuple[int, str, list[int]]] = {}
    errors: list[BaseException] = []

    def run(name: str, rows: int, partitions: str) -> None:
        try:
            session = run_session(spark, {"spark.sql.shuffle.partitions": partitions})
            session.range(rows).createOrReplaceTempView("orders")
            barrier.wait()  # both views exist now, under the same name
            count = session.sql("SELECT count(*) AS n FROM orders").first()["n"]
            ids = [r.id for r in session.sql("SELECT id FROM orders ORDER BY id").collect()]
            barrier.wait()
            seen[name] = (count, session.conf.get("spark.sql.shuffle.partitions"), ids)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=run, args=("first", 3, "5")),
        threading.Thread(target=run, args=("second", 7, "9")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert seen["first"] == (3, "5", [0, 1, 2])
    assert seen["second"] == (7, "9", list(range(7)))
    assert not spark.catalog.tableExists("orders")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"


@pytest.mark.spark_kind("connect")
def test_connect_run_sessions_are_separate_server_sessions(spark):
    first, second = run_session(spark), run_session(spark)
    assert len({spark.session_id, first.session_id, second.session_id}) == 3
    assert connect_url_of(first) == connect_url_of(spark)


@pytest.mark.spark_kind("classic")
@pytest.mark.parametrize(("master", "level"), [("managed", logging.WARNING), ("auto", logging.INFO)])
def test_without_a_server_managed_and_auto_fall_back_to_classic_with_one_log_line(
    spark, tmp_path, caplog, master, level
):
    """`managed` was asked for, so its fallback warns; `auto` (every entry point's default)
    only says it."""
    with caplog.at_level(logging.INFO, logger="aqueduct_dagster.engine.session"):
        session = create_base_session(master=master, state_dir=tmp_path / "no-server")
    assert session.sparkContext is spark.sparkContext
    records = [r for r in caplog.records if "Spark Connect" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == level
    assert "no healthy managed Spark Connect server" in records[0].getMessage()
    assert "classic in-process Spark session" in records[0].getMessage()
    assert "aqueduct spark up" in records[0].getMessage()


@pytest.mark.spark_kind("connect")
@pytest.mark.parametrize("master", ["managed", "auto"])
def test_managed_and_auto_use_the_projects_running_server(spark, request, master):
    server = request.getfixturevalue("connect_server")
    session = create_base_session(master=master, state_dir=Path(server.state_dir))
    assert is_connect(session) and connect_url_of(session) == server.url
    assert run_session(session).range(4).count() == 4


def test_an_unreachable_connect_url_fails_fast_with_a_hint(tmp_path):
    import socket
    import time

    from aqueduct_dagster.engine.connect_url import SparkConnectUnavailable

    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(SparkConnectUnavailable) as caught:
        create_base_session(master=f"sc://127.0.0.1:{port}", state_dir=tmp_path)
    assert time.perf_counter() - started < 10
    assert "does not answer" in caught.value.message
    assert "aqueduct spark up" in caught.value.hint


def test_a_hive_catalog_keeps_its_metastore_where_spark_keeps_it(tmp_path):
    """Derby lives in the state folder, unless the Blueprint asks for the Hive catalog: then
    its embedded metastore is Spark's default (the working folder), shared with any Spark
    program run there, as Aqueduct runs it (gallery snippet 23)."""
    plain = engine_spark_conf("local[2]", tmp_path / "state", {})
    assert f"-Dderby.system.home={tmp_path / 'state' / 'derby'}" in plain["spark.driver.extraJavaOptions"]
    hive = engine_spark_conf("local[2]", tmp_path / "hive-state", {"spark.sql.catalogImplementation": "hive"})
    assert "derby.system.home" not in hive["spark.driver.extraJavaOptions"]
    assert hive["spark.sql.catalogImplementation"] == "hive"
    assert not (tmp_path / "hive-state" / "derby").exists()
