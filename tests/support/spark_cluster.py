"""A throwaway Spark standalone cluster for tests: one master and one worker on loopback.

Both come from the pyspark package itself (`pyspark/bin/spark-class`; pip's pyspark ships
no sbin scripts). Ports are free ones picked at start; the worker gets one core and little
memory. Each daemon runs in its own process group, so stopping it also stops the executor
JVMs the worker launched, even when the test failed half-way.
"""

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
from dataclasses import dataclass
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"


class ClusterUnavailable(RuntimeError):
    """The master or the worker did not come up (the log tails say why)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class StandaloneCluster:
    master_url: str  # spark://127.0.0.1:PORT
    master_web_url: str  # http://127.0.0.1:PORT
    worker_web_url: str
    logs: Path

    def master_state(self) -> dict:
        """The master's JSON endpoint: workers, active and completed applications."""
        with urllib.request.urlopen(f"{self.master_web_url}/json", timeout=10) as response:
            return json.load(response)

    def worker_state(self) -> dict:
        with urllib.request.urlopen(f"{self.worker_web_url}/json", timeout=10) as response:
            return json.load(response)

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)


def cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        # Executors start Python workers (UDFs) with the venv's interpreter.
        PYSPARK_PYTHON=sys.executable,
    )
    for key in ("PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR"):
        env.pop(key, None)
    return env


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    handle = log.open("w")
    try:
        return subprocess.Popen(
            [str(SPARK_CLASS), *args], stdout=handle, stderr=subprocess.STDOUT, env=env,
            cwd=log.parent, start_new_session=True,
        )  # fmt: skip
    finally:
        handle.close()


def _stop(process: subprocess.Popen, timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except (ProcessLookupError, PermissionError):
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@contextmanager
def running_standalone_cluster(
    work: Path, *, cores: int = 1, memory: str = "1g", timeout: float = 120
) -> Iterator[StandaloneCluster]:
    """Start a master and one worker under `work`, yield once the worker is ALIVE, stop both."""
    if not SPARK_CLASS.is_file():
        raise ClusterUnavailable(f"{SPARK_CLASS} is missing: is pyspark installed in this venv?")
    work.mkdir(parents=True, exist_ok=True)
    env = cluster_env()
    port, web_port, worker_web_port = free_port(), free_port(), free_port()
    cluster = StandaloneCluster(
        master_url=f"spark://127.0.0.1:{port}",
        master_web_url=f"http://127.0.0.1:{web_port}",
        worker_web_url=f"http://127.0.0.1:{worker_web_port}",
        logs=work,
    )
    processes: list[subprocess.Popen] = []
    try:
        processes.append(_start(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(web_port)],
            work / "master.log", env,
        ))  # fmt: skip
        processes.append(_start(
            ["org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
             "--cores", str(cores), "--memory", memory, "--webui-port", str(worker_web_port),
             "--work-dir", str(work / "worker")],
            work / "worker.log", env,
        ))  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            for process in processes:
                if process.poll() is not None:
                    raise ClusterUnavailable(
                        f"a cluster daemon exited with {process.returncode}\n{cluster.log_tails()}"
                    )
            try:
                workers = cluster.master_state().get("workers", [])
                if any(w.get("state") == "ALIVE" for w in workers):
                    break
            except (OSError, ValueError):
                # Not up yet: refused, or (just started) an empty page instead of JSON.
                pass
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"no ALIVE worker after {timeout:.0f} s\n{cluster.log_tails()}")
            time.sleep(0.5)
        yield cluster
    finally:
        for process in reversed(processes):  # the worker first: it stops its executors
            _stop(process)
