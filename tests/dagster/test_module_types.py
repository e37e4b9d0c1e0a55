"""Junction branches, Funnel, quarantine, spillway, Probe and Regulator through Dagster."""

from __future__ import annotations

import dagster as dg
import pyarrow  # noqa: F401  (before deltalake)
import pytest
from deltalake import DeltaTable

from aqueduct_dagster.dagster import build_definitions

# Request the suite's session so it is the one that starts the JVM, whatever the test order.
pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark")]
KEY = dg.AssetKey

BLUEPRINT = """\
aqueduct: "1.0"
id: routes
name: Routing
context: {{out: "{out}"}}
modules:
  - {{id: raw, type: Ingress, config: {{format: csv, path: "{data}", header: true, options: {{inferSchema: "true"}}}}}}
  - id: by_region
    type: Junction
    config:
      mode: conditional
      branches:
        - {{id: eu, condition: "region = 'EU'"}}
        - {{id: rest, condition: _else_}}
  - id: merged
    type: Funnel
    config: {{mode: union_all, inputs: [by_region.eu, by_region.rest]}}
  - id: quality
    type: Assert
    config:
      rules:
        - {{type: sql_row, expr: "amount > 0", on_fail: quarantine, error_type: BadAmount}}
        - {{type: sql_row, expr: "region <> 'APAC'", on_fail: quarantine, error_type: OutOfRegion}}
  - id: volume
    type: Probe
    attach_to: merged
    config:
      signals:
        - {{type: threshold, id: enough_rows, expr: "COUNT(*) >= {min_rows}"}}
        - {{type: schema_snapshot}}
  - {{id: gate, type: Regulator, config: {{on_block: skip}}}}
  - {{id: good, type: Egress, config: {{format: delta, path: "${{ctx.out}}/good", mode: overwrite}}}}
  - {{id: bad, type: Egress, config: {{format: delta, path: "${{ctx.out}}/bad", mode: overwrite}}}}
  - {{id: eu_only, type: Egress, config: {{format: parquet, path: "${{ctx.out}}/eu", mode: overwrite}}}}
edges:
  - {{from: raw, to: by_region}}
  - {{from: by_region, to: merged, port: eu}}
  - {{from: by_region, to: merged, port: rest}}
  - {{from: by_region, to: eu_only, port: eu}}
  - {{from: merged, to: quality}}
  - {{from: quality, to: gate}}
  - {{from: volume, to: gate, port: signal}}
  - {{from: gate, to: good}}
  - {{from: quality, to: bad, port: spillway, error_types: [BadAmount]}}
"""


@pytest.fixture
def routes(tmp_path):
    data = tmp_path / "orders.csv"
    data.write_text("id,region,amount\n1,EU,10\n2,US,-5\n3,EU,7\n4,APAC,3\n5,US,0\n")

    def write(min_rows: int = 1):
        folder = tmp_path / "blueprints"
        folder.mkdir(exist_ok=True)
        (folder / "routes.yml").write_text(BLUEPRINT.format(data=data, out=tmp_path / "out", min_rows=min_rows))
        return build_definitions(folder)

    return write, tmp_path / "out"


def _run(defs):
    return defs.resolve_job_def("routes").execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_branches_spillway_and_probe_are_assets(routes):
    write, _ = routes
    graph = write().resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"routes/by_region/eu", "routes/by_region/rest", "routes/quality", "routes/quality/spillway",
            "routes/volume", "routes/gate"} <= keys  # fmt: skip
    assert graph.get(KEY(["routes", "eu_only"])).parent_keys == {KEY(["routes", "by_region", "eu"])}
    assert graph.get(KEY(["routes", "bad"])).parent_keys == {KEY(["routes", "quality", "spillway"])}
    assert graph.get(KEY(["routes", "gate"])).parent_keys == {KEY(["routes", "quality"]), KEY(["routes", "volume"])}
    assert dg.AssetCheckKey(KEY(["routes", "quality"]), "quality") in graph.asset_check_keys


def test_run_routes_rows_quarantines_and_observes(routes):
    write, out = routes
    result = _run(write())
    assert result.success
    good = DeltaTable(str(out / "good")).to_pyarrow_table()
    bad = DeltaTable(str(out / "bad")).to_pyarrow_table()
    assert sorted(good.column("id").to_pylist()) == [1, 3]
    # The spillway edge's error_types: the APAC row is quarantined but is not a BadAmount.
    assert sorted(bad.column("id").to_pylist()) == [2, 5]
    assert set(bad.column("_aq_error_type").to_pylist()) == {"BadAmount"}
    quality = next(e for e in result.get_asset_materialization_events() if e.asset_key == KEY(["routes", "quality"]))
    assert quality.materialization.metadata["aqueduct/quarantined_rows"].value == 3
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observations and observations[0].asset_key == KEY(["routes", "merged"])
    signals = observations[0].event_specific_data.asset_observation.metadata["signals"].value
    assert next(s for s in signals if s["id"] == "enough_rows")["passed"] is True


def test_closed_regulator_skips_downstream(routes):
    write, out = routes
    result = _run(write(min_rows=100))
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert KEY(["routes", "good"]) not in materialized and not (out / "good").exists()
    assert KEY(["routes", "bad"]) in materialized
