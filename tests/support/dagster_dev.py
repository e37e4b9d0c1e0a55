"""Run a real `dagster dev` (webserver + daemon) for end-to-end tests, and talk GraphQL to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).parent / "dagster"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]


@contextmanager
def dagster_dev(dagster_home: Path, env: dict[str, str], timeout: float = 180,
                port: int | None = None) -> Iterator[DagsterDev]:  # fmt: skip
    """Start `dagster dev` in its own process group; stop the whole group afterwards."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    port = port or free_port()
    log = dagster_home / "dagster-dev.log"
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home), "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_serving(server, process, timeout)
        yield server
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)


def _wait_until_serving(server: DagsterDev, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited early:\n{server.log.read_text()[-3000:]}")
        try:
            data = server.graphql("{ version }")
            if data.get("version"):
                return
        except (OSError, AssertionError):
            pass
        time.sleep(1)
    raise TimeoutError(f"dagster dev not serving after {timeout}s:\n{server.log.read_text()[-3000:]}")


LOCATION = "aqueduct_dagster.definitions"

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RUNS_BY_TAG = """
query($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) { ... on Runs { results { runId status } } }
}
"""
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def launch_run(server: DagsterDev, job: str, run_config: dict[str, Any] | None = None,
               tags: dict[str, str] | None = None) -> str:  # fmt: skip
    params: dict[str, Any] = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "jobName": job},
        "runConfigData": run_config or {},
    }
    if tags:  # e.g. {"dagster/partition": key}: what the launchpad sends for a picked partition
        params["executionMetadata"] = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
    result = server.graphql(LAUNCH, {"params": params})["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise AssertionError(f"launching {job} failed: {result}")
    return result["run"]["runId"]


def wait_for_run(server: DagsterDev, run_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server.graphql(RUN_STATUS, {"id": run_id})["runOrError"].get("status")
        if status in TERMINAL:
            return status
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s:\n{server.log.read_text()[-3000:]}")


def wait_for_tagged_run(server: DagsterDev, key: str, value: str, timeout: float = 300) -> tuple[str, str]:
    """The first run tagged key=value (e.g. the heal of a failed run), once it has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = server.graphql(RUNS_BY_TAG, {"key": key, "value": value})["runsOrError"]["results"]
        if runs and runs[0]["status"] in TERMINAL:
            return runs[0]["runId"], runs[0]["status"]
        time.sleep(1)
    raise TimeoutError(f"no finished run tagged {key}={value} after {timeout}s:\n{server.log.read_text()[-3000:]}")
