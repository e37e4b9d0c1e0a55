"""The demo Blueprint runs on a real Spark standalone cluster named in aqueduct.yml.

A master and a one-core worker start on loopback from the pyspark package; aqueduct.yml
points `engine.spark.master_url` at the master (nothing else changes: the shipped demo
Blueprint, its generated data, `dagster job execute`). The run happens in a subprocess: this
test process already holds the suite's local-mode JVM, and a JVM's master cannot change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.spark_cluster import ClusterUnavailable, running_standalone_cluster

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


@pytest.fixture
def cluster(tmp_path):
    try:
        with running_standalone_cluster(tmp_path / "cluster", cores=1, memory="1g") as running:
            yield running
    except ClusterUnavailable as reason:
        pytest.fail(f"the standalone cluster did not start: {reason}")


@pytest.fixture
def demo_project(tmp_path):
    """The shipped demo Blueprint and 1,000 generated orders, as `make demo` has them."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(REPO / "gallery" / "generate_data.py"), "--out", str(data / "demo"),
         "--orders", "1000"],
        check=True, capture_output=True,
    )  # fmt: skip
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    shutil.copy(REPO / "blueprints" / "orders_daily.yml", blueprints / "orders_daily.yml")
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    expected = json.loads((data / "demo" / "expected.json").read_text())["valid_orders"]
    return {"root": tmp_path, "data": data, "blueprints": blueprints, "dagster_home": dagster_home,
            "expected": expected}  # fmt: skip


def test_demo_blueprint_runs_on_the_standalone_cluster_from_aqueduct_yml(cluster, demo_project):
    root = demo_project["root"]
    (root / "aqueduct.yml").write_text(
        "engine:\n"
        "  spark:\n"
        f"    master_url: {cluster.master_url}\n"
        "    conf: {spark.executor.memory: 512m, spark.cores.max: 1}\n"
    )
    env = dict(os.environ)
    env.pop("AQUEDUCT_SPARK_MASTER", None)  # aqueduct.yml alone names the cluster
    env.update(
        AQUEDUCT_CONFIG=str(root / "aqueduct.yml"),
        AQUEDUCT_BLUEPRINTS_DIR=str(demo_project["blueprints"]),
        AQUEDUCT_DATA_DIR=str(demo_project["data"]),
        AQUEDUCT_STATE_DIR=str(root / "state"),
        AQUEDUCT_PATCHES_DIR=str(root / "patches"),
        DAGSTER_HOME=str(demo_project["dagster_home"]),
        SPARK_LOCAL_IP="127.0.0.1",  # the executors reach the driver on loopback
        PYSPARK_PYTHON=sys.executable,
    )
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "job", "execute", "-m", "aqueduct_dagster.definitions", "-j", "orders_daily"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0 and "RUN_SUCCESS" in output, output[-4000:] + cluster.log_tails()

    # The work ran on the cluster: the master lists the run's application, which got the
    # worker's core, and the worker ran (and has since finished) an executor for it.
    master = cluster.master_state()
    apps = master.get("completedapps", []) + master.get("activeapps", [])
    assert [app["name"] for app in apps] == ["aqueduct"], master
    assert apps[0]["cores"] == 1
    executors = cluster.worker_state()
    finished = executors.get("finishedexecutors", []) + executors.get("executors", [])
    assert [e["appid"] for e in finished] == [apps[0]["id"]], executors

    # The Delta table, read back without Spark.
    import pyarrow  # noqa: F401  (before deltalake, or delta-rs aborts at exit)
    from deltalake import DeltaTable

    table = DeltaTable(str(demo_project["data"] / "demo" / "orders_clean"))
    assert table.to_pyarrow_dataset().count_rows() == demo_project["expected"]
    assert {"order_id", "customer_id", "amount", "status", "order_ts"} <= set(table.schema().to_arrow().names)
