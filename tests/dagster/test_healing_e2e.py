"""The healing loop with the real Dagster daemon and webserver (`dagster dev`).

An upstream export renames `amount` to `order_amount`. Two copies of the demo blueprint run:
- `orders_human` (approval: human): the run fails, the failure sensor launches a heal run,
  the offline rules stage a patch, the approve job applies it as a new revision, and the
  next run succeeds;
- `orders_auto` (approval: auto), run from a terminal with `aqueduct run`: the daemon heals it
  too; the heal run applies the patch itself after a full re-run on scratch outputs, and the
  next run succeeds without anyone acting.
Spark is the warm default, as `make dev` runs it: a managed Spark Connect server of the state
folder; the Spark event logs show that every run, heal and sandbox used it.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow  # noqa: F401  (before deltalake)
import pytest
from deltalake import DeltaTable

from tests.dagster.conftest import _load_generator
from tests.support.dagster_dev import (
    REPO,
    dagster_dev,
    free_port,
    launch_run,
    wait_for_run,
    wait_for_tagged_run,
)

pytestmark = pytest.mark.e2e

RUN_MESSAGES = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { ... on MessageEvent { message } } } } }
"""
ASSET_SQL = """
query($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) { metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } }
}
"""
REVISIONS = """
query($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 5) { runId metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } }
  }
}
"""


@pytest.fixture
def drifted_project(tmp_path):
    generator = _load_generator()
    data = tmp_path / "data" / "demo"
    data.mkdir(parents=True)
    rng = random.Random(3)
    generator.write_customers(data / "customers.csv", 20, rng)
    valid = generator.write_orders(data / "orders.csv", 150, 20, rng, {"amount": "order_amount"})
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    source = (REPO / "blueprints" / "orders_daily.yml").read_text()
    for mode in ("human", "auto"):
        text = source.replace("id: orders_daily", f"id: orders_{mode}").replace("approval: human", f"approval: {mode}")
        text = text.replace("demo/orders_clean", f"demo/orders_clean_{mode}")
        (blueprints / f"orders_{mode}.yml").write_text(text)
    return tmp_path, valid


