"""The aqueduct-gallery snippets, compiled and run on the engine: what runs, and what does not yet.

Each snippet folder of `<shared>/reference/aqueduct-gallery/snippets/` holds a `blueprint.yml`
that reads `data/input/...` and writes `data/output/...`. Here the input each one needs is
generated (tiny, with the columns its SQL and rules use) under `tmp_path`, the `data/` paths
are pointed there, and the Manifest is run with `run_manifest`. Every snippet must run and produce
the outputs listed for it in OUTPUTS; a new snippet without expected outputs fails the suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_text
from aqueduct_dagster.blueprint.depot import uses_depot, watermark_key
from aqueduct_dagster.engine.runner import RunResult, run_manifest
from aqueduct_dagster.stores.depot import Depot
from aqueduct_dagster.stores.duckdb_store import DuckDBStore
from tests.support.shared import shared_reference

SNIPPETS = shared_reference("aqueduct-gallery", "snippets")

RUN_STARTED = datetime(2026, 1, 15, 8, 30, tzinfo=UTC)

# --------------------------------------------------------------------------- input data


def _csv(path: Path, header: str, *rows: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")


def _orders(inputs: Path, name: str = "orders.csv") -> None:
    _csv(inputs / name, "order_id,customer,amount,total_amt,region,status,score,user_id",
         "1,ann,10.0,12.0,north,open,7,1", "2,bob,20.5,22.0,south,done,9,2",
         "3,cy,5.0,6.0,north,done,4,3", "4,dee,8.25,9.0,east,open,6,9")  # fmt: skip


def _sample_data(inputs: Path, spark: Any) -> None:
    _csv(inputs / "sample_data.csv", "VendorID,trip_distance,fare_amount",
         "1,1.5,7.0", "2,3.2,12.5", "1,0.8,5.0", "2,10.1,31.0", "1,2.2,9.5")  # fmt: skip


def _delta_versions(inputs: Path, spark: Any) -> None:
    # Versions 0..3, one row each; the snippet pins versionAsOf 2 (three rows). Written with
    # delta-rs: four Spark commits would cost the suite many seconds.
    import pyarrow as pa
    from deltalake import write_deltalake

    for version in range(4):
        rows = pa.table({"user_id": [version], "name": [f"user{version}"]})
        write_deltalake(str(inputs), rows, mode="append")


def _join_inputs(inputs: Path, spark: Any) -> None:
    _csv(inputs / "orders.csv", "order_id,user_id,amount", "1,1,10.0", "2,2,20.0", "3,7,5.0")
    _csv(inputs / "users.csv", "user_id,name", "1,ann", "2,bob")


def _scores(inputs: Path, spark: Any) -> None:
    _csv(inputs / "scores.csv", "id,name,score",
         "1,ann,88", "2,bob,-4", "3,cy,invalid", "4,dee,100", "5,eve,101", "6,fay,42")  # fmt: skip


def _events_with_age(inputs: Path, spark: Any) -> None:
    now = datetime.now()
    stamps = [now - timedelta(hours=h) for h in (1, 2, 30, 48)]
    rows = [f"{i},click,{t:%Y-%m-%d %H:%M:%S}" for i, t in enumerate(stamps, start=1)]
    _csv(inputs / "events.csv", "event_id,event,processed_at", *rows)


def _data(inputs: Path, spark: Any) -> None:
    _csv(inputs / "data.csv", "id,value", "1,10", "2,20", "3,30")


def _primary_fallback(inputs: Path, spark: Any) -> None:
    _csv(inputs / "primary.csv", "id,name,email", "1,ann,", "2,,bob@x.org", "3,cy,cy@x.org")
    _csv(inputs / "fallback.csv", "id,name,email",
         "1,ann,ann@x.org", "2,bob,bob@old.org", "3,cy,")  # fmt: skip


def _products(inputs: Path, spark: Any) -> None:
    _csv(inputs / "products.csv", "id,name,category,price,in_stock",
         "1,lamp,home,25.0,true", "2,desk,office,180.0,false",
         "3,pen,office,1.5,true", "4,sofa,home,899.0,true")  # fmt: skip


def _products_customers(inputs: Path, spark: Any) -> None:
    _products(inputs, spark)
    _csv(inputs / "customers.csv", "id,name,city", "1,ann,oslo", "2,bob,rome")


def _people(inputs: Path, spark: Any) -> None:
    _csv(inputs / "people.csv", "id,name,city,age,salary,nickname",
         "1,ann,oslo,31,100","2,bob,rome,45,80", "3,cy,oslo,27,55")  # fmt: skip


def _items(inputs: Path, spark: Any) -> None:
    _csv(inputs / "items.csv", "id,name,category", "1,apple,fruit", "2,kale,veg", "3,pear,fruit")


def _events_by_type(inputs: Path, spark: Any) -> None:
    _csv(inputs / "events.csv", "event_id,event,user",
         "1,page_view,ann", "2,click,bob", "3,page_view,cy")  # fmt: skip


def _timed_events(inputs: Path, spark: Any) -> None:
    _csv(inputs / "events.csv", "id,event_ts,created_at,value",
         "1,2025-05-01 10:00:00,2025-05-01,3", "2,2025-06-10 10:00:00,2025-06-10,5")  # fmt: skip


def _users(inputs: Path, spark: Any) -> None:
    _csv(inputs / "users.csv", "name,email,phone", "ann,ann@x.org,5550101234")
    # The snippet's UDF module (`module: logic`) is not in the gallery: written beside the
    # Blueprint, where the engine imports it from.
    (inputs.parent.parent / "logic.py").write_text(
        "def mask_email(email):\n"
        "    user, _, domain = (email or '').partition('@')\n"
        "    return user[:1] + '***@' + domain\n\n"
        "def make_phone_masker(visible_digits, prefix):\n"
        "    def mask(phone):\n"
        "        return prefix + (phone or '')[-visible_digits:]\n"
        "    return mask\n"
    )


def _orders_only(inputs: Path, spark: Any) -> None:
    _orders(inputs)


def _orders_a_b(inputs: Path, spark: Any) -> None:
    _orders(inputs, "orders_a.csv")
    _orders(inputs, "orders_b.csv")


def _catalog_table(inputs: Path, spark: Any) -> None:
    spark.createDataFrame([(1, "a"), (2, "b")], "id INT, v STRING").write.mode(
        "overwrite"
    ).saveAsTable("demo_table")


WRITERS: dict[str, Callable[[Path, Any], None]] = {
    "01_ingress_csv_options": _sample_data,
    "03_ingress_delta_incremental": _delta_versions,
    "05_channel_sql_udf": _users,
    "07_channel_join_variants": _join_inputs,
    "09_channel_repartition_cache": _sample_data,
    "11_spillway_channel": _scores,
    "13_assert_freshness": _events_with_age,
    "15_regulator_timeout": _data,
    "17_funnel_coalesce_fallback": _primary_fallback,
    "19_depot_incremental": _timed_events,
    "21_probe_custom": _products,
    "23_table_first": _catalog_table,
    "25_channel_native_ops": _people,
    "27_self_healing": _orders_only,
    "29_java_udf_parallel": _products_customers,
    "31_depot_kv": _timed_events,
    "33_runtime_functions": _items,
    "35_register_as_table": _products,
    "37_egress_modes": _events_by_type,
    "39_checkpoint_resume": _items,
    "41_enabled_conditional": _orders_only,
    "43_probe_report_stdout": _orders_only,
    "45_schema_drift_check": _orders_a_b,
    "47_agent_cascade": _orders_only,
}

#: Snippet -> {output path under data/output (or `table:NAME`): rows expected}.
OUTPUTS: dict[str, dict[str, int]] = {
    "01_ingress_csv_options": {"output.parquet": 5},
    "05_channel_sql_udf": {"output.parquet": 1, "phone_masked.parquet": 1},
    "03_ingress_delta_incremental": {"output.parquet": 3},
    "07_channel_join_variants": {"output.parquet": 3},
    "09_channel_repartition_cache": {"output.parquet": 5},
    "11_spillway_channel": {"valid_scores.parquet": 3, "rejected_scores.csv": 3},
    "13_assert_freshness": {"fresh_events.parquet": 2, "stale_events.csv": 2},
    # The Probe never passes; the timeout fallback opens the gate (as the gallery documents).
    "15_regulator_timeout": {"output.parquet": 3},
    "17_funnel_coalesce_fallback": {"output.parquet": 3},
    # First run: the watermark is the full-scan sentinel, both events are new.
    "19_depot_incremental": {"events.parquet": 2},
    "21_probe_custom": {"output.parquet": 4},
    "23_table_first": {"table:demo_output": 2},
    "25_channel_native_ops": {"people.parquet": 3},
    "27_self_healing": {"orders.parquet": 4},
    "29_java_udf_parallel": {"products.parquet": 4, "customers.parquet": 2},
    # `@aq.depot.get('watermark', '2025-06-01')` falls back to its default: one later event.
    "31_depot_kv": {"events.parquet": 1},
    "33_runtime_functions": {"items.parquet": 3},
    # The Egress registers its output; the read-back Ingress reads that catalog table.
    "35_register_as_table": {"products_in_stock.parquet": 3, "table:in_stock_products": 3},
    # replace_where on parquet: the rows matching the predicate (the two page views).
    "37_egress_modes": {"modes_append": 3, "modes_error": 3, "modes_ignore": 3,
                        "modes_partitioned": 3, "modes_replace": 2},
    "39_checkpoint_resume": {"category_counts.parquet": 2},
    # premium_enrich is off by default: the compiler drops it, the Funnel and the Egress.
    "41_enabled_conditional": {},
    "43_probe_report_stdout": {"result.parquet": 4},
    "45_schema_drift_check": {"orders_a.parquet": 4, "orders_b.parquet": 4},
    "47_agent_cascade": {"orders.parquet": 4},
}

#: Snippet -> (pattern, replacement) edits beyond the data paths, each with its reason.
TWEAKS: dict[str, list[tuple[str, str]]] = {
    # The gate polls a never-passing Probe until the timeout opens it: 10 s is wall time only.
    "15_regulator_timeout": [(r"timeout_seconds: 10", "timeout_seconds: 1")],
}

SNIPPET_NAMES = sorted(p.name for p in SNIPPETS.iterdir() if (p / "blueprint.yml").is_file())


def _with_local_data(text: str, root: Path) -> str:
    """The Blueprint text with every relative `data/...` path under `root`."""
    return re.sub(r"(?<![\w./])data/", f"{root.as_posix()}/data/", text)


def _compile(name: str, root: Path, env: dict[str, str] | None = None):
    text = (SNIPPETS / name / "blueprint.yml").read_text()
    for pattern, replacement in TWEAKS.get(name, []):
        text = re.sub(pattern, replacement, text)
    manifest = compile_text(
        _with_local_data(text, root),
        source_path=root / "blueprint.yml",
        env={"HOME": str(root), **(env or {})},
    )
    return bind_runtime(manifest, RunInfo(run_id=f"test-{name}", started_at=RUN_STARTED))


def _run(spark: Any, manifest: Any, root: Path) -> RunResult:
    """run_manifest, with the Depot (a DuckDB store under `root`) where the snippet uses one."""
    if not uses_depot(manifest):
        return run_manifest(spark, manifest)
    depot = Depot(DuckDBStore(root / ".aqueduct" / "depot.duckdb"), manifest.blueprint_id)
    return depot.run(manifest, "test-run", lambda bound: run_manifest(spark, bound))


def _rows(output: Path, spark: Any = None) -> int:
    """Rows written under `output` (read with pyarrow: no Spark job), or of a catalog table."""
    if isinstance(output, str):
        return spark.table(output.removeprefix("table:")).count()
    import pyarrow.dataset as ds

    fmt = "csv" if output.name.endswith(".csv") else "parquet"
    files = [str(p) for p in output.rglob(f"*.{fmt}") if not p.name.startswith((".", "_"))]
    assert files, f"nothing written under {output}"
    return ds.dataset(files, format=fmt).count_rows()


@pytest.fixture
def snippet_root(tmp_path, spark):
    yield tmp_path
    for table in ("demo_table", "demo_output", "in_stock_products"):
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        spark.catalog.dropTempView(table)


def _prepare(name: str, root: Path, spark: Any) -> None:
    inputs = root / "data" / "input"
    inputs.mkdir(parents=True)
    WRITERS[name](inputs, spark)


def test_every_snippet_is_classified():
    unknown = sorted(set(SNIPPET_NAMES) - set(OUTPUTS))
    assert not unknown, f"new gallery snippets: give them expected outputs in OUTPUTS: {unknown}"


@pytest.mark.parametrize("name", SNIPPET_NAMES)
def test_snippet_runs(name, spark, snippet_root):
    _prepare(name, snippet_root, spark)
    manifest = _compile(name, snippet_root)
    result = _run(spark, manifest, snippet_root)

    assert isinstance(result, RunResult)
    for output, expected in OUTPUTS[name].items():
        target = output if output.startswith("table:") else snippet_root / "data/output" / output
        assert _rows(target, spark) == expected, output


def test_enabled_snippet_runs_the_premium_branch_when_switched_on(spark, snippet_root):
    name = "41_enabled_conditional"
    _prepare(name, snippet_root, spark)
    off = _compile(name, snippet_root)
    assert set(off.modules) == {"raw_orders", "basic_enrich"}  # the disable cascades

    run_manifest(spark, _compile(name, snippet_root, env={"AQ_PREMIUM": "true"}))
    assert _rows(snippet_root / "data" / "output" / "enriched.parquet") == 8


def test_regulator_snippet_opens_after_its_timeout(spark, snippet_root):
    """As the gallery documents: the gate re-evaluates the Probe until the timeout, then opens."""
    name = "15_regulator_timeout"
    _prepare(name, snippet_root, spark)
    result = run_manifest(spark, _compile(name, snippet_root))

    assert result.blocked == {} and result.skipped == []
    assert _rows(snippet_root / "data" / "output" / "output.parquet") == 3


def test_freshness_quarantine_splits_rows_by_their_own_age(spark, snippet_root):
    """Engine fix: a `freshness` rule with on_fail: quarantine moves the stale rows (and those
    without a timestamp) to the spillway; before, it had no row-level form and the snippet's
    spillway edge failed with AQ_INPUT_NOT_FOUND."""
    from aqueduct_dagster.engine.registry import execute_module

    from .conftest import build_module

    now = datetime.now()
    frame = spark.createDataFrame(
        [(1, now - timedelta(hours=1)), (2, now - timedelta(hours=30)), (3, None)],
        "id INT, processed_at TIMESTAMP",
    )
    rule = {"type": "freshness", "column": "processed_at", "max_age_hours": 12,
            "on_fail": "quarantine"}  # fmt: skip
    check = build_module("Assert", "fresh", {"rules": [rule]}, inputs=("events",))
    result = execute_module(spark, check, {"events": frame})

    assert [r.id for r in result.outputs["main"].collect()] == [1]
    stale = result.outputs["spillway"].orderBy("id").collect()
    assert [r.id for r in stale] == [2, 3]
    assert {r._aq_error_type for r in stale} == {"freshness"}
    assert result.assertion.quarantined == 2


def test_udf_snippet_applies_the_static_and_the_parameterized_udf(spark, snippet_root):
    import pyarrow.parquet as pq

    name = "05_channel_sql_udf"
    _prepare(name, snippet_root, spark)
    run_manifest(spark, _compile(name, snippet_root))
    out = snippet_root / "data" / "output"
    assert pq.read_table(out / "output.parquet").column("email_masked").to_pylist() == ["a***@x.org"]
    assert pq.read_table(out / "phone_masked.parquet").column("phone_masked").to_pylist() == ["+1-***-***-1234"]


def test_depot_snippet_appends_only_new_events_on_the_next_run(spark, snippet_root):
    """19_depot_incremental, run twice as its README describes: the second run appends only
    the events past the watermark the first run committed."""
    name = "19_depot_incremental"
    _prepare(name, snippet_root, spark)
    depot = Depot(DuckDBStore(snippet_root / ".aqueduct" / "depot.duckdb"), "depot_incremental_demo")
    run = lambda run_id: depot.run(  # noqa: E731
        _compile(name, snippet_root), run_id, lambda bound: run_manifest(spark, bound)
    )
    run("first")
    assert depot.get(watermark_key("new_events")) == "2025-06-10 10:00:00"
    events = snippet_root / "data" / "input" / "events.csv"
    events.write_text(events.read_text() + "3,2025-07-01 09:00:00,2025-07-01,8\n")
    run("second")
    assert _rows(snippet_root / "data" / "output" / "events.parquet") == 3
    assert depot.get(watermark_key("new_events")) == "2025-07-01 09:00:00"
