"""run_manifest: a small DAG end to end, lazily, with caching, Asserts and failures."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.manifest import Location
from aqueduct_dagster.engine.errors import AssertionFailed, ModuleFailed
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.runner import run_manifest
from aqueduct_dagster.errors import EngineError

from .conftest import spark_jobs


@pytest.fixture
def orders_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer,amount\n1,ann,19.99\n2,bob,-5.0\n3,cy,7.5\n4,,3.0\n")
    return path


@pytest.fixture
def pipeline(module, manifest, orders_csv, tmp_path):
    """orders (Ingress csv) -> clean (Channel sql) -> quality (Assert) -> out (Egress parquet)."""

    def build(rules=None, *, clean_query=None, ingress=None):
        return manifest(
            module(
                "Ingress",
                "orders",
                ingress
                or {
                    "format": "csv",
                    "path": str(orders_csv),
                    "header": True,
                    "infer_schema": True,
                    "schema_hint": {"order_id": "int", "customer": "string", "amount": "double"},
                },
            ),
            module(
                "Channel",
                "clean",
                {
                    "query": clean_query
                    or "SELECT order_id, customer, amount FROM orders WHERE amount > 0",
                },
                inputs=("orders",),
            ),
            module(
                "Assert",
                "quality",
                {
                    "rules": rules
                    or [
                        {"type": "min_rows", "min": 1},
                        {"type": "not_null", "column": "order_id"},
                        {"type": "not_null", "column": "customer", "on_fail": "warn"},
                    ]
                },
                inputs=("clean",),
            ),
            module(
                "Egress",
                "out",
                {"format": "parquet", "path": str(tmp_path / "out"), "mode": "overwrite"},
                inputs=("quality",),
            ),
        )

    return build


def test_four_module_manifest_runs_end_to_end(run_spark, pipeline, tmp_path):
    result = run_manifest(run_spark, pipeline())
    assert list(result.modules) == ["orders", "clean", "quality", "out"]
    outcome = result.assertions["quality"]
    assert not outcome.passed and not outcome.blocking  # the warn rule saw the empty customer
    assert result.warnings == [outcome.summary()]
    assert result.modules["out"].metadata["written"] is True
    written = sorted(tuple(r) for r in run_spark.read.parquet(str(tmp_path / "out")).collect())
    assert written == [(1, "ann", 19.99), (3, "cy", 7.5), (4, None, 3.0)]
    # clean is read by the Assert's action and by the Egress write: computed once, cached.
    assert result.cached == ["clean.main"]
    assert not result.output("clean").is_cached, "the run unpersists what it cached"
    assert result.output("quality") is result.output("clean")


def test_blocking_assert_stops_the_run_before_the_egress(run_spark, pipeline, tmp_path):
    rules = [
        {"type": "min_rows", "min": 100},
        {"type": "sql", "expr": "MAX(amount) < 10", "on_fail": "abort"},
    ]
    with pytest.raises(AssertionFailed) as caught:
        run_manifest(run_spark, pipeline(rules))
    error = caught.value
    assert error.module_id == "quality"
    assert "min_rows" in str(error) and "MAX(amount) < 10" in str(error)
    assert [r.name for r in error.outcome.failed] == ["min_rows", "sql"]
    assert not (tmp_path / "out").exists()


def test_a_failing_module_is_reported_with_its_id_and_location(run_spark, pipeline):
    manifest = pipeline(clean_query="SELECT order_id, amout FROM orders")
    located = manifest.modules["clean"].model_copy(
        update={"location": Location(file="orders.yml", line=12)}
    )
    manifest = manifest.model_copy(update={"modules": {**manifest.modules, "clean": located}})
    with pytest.raises(ModuleFailed) as caught:
        run_manifest(run_spark, manifest)
    assert caught.value.module_id == "clean"
    assert str(caught.value).startswith(
        "orders.yml:12: module 'clean': [UNRESOLVED_COLUMN.WITH_SUGGESTION]"
    )


def test_only_builds_ancestors_lazily_and_skips_their_side_effects(run_spark, pipeline, tmp_path):
    source = str(tmp_path / "orders_delta")
    run_spark.createDataFrame(
        [(1, "ann", 19.99), (2, "bob", -5.0)], "order_id INT, customer STRING, amount DOUBLE"
    ).write.format("delta").save(source)
    manifest = pipeline(ingress={"format": "delta", "path": source})
    with spark_jobs(run_spark) as jobs:
        result = run_manifest(run_spark, manifest, only=["clean"])
    assert jobs == [], "reading Delta and transforming runs no Spark job"
    assert list(result.modules) == ["clean"] and result.prepared == ["orders"]

    egress_only = run_manifest(
        run_spark, pipeline(rules=[{"type": "min_rows", "min": 100}]), only=["out"]
    )
    assert egress_only.assertions == {}, "an ancestor Assert is passed through, not evaluated"
    assert egress_only.prepared == ["orders", "clean", "quality"]
    assert run_spark.read.parquet(str(tmp_path / "out")).count() == 3


def test_a_disabled_module_never_reaches_the_runner(run_spark, orders_csv, tmp_path):
    """The compiler drops a disabled module with its downstream: the runner need not look."""
    text = f"""\
