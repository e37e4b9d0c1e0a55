"""BlueprintsComponent: found and scaffolded by the real `dg` CLI, its attributes shape the
Definitions, and its job runs on Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from aqueduct_dagster.dagster.component import BlueprintsComponent
from aqueduct_dagster.dagster.resources import SparkResource
from tests.support.dg_project import BLUEPRINT, write_data, write_dg_project

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
COMPONENT = "aqueduct_dagster.dagster.component.BlueprintsComponent"
DG = str(Path(sys.executable).with_name("dg"))

def dg_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEDUCT_")}
    done = subprocess.run([DG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_dg_lists_scaffolds_and_loads_the_component(tmp_path):
    listed = json.loads(dg_cli("list", "components", "--json", cwd=tmp_path).stdout)
    assert COMPONENT in [item["key"] for item in listed["items"]]

    project = write_dg_project(tmp_path / "lake")
    dg_cli("scaffold", "defs", COMPONENT, "orders", cwd=project)
    component_dir = project / "my_lake" / "defs" / "orders"
    assert yaml.safe_load((component_dir / "defs.yaml").read_text()) == {
        "type": COMPONENT, "attributes": {"blueprints_dir": "blueprints"},
    }  # fmt: skip
    assert (component_dir / "blueprints").is_dir()

    (component_dir / "blueprints" / "orders.yml").write_text(BLUEPRINT)
    defs = json.loads(dg_cli("list", "defs", "--json", cwd=project).stdout)
    assets = {a["asset_key"]: a for a in defs["assets"]}
    assert {"orders/raw_orders", "orders/clean_orders", "orders/orders_out"} <= set(assets)
    assert assets["orders/clean_orders"]["dependency_keys"] == ["orders/raw_orders"]
    assert "orders" in [job["name"] for job in defs["jobs"]]
    assert [s["name"] for s in defs["sensors"]] == ["aqueduct_heal_on_failure"]


def test_attributes_shape_the_definitions(tmp_path):
    data = write_data(tmp_path / "data")
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(BlueprintsComponent, "orders", scaffold_params={"blueprints_dir": "bps"})
        (path / "bps" / "orders.yml").write_text(BLUEPRINT)
        # A second Blueprint with a schedule and a run hook: healing off keeps both.
        hooked = BLUEPRINT.replace("id: orders", "id: nightly", 1)
        (path / "bps" / "nightly.yml").write_text(
            hooked + 'schedule: "0 6 * * *"\nhooks:\n  on_success:\n    - webhook: http://127.0.0.1:9/done\n'
        )
        attributes = {
            "blueprints_dir": "bps",
            "context": {"data_dir": str(data)},
            "profile": "strict",
            "spark_master": "local[1]",
            "healing": False,
            "translation": {"key_prefix": "lake", "group_name": "lake_{{ data.manifest.blueprint_id }}"},
        }
        (path / "defs.yaml").write_text(yaml.safe_dump({"type": COMPONENT, "attributes": attributes}))
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, BlueprintsComponent)
            spec = defs.resolve_assets_def(dg.AssetKey(["lake", "orders", "clean_orders"])).specs_by_key
            clean = spec[dg.AssetKey(["lake", "orders", "clean_orders"])]
            assert clean.group_name == "lake_orders"
            # the profile beat the file's context; the override pointed the Ingress at `data`
            assert "amount > 8" in clean.metadata["aqueduct/sql"].value
            raw = defs.resolve_assets_def(dg.AssetKey(["lake", "orders", "raw_orders"]))
            assert raw.specs_by_key[raw.key].metadata["dagster/uri"] == f"file://{data}/orders.csv"
            # healing off: no failure sensor and no heal/approve/reject jobs; the schedule and
            # the hook sensor stay
            assert [sensor.name for sensor in defs.sensors or []] == ["aqueduct_hooks_on_success"]
            assert sorted(job.name for job in defs.jobs) == ["nightly", "orders"]
            assert [schedule.cron_schedule for schedule in defs.schedules or []] == ["0 6 * * *"]
            spark = defs.resources["aqueduct_spark"]
            assert isinstance(spark, SparkResource) and spark.master == "local[1]"


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_component_job_runs_on_spark(spark, tmp_path):
    data = write_data(tmp_path / "data")
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(BlueprintsComponent, "orders")
        (path / "blueprints" / "orders.yml").write_text(BLUEPRINT)
        attributes = {"context": {"data_dir": str(data)}, "profile": "strict"}
        (path / "defs.yaml").write_text(yaml.safe_dump({"type": COMPONENT, "attributes": attributes}))
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert [s.name for s in defs.sensors] == ["aqueduct_heal_on_failure"]
            result = defs.resolve_job_def("orders").execute_in_process(
                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
            )
    assert result.success
    assert pq.read_table(data / "orders_clean").to_pydict() == {"order_id": [1], "amount": [10.5]}
