"""Blueprints materialized in-process through Dagster, on the real SparkSession."""

from __future__ import annotations

import shutil

import dagster as dg
import pyarrow  # noqa: F401  (before deltalake: delta-rs aborts at exit otherwise)
import pytest
from deltalake import DeltaTable

from aqueduct_dagster.dagster import build_definitions

# Request the suite's session so it is the one that starts the JVM, whatever the test order.
pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark")]
KEY = dg.AssetKey


def _run(defs: dg.Definitions, job: str = "orders_daily") -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_demo_blueprint_runs_end_to_end(spark, demo_project):
    result = _run(build_definitions(demo_project["blueprints"]))
    assert result.success
    check = _checks(result)["orders_quality"]
    assert check.passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert KEY(["orders_daily", "orders_delta"]) in materialized
    table = DeltaTable(str(demo_project["data"] / "demo" / "orders_clean"))
    assert table.to_pyarrow_dataset().count_rows() == demo_project["valid_orders"]


def test_materialization_metadata_has_schema_and_write_facts(spark, demo_project):
    result = _run(build_definitions(demo_project["blueprints"]))
    events = {e.asset_key: e for e in result.get_asset_materialization_events()}
    clean_meta = events[KEY(["orders_daily", "clean_orders"])].materialization.metadata
    columns = [c.name for c in clean_meta["dagster/column_schema"].schema.columns]
    assert columns == ["order_id", "customer_id", "amount", "status", "order_ts"]
    egress_meta = events[KEY(["orders_daily", "orders_delta"])].materialization.metadata
    assert egress_meta["dagster/uri"].value == f"file://{demo_project['data']}/demo/orders_clean"
    assert egress_meta["dagster/row_count"].value == demo_project["valid_orders"]


def test_failing_abort_assert_blocks_the_egress_and_fails_the_run(spark, demo_project):
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace("{type: min_rows, min: 1}", "{type: min_rows, min: 100000}"))
    result = _run(build_definitions(demo_project["blueprints"]))
    assert not result.success
    check = _checks(result)["orders_quality"]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert KEY(["orders_daily", "orders_delta"]) not in materialized
    assert not (demo_project["data"] / "demo" / "orders_clean").exists()


def test_warn_rule_failure_does_not_block(spark, demo_project):
    path = demo_project["blueprints"] / "orders_daily.yml"
    text = path.read_text().replace(
        "{type: null_rate, column: customer_id, max: 0.05, on_fail: warn}",
        "{type: sql, expr: \"MAX(amount) > 1000000\", on_fail: warn}",
    )
    path.write_text(text)
    result = _run(build_definitions(demo_project["blueprints"]))
    assert result.success
    check = _checks(result)["orders_quality"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN


def test_spark_error_fails_the_step_with_structured_error(spark, demo_project):
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace("SELECT order_id, customer_id,", "SELECT order_id, customer_key,"))
    result = _run(build_definitions(demo_project["blueprints"]))
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "orders_daily__clean_orders"
    error = failure.event_specific_data.user_failure_data.metadata["aqueduct/error"].value
    assert error["module_id"] == "clean_orders"
    assert "UNRESOLVED_COLUMN" in str(error)


def test_run_tokens_are_bound_to_the_dagster_run(spark, demo_project):
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(
        path.read_text().replace(
            "CAST(order_ts AS TIMESTAMP) AS order_ts", "CAST(order_ts AS TIMESTAMP) AS order_ts, '@aq.run.id()' AS run_id"
        )
    )
    result = _run(build_definitions(demo_project["blueprints"]))
    assert result.success
    table = DeltaTable(str(demo_project["data"] / "demo" / "orders_clean")).to_pyarrow_table()
    assert set(table.column("run_id").to_pylist()) == {result.run_id}


def test_partial_materialization_without_upstream_is_a_clear_error(spark, demo_project):
    defs = build_definitions(demo_project["blueprints"])
    egress = KEY(["orders_daily", "orders_delta"])
    job = dg.define_asset_job("only_egress", selection=dg.AssetSelection.assets(egress))
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = _run(defs, "only_egress")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.to_string()
    assert "'orders_daily/clean_orders' was not materialized in this run" in message
    assert "dagster asset materialize --select" in message


def test_module_metrics_and_lineage_land_in_the_store(spark, demo_project, tmp_path, monkeypatch):
    from aqueduct_dagster.stores import DuckDBStore

    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    result = _run(build_definitions(demo_project["blueprints"]))
    assert result.success
    store = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")
    metrics = {m["module_id"]: m for m in store.module_metrics(result.run_id)}
    assert set(metrics) == {"raw_orders", "clean_orders", "orders_delta"}
    assert metrics["orders_delta"]["rows_written"] == demo_project["valid_orders"]
    assert all(m["status"] == "success" for m in metrics.values())
    [run] = store.runs("orders_daily")
    assert run["run_id"] == result.run_id and run["modules_ok"] == 3


def test_checkpointed_module_lets_a_later_run_materialize_only_downstream(
    spark, demo_project, tmp_path, monkeypatch
):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    path = demo_project["blueprints"] / "orders_daily.yml"
    text = path.read_text()
    path.write_text(text.replace("  - id: clean_orders\n    type: Channel\n",
                                 "  - id: clean_orders\n    type: Channel\n    checkpoint: true\n"))  # fmt: skip
    defs = build_definitions(demo_project["blueprints"])
    full = _run(defs)
    assert full.success
    saved = tmp_path / "state" / "checkpoints" / "orders_daily" / "clean_orders" / full.run_id
    assert (saved / "_SUCCESS").exists()
    events = {e.asset_key: e for e in full.get_asset_materialization_events()}
    metadata = events[KEY(["orders_daily", "clean_orders"])].materialization.metadata
    assert metadata["aqueduct/checkpoint_path"].value == str(saved)

    shutil.rmtree(demo_project["data"] / "demo" / "orders_clean")
    egress = KEY(["orders_daily", "orders_delta"])
    job = dg.define_asset_job("only_egress", selection=dg.AssetSelection.assets(egress))
    partial = _run(dg.Definitions.merge(defs, dg.Definitions(jobs=[job])), "only_egress")
    assert partial.success
    steps = {e.step_key for e in partial.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {"orders_daily__orders_delta"}  # nothing upstream was recomputed
    table = DeltaTable(str(demo_project["data"] / "demo" / "orders_clean"))
    assert table.to_pyarrow_dataset().count_rows() == demo_project["valid_orders"]
