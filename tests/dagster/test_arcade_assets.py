"""An Arcade's modules become assets nested under it, and materialize on the real Spark."""

from __future__ import annotations

import dagster as dg
import pytest

from aqueduct_dagster.dagster import build_definitions

pytestmark = [pytest.mark.spark, pytest.mark.spark_kind("classic")]
# One session kind: what these tests check does not depend on it (Connect runs through
# Dagster are covered by test_materialize, test_module_types and test_warm_spark).
KEY = dg.AssetKey

PARENT = """\
aqueduct: "1.0"
id: shop
name: Shop
context: {{out: "{out}", min_amount: 5}}
modules:
  - {{id: orders, type: Ingress, config: {{format: csv, path: "{data}", header: true, options: {{inferSchema: "true"}}}}}}
  - id: clean
    type: Arcade
    ref: arcades/clean.yml
    context_override: {{threshold: "${{ctx.min_amount}}"}}
  - {{id: out, type: Egress, config: {{format: parquet, path: "${{ctx.out}}", mode: overwrite}}}}
edges:
  - {{from: orders, to: clean, as: source}}
  - {{from: clean, to: out}}
"""

CLEAN = """\
aqueduct: "1.0"
id: clean_orders
name: Clean orders
required_context: [threshold]
modules:
  - id: filtered
    type: Channel
    config: {op: sql, query: "SELECT id, UPPER(region) AS region, amount FROM source WHERE amount > ${ctx.threshold}"}
  - id: deduped
    type: Channel
    config: {op: sql, query: SELECT DISTINCT * FROM filtered}
"""


def test_arcade_modules_materialize_as_nested_assets(spark, tmp_path):
    data = tmp_path / "orders.csv"
    data.write_text("id,region,amount\n1,eu,10\n1,eu,10\n2,us,3\n3,apac,7\n")
    folder = tmp_path / "blueprints"
    (folder / "arcades").mkdir(parents=True)
    out = tmp_path / "out"
    (folder / "shop.yml").write_text(PARENT.format(data=data, out=out))
    (folder / "arcades" / "clean.yml").write_text(CLEAN)

    defs = build_definitions(folder)
    job = defs.resolve_job_def("shop")
    nested = [KEY(["shop", "clean", "filtered"]), KEY(["shop", "clean", "deduped"])]
    graph = defs.resolve_asset_graph()
    for key in nested:
        assert graph.get(key).tags["aqueduct/arcade"] == "clean"
        assert graph.get(key).group_name == "shop"
    assert graph.get(KEY(["shop", "out"])).parent_keys == {nested[1]}

    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {KEY(["shop", "orders"]), *nested, KEY(["shop", "out"])}
    rows = sorted(tuple(r) for r in spark.read.parquet(str(out)).collect())
    assert rows == [(1, "EU", 10), (3, "APAC", 7)]