def test_failed_run_is_healed_by_the_daemon_in_human_and_auto_mode(drifted_project):
    root, valid = drifted_project
    port = free_port()
    env = {
        "AQUEDUCT_BLUEPRINTS_DIR": str(root / "blueprints"),
        "AQUEDUCT_DATA_DIR": str(root / "data"),
        "AQUEDUCT_STATE_DIR": str(root / "state"),
        "AQUEDUCT_PATCHES_DIR": str(root / "patches"),
        "AQUEDUCT_DAGSTER_URL": f"http://127.0.0.1:{port}",
        "AQUEDUCT_SENSOR_INTERVAL": "2",
    }
    # Warm Spark, as `make dev` and the deploy unit run it: every run, heal and sandbox below
    # takes the managed server of this state folder by default (master `auto`). Each JVM
    # writes its Spark event log into one folder, so afterwards it shows whose JVM did the work.
    events = root / "spark-events"
    events.mkdir()
    (root / "aqueduct.yml").write_text(json.dumps({"engine": {"spark": {"conf": {
        "spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{events}",
        "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false",
    }}}}))  # fmt: skip
    env["AQUEDUCT_CONFIG"] = str(root / "aqueduct.yml")
    aqueduct = str(Path(sys.executable).with_name("aqueduct"))
    spark_env = {**os.environ, **env, "SPARK_LOCAL_IP": "127.0.0.1"}
    up = subprocess.run([aqueduct, "spark", "up"], cwd=root, env=spark_env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        with dagster_dev(root / "home", env=env, port=port) as server:
            failed = {"human": launch_run(server, "orders_human")}
            # auto: run by `aqueduct run` in its own process, as a user would from a terminal: the
            # run has no code-location origin, and the daemon's sensor must heal it all the same.
            cli = subprocess.run(
                [aqueduct, "run", "orders_auto"], cwd=root, capture_output=True,
                text=True, timeout=600, env={**os.environ, **env, "DAGSTER_HOME": str(root / "home"), "SPARK_LOCAL_IP": "127.0.0.1"},
            )  # fmt: skip
            assert cli.returncode == 1, cli.stdout + cli.stderr
            failed["auto"] = re.search(r"run ([0-9a-f-]{36}) of job orders_auto", cli.stdout).group(1)
            for run_id in failed.values():
                assert wait_for_run(server, run_id) == "FAILURE"

            # human: the sensor launched a heal that staged a patch
            heal_run, status = wait_for_tagged_run(server, "aqueduct/heal_of", failed["human"])
            assert status == "SUCCESS"
            pending = list((root / "patches" / "pending").glob("*.json"))
            assert len(pending) == 1
            record = json.loads(pending[0].read_text())
            assert record["failed_module"] == "clean_orders"
            assert "order_amount" in record["diff"]
            blueprint = root / "blueprints" / "orders_human.yml"
            assert "order_amount" not in blueprint.read_text()

            # The staged patch waits as a partition of the approve job: picking it is approving it.
            patch_id = record["patch"]["patch_id"]
            instance = dg.DagsterInstance.from_config(str(root / "home"))
            assert instance.get_dynamic_partitions("aqueduct_pending_patches") == [patch_id]
            approve = launch_run(server, "aqueduct_approve_patch", tags={"dagster/partition": patch_id})
            assert wait_for_run(server, approve) == "SUCCESS"
            assert instance.get_dynamic_partitions("aqueduct_pending_patches") == []
            assert "order_amount" in blueprint.read_text()
            revision = server.graphql(REVISIONS, {"path": ["orders_human", "blueprint_revision"]})["assetOrError"]
            entries = {e["label"]: e for e in revision["assetMaterializations"][0]["metadataEntries"]}
            assert entries["revision"]["intValue"] == 1
            assert entries["patch_id"]["text"] == record["patch"]["patch_id"]

            # the code location was reloaded: the UI serves the patched definitions
            messages = [e.get("message", "") for e in server.graphql(RUN_MESSAGES, {"id": approve})["logsForRun"]["events"]]
            assert any("reloaded code location 'aqueduct_dagster.definitions'" in m for m in messages), messages
            node = server.graphql(ASSET_SQL, {"path": ["orders_human", "clean_orders"]})["assetNodes"][0]
            sql = next(e["mdStr"] for e in node["metadataEntries"] if e["label"] == "aqueduct/sql")
            assert "order_amount AS amount" in sql

            rerun = launch_run(server, "orders_human")
            assert wait_for_run(server, rerun) == "SUCCESS"

            # auto: the heal run applied the patch with no one acting
            _, status = wait_for_tagged_run(server, "aqueduct/heal_of", failed["auto"])
            assert status == "SUCCESS"
            assert "order_amount" in (root / "blueprints" / "orders_auto.yml").read_text()
            auto_rerun = launch_run(server, "orders_auto")
            assert wait_for_run(server, auto_rerun) == "SUCCESS"

    finally:
        subprocess.run([aqueduct, "spark", "down"], cwd=root, env=spark_env, capture_output=True, timeout=120)

    # Every Spark job of the runs, the heals and their sandboxes ran on the warm server: no
    # run worker started a JVM of its own (a classic fallback writes a log of its own app).
    apps = {}
    for log in events.iterdir():
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        name = next(e["App Name"] for e in lines if e["Event"] == "SparkListenerApplicationStart")
        apps[name] = sum(e["Event"] == "SparkListenerJobStart" for e in lines)
    assert list(apps) == [f"aqueduct-connect ({(root / 'state').resolve()})"], apps
    assert next(iter(apps.values())) >= 10, apps

    for mode in ("human", "auto"):
        table = DeltaTable(str(root / "data" / "demo" / f"orders_clean_{mode}"))
        assert table.to_pyarrow_dataset().count_rows() == valid
    assert list((root / "state" / "revisions" / "orders_auto").iterdir())