aqueduct: "1.0"
id: orders_bp
name: Orders
context:
  checks: "off"
modules:
  - {{id: orders, type: Ingress, config: {{format: csv, path: "{orders_csv}", header: true}}}}
  - {{id: clean, type: Channel, config: {{op: sql, query: "SELECT * FROM orders"}}}}
  - id: quality
    type: Assert
    enabled: ${{ctx.checks}}
    config: {{rules: [{{type: min_rows, min: 1}}]}}
  - {{id: out, type: Egress, config: {{format: parquet, path: "{tmp_path / 'out'}", mode: overwrite}}}}
edges:
  - {{from: orders, to: clean}}
  - {{from: clean, to: quality}}
  - {{from: quality, to: out}}
"""
    manifest = compile_text(text, source_path=str(tmp_path / "orders.yml"))
    assert list(manifest.modules) == ["orders", "clean"]
    result = run_manifest(run_spark, manifest)
    assert list(result.modules) == ["orders", "clean"] and result.skipped == []
    assert not (tmp_path / "out").exists()


def test_unknown_only_and_missing_ports(run_spark, pipeline, module, manifest, people):
    with pytest.raises(EngineError) as unknown:
        run_manifest(run_spark, pipeline(), only=["claen"])
    assert "did you mean 'clean'" in str(unknown.value)

    dangling = manifest(
        module("Ingress", "orders", {"table": "people_view"}),
        module(
            "Channel", "copy", {"op": "select", "columns": ["id"]}, inputs=(("orders", "spillway"),)
        ),
    )
    people.createOrReplaceTempView("people_view")
    with pytest.raises(ModuleFailed) as missing:
        run_manifest(run_spark, dangling)
    assert missing.value.module_id == "copy"
    assert missing.value.error.condition == "AQ_INPUT_NOT_FOUND"
    assert "main" in str(missing.value)


def test_module_types_without_an_executor_fail_clearly(run_spark, module, people):
    arcade = module("Arcade", "nested", {}, inputs=("people",))
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, arcade, {"people": people})
    assert caught.value.error.condition == "AQ_MODULE_TYPE_UNSUPPORTED"


def test_hooks_sample_ingress_redirect_egress_and_see_each_module(run_spark, pipeline, tmp_path):
    seen = []

    def redirect(egress):
        config = egress.spec.config.model_copy(update={"path": str(tmp_path / "scratch")})
        return egress.model_copy(update={"spec": egress.spec.model_copy(update={"config": config})})

    result = run_manifest(
        run_spark,
        pipeline(),
        sample_rows=2,  # the first two rows of the one CSV file: ann (19.99) and bob (-5.0)
        redirect=redirect,
        on_module_end=lambda module, outcome: seen.append((module, outcome)),
    )
    assert [m.id for m, _ in seen] == ["orders", "clean", "quality", "out"]
    egress, written = seen[-1]
    # The hook sees the Manifest's Egress; the write went where `redirect` sent it.
    assert egress.spec.config.path == str(tmp_path / "out")
    assert written.metadata["written"] is True and not (tmp_path / "out").exists()
    scratch = [tuple(r) for r in run_spark.read.parquet(str(tmp_path / "scratch")).collect()]
    assert scratch == [(1, "ann", 19.99)]
    assert result.output("orders").count() == 2
    assert result.cached == ["clean.main"]


def test_on_module_end_sees_a_blocking_assert_before_the_run_stops(run_spark, pipeline):
    seen = []
    with pytest.raises(AssertionFailed):
        run_manifest(
            run_spark,
            pipeline([{"type": "min_rows", "min": 100}]),
            on_module_end=lambda module, outcome: seen.append((module.id, outcome.assertion)),
        )
    assert [module_id for module_id, _ in seen] == ["orders", "clean", "quality"]
    assert seen[-1][1].blocking
