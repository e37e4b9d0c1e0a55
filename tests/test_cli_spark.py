"""`aqueduct spark up|down|status`: the managed Spark Connect server's whole life, for real.

The lifecycle test starts its own server (a JVM, ~15 s, twice with the restart), apart from
the suite's, because it kills and stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main
from aqueduct_dagster.engine import connect_server
from aqueduct_dagster.engine.connect_server import SparkServerError, read_info, start_server


@pytest.fixture
def state(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(folder))
    monkeypatch.chdir(tmp_path)  # no aqueduct.yml here
    return folder


def spark_cli(*args: str):
    return CliRunner().invoke(main, ["spark", *args], catch_exceptions=False)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z")


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.e2e
def test_up_status_restart_down(state):
    started = spark_cli("up", "--timeout", "240")
    assert started.exit_code == 0, started.output
    info = read_info(state)
    assert info is not None and info.status == "running"
    assert json.loads((state / "spark-connect" / "server.json").read_text())["port"] == info.port
    assert info.url == f"sc://127.0.0.1:{info.port}" and f"at {info.url}" in started.output
    try:
        status = spark_cli("status", "--json")
        assert status.exit_code == 0, status.output
        reported = json.loads(status.output)
        assert reported["healthy"] and reported["jvm_pid"] == info.jvm_pid

        again = spark_cli("up")  # idempotent: the running server, not a second one
        assert again.exit_code == 0 and read_info(state).supervisor_pid == info.supervisor_pid

        # The JVM dies: the supervisor starts a new one on the same port.
        os.kill(info.jvm_pid, signal.SIGKILL)
        assert _wait_for(lambda: (read_info(state) or info).jvm_pid != info.jvm_pid, 30)
        assert _wait_for(lambda: connect_server.server_status(state).healthy, 240)
        restarted = read_info(state)
        assert restarted.restarts == 1 and restarted.port == info.port
        assert "listens" in (state / "spark-connect" / "supervisor.log").read_text()
    finally:
        stopped = spark_cli("down")
    assert stopped.exit_code == 0 and "stopped" in stopped.output
    assert _gone(restarted.jvm_pid) and _gone(info.supervisor_pid) and _gone(info.jvm_pid)
    assert read_info(state) is None
    with socket.socket() as probe:  # nothing listens on the port any more
        assert probe.connect_ex(("127.0.0.1", info.port)) != 0
    status = spark_cli("status")
    assert status.exit_code == 3 and "not running" in status.output
    assert "no Spark Connect server was running" in spark_cli("down").output


@pytest.mark.e2e
def test_up_in_the_foreground_is_a_service_managers_process(state, tmp_path):
    """As systemd runs deploy/aqueduct-spark.service: the command stays, is the supervisor
    (same pid: `down`, `status` and the runs recognise it), and SIGTERM stops it cleanly."""
    import subprocess
    import sys

    command = [str(Path(sys.executable).parent / "aqueduct"), "spark", "up", "--foreground"]
    output = tmp_path / "service.out"
    with output.open("wb") as sink:
        service = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        assert _wait_for(lambda: connect_server.server_status(state).healthy, 240), output.read_text()
        info = read_info(state)
        assert info.supervisor_pid == service.pid and service.poll() is None
        assert spark_cli("up").exit_code == 0 and read_info(state).supervisor_pid == service.pid
        second = spark_cli("up", "--foreground")
        assert second.exit_code == 3 and "already runs" in second.output
        assert "aqueduct spark down" in second.output

        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0
        assert _gone(info.jvm_pid)
        assert read_info(state) is None
        said = output.read_text()
        assert "in the foreground" in said and "supervisor: stopped" in said
    finally:
        if service.poll() is None:
            service.kill()
            spark_cli("down")


def test_status_without_a_server_exits_3(state):
    outcome = spark_cli("status")
    assert outcome.exit_code == 3
    assert "not running" in outcome.output


def test_a_taken_port_is_refused_with_a_hint(state):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = spark_cli("up", "--port", str(port))
    assert outcome.exit_code == 3
    assert f"port {port} on 127.0.0.1 is taken" in outcome.output
    assert "leave --port out" in outcome.output
    assert read_info(state) is None


def test_missing_java_is_refused_with_a_hint(state, monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(SparkServerError) as caught:
        start_server(state)
    assert "no java executable" in caught.value.message
    assert "JAVA_HOME" in caught.value.hint


def test_missing_jars_are_refused_with_a_hint(state, monkeypatch, tmp_path):
    (tmp_path / "empty-jars").mkdir()
    monkeypatch.setenv("AQUEDUCT_JARS_DIR", str(tmp_path / "empty-jars"))
    outcome = spark_cli("up")
    assert outcome.exit_code == 3
    assert "make jars" in outcome.output


def test_a_connect_master_for_the_server_itself_is_refused(state):
    outcome = spark_cli("up", "--master", "sc://127.0.0.1:15002")
    assert outcome.exit_code == 3
    assert "--master local[2]" in outcome.output


def test_a_stale_state_file_is_reported_and_cleared(state):
    folder = state / "spark-connect"
    folder.mkdir(parents=True)
    dead = connect_server.ServerInfo(
        url="sc://127.0.0.1:1", port=1, state_dir=str(state), cwd=str(state), master="local[2]",
        supervisor_pid=_dead_pid(),
    )
    connect_server._write_info(state, dead)
    outcome = spark_cli("status")
    assert outcome.exit_code == 3 and "stale server.json" in outcome.output
    assert connect_server.managed_url(state)[0] is None
    assert "no Spark Connect server was running" in spark_cli("down").output
    assert read_info(state) is None


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_deploy_unit_runs_a_command_the_cli_accepts():
    """deploy/aqueduct-spark.service starts `aqueduct spark up --foreground`: the flags it
    passes are the CLI's (a renamed option would leave a deployment without warm Spark)."""
    import configparser
    import shlex

    from aqueduct_dagster.cli.spark import spark_up

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(Path(__file__).resolve().parents[1] / "deploy" / "aqueduct-spark.service")
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert Path(argv[0]).name == "aqueduct" and argv[1:3] == ["spark", "up"]
    context = spark_up.make_context("up", argv[3:])
    assert context.params["foreground"] is True
    assert unit["Service"]["KillSignal"] == "SIGTERM" and unit["Service"]["Restart"] == "on-failure"
