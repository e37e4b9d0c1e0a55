"""deploy/dagster.yaml, the at-scale Dagster instance, works as written against PostgreSQL.

First the instance it describes (Postgres storage, queued run coordinator with per-Blueprint
limits, DefaultRunLauncher, run monitoring); then a Blueprint run going the whole way:
`dagster job launch` queues it, `dagster-daemon run` dequeues it, the launcher starts a run
worker, and the run's events land in PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY_INSTANCE = REPO / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture
def deploy_home(postgres_server, tmp_path, monkeypatch):
    """A DAGSTER_HOME holding deploy/dagster.yaml verbatim, its database a fresh one."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DEPLOY_INSTANCE.read_text())
    url = postgres_server.create_database("dagster").replace("postgresql://", "postgresql+psycopg2://")
    monkeypatch.setenv("AQUEDUCT_DAGSTER_PG_URL", url)
    return home


def test_the_deploy_instance_is_postgres_queued_and_launches_runs_as_processes(deploy_home):
    instance = dg.DagsterInstance.from_config(str(deploy_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        limits = {limit["key"]: limit for limit in coordinator.get_run_queue_config().tag_concurrency_limits}
        assert limits["aqueduct/blueprint"]["limit"] == 1
        assert limits["aqueduct/blueprint"]["value"] == {"applyLimitPerUniqueValue": True}
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        assert instance.run_monitoring_enabled
    finally:
        instance.dispose()


@pytest.mark.e2e
def test_a_blueprint_run_goes_through_the_queue_the_daemon_and_the_launcher(deploy_home, tmp_path):
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, str(REPO / "gallery" / "generate_data.py"), "--out", str(data / "demo"),
         "--orders", "200", "--customers", "20"],
        check=True, capture_output=True,
    )  # fmt: skip
    (tmp_path / "aqueduct.yml").write_text("{}\n")  # the defaults, whatever the checkout holds
    env = {
        **os.environ,
        "AQUEDUCT_CONFIG": str(tmp_path / "aqueduct.yml"),
        "DAGSTER_HOME": str(deploy_home),
        "AQUEDUCT_BLUEPRINTS_DIR": str(REPO / "blueprints"),
        "AQUEDUCT_DATA_DIR": str(data),
        "AQUEDUCT_STATE_DIR": str(tmp_path / "state"),
        "AQUEDUCT_PATCHES_DIR": str(tmp_path / "patches"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    workspace = str(REPO / "workspace.yaml")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", workspace], cwd=REPO, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    instance = dg.DagsterInstance.from_config(str(deploy_home))
    try:
        launched = subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-w", workspace, "-j", "orders_daily"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="orders_daily"))
        assert len(runs) == 1
        run_id = runs[0].run_id
        deadline = time.monotonic() + 480
        while True:
            run = instance.get_run_by_id(run_id)
            if run.is_finished:
                break
            assert daemon.poll() is None, f"the daemon exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"run {run_id} is {run.status}:\n{log.read_text()[-3000:]}"
            time.sleep(2)
        events = {record.dagster_event.event_type_value for record in instance.all_logs(run_id)
                  if record.dagster_event is not None}  # fmt: skip
        assert run.status == dg.DagsterRunStatus.SUCCESS, (events, log.read_text()[-3000:])
        # Queued by the coordinator, started by the daemon, run by a launched worker process.
        assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_START", "PIPELINE_SUCCESS"} <= events
        started = next(r for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START))
        assert started.dagster_event.pid not in (None, os.getpid(), daemon.pid)
        assert run.tags["aqueduct/blueprint"] == "orders_daily"
        assert (data / "demo" / "orders_clean" / "_delta_log").is_dir()
    finally:
        instance.dispose()
        try:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(daemon.pid, signal.SIGKILL)
