"""The project's managed Spark Connect server: a warm JVM that runs and heals connect to.

`start_server` (`aqueduct spark up`) launches a small supervisor process (`python -m
aqueduct_dagster.engine.connect_server supervise DIR`), detached from the caller. The
supervisor starts the Spark Connect server JVM from the pyspark package (`spark-submit
--class ...SparkConnectServer`), bound to 127.0.0.1, with Delta and the project's jars, and
starts it again when it dies. Everything lives in `<state>/spark-connect/`:

* `server.json` -- pids, port, URL and status, written by the supervisor (read by everyone);
* `launch.json` -- the JVM command line and environment the supervisor runs;
* `server.log` (the JVM's output) and `supervisor.log`.

`stop_server` (`aqueduct spark down`) asks the supervisor to stop, which stops the JVM
first; whatever is still alive after a grace period is killed, so no process is left behind.
The health check is a real round trip: the server analyses `SELECT 1` in a session of its own.

The state folder, master, conf and jars folder are arguments (`aqueduct_dagster.settings`
resolves them). The environment is read only to launch processes: JAVA_HOME to find java (as
spark-class does), PYSPARK_PYTHON for the server's Python workers, and the inherited
environment the supervisor and JVM start with (`_clean_env`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aqueduct_dagster.engine.connect_url import check_reachable, connect_address
from aqueduct_dagster.engine.spark_conf import engine_spark_conf, write_log_config
from aqueduct_dagster.errors import ConfigError

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
HOST = "127.0.0.1"
#: What the JVM logs once its gRPC service listens (the supervisor waits for it).
_STARTED_LINE = "Spark Connect server started"
#: A JVM that dies more often than this within the window is given up on.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 600.0
STOP_GRACE_SECONDS = 20.0


class SparkServerError(ConfigError):
    """The managed Spark Connect server cannot be started, reached or stopped."""


@dataclass
class ServerInfo:
    """What `server.json` holds."""

    url: str
    port: int
    state_dir: str
    cwd: str
    master: str
    supervisor_pid: int
    jvm_pid: int | None = None
    #: starting | running | restarting | failed
    status: str = "starting"
    restarts: int = 0
    started_at: float = field(default_factory=time.time)
    log: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class ServerStatus:
    """`aqueduct spark status`: what runs, and whether it answers."""

    state_dir: Path
    info: ServerInfo | None
    supervisor_alive: bool
    jvm_alive: bool
    healthy: bool
    detail: str

    @property
    def running(self) -> bool:
        return self.info is not None and self.supervisor_alive

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "running": self.running,
            "healthy": self.healthy,
            "supervisor_alive": self.supervisor_alive,
            "jvm_alive": self.jvm_alive,
            "detail": self.detail,
            **(asdict(self.info) if self.info else {}),
        }


# --------------------------------------------------------------------------- files


def server_dir(state_dir: Path) -> Path:
    return Path(state_dir).expanduser().resolve() / "spark-connect"


def _info_path(state_dir: Path) -> Path:
    return server_dir(state_dir) / "server.json"


def read_info(state_dir: Path) -> ServerInfo | None:
    try:
        return ServerInfo.from_dict(json.loads(_info_path(state_dir).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def _write_info(state_dir: Path, info: ServerInfo) -> None:
    """Atomically (readers never see half a file)."""
    target = _info_path(state_dir)
    temporary = target.with_name(f".{target.name}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    temporary.replace(target)


# --------------------------------------------------------------------------- health


def probe(url: str, timeout: float = 5.0) -> str:
    """The server's Spark version, after a real round trip; raises when it does not answer.

    Plain gRPC, not a pyspark session: no retry loop (the Connect client retries for
    minutes), no process-wide session state, and a hard deadline.
    """
    import grpc
    from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc, relations_pb2


    host, port = connect_address(url)
    session_id = str(uuid.uuid4())
    user = base_pb2.UserContext(user_id="aqueduct-health")
    select_one = relations_pb2.Relation(sql=relations_pb2.SQL(query="SELECT 1 AS ok"))
    query = base_pb2.Plan(root=select_one)
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = base_pb2_grpc.SparkConnectServiceStub(channel)

        def analyse(**request: Any) -> Any:
            return stub.AnalyzePlan(
                base_pb2.AnalyzePlanRequest(session_id=session_id, user_context=user, **request),
                timeout=timeout,
            )

        version = analyse(spark_version=base_pb2.AnalyzePlanRequest.SparkVersion()).spark_version
        analyse(schema=base_pb2.AnalyzePlanRequest.Schema(plan=query))  # the analyser runs
        with contextlib.suppress(grpc.RpcError):
            stub.ReleaseSession(
                base_pb2.ReleaseSessionRequest(session_id=session_id, user_context=user),
                timeout=timeout,
            )
    return str(version.version)


def is_healthy(url: str, timeout: float = 5.0) -> bool:

    try:
        check_reachable(url, timeout=min(timeout, 2.0))
        probe(url, timeout=timeout)
    except Exception:  # noqa: BLE001 - not answering, for whatever reason
        return False
    return True


def managed_url(state_dir: Path, timeout: float = 10.0) -> tuple[str | None, str]:
    """(URL, "") of this project's managed server when it runs and answers, else (None, why)."""

    info = read_info(state_dir)
    if info is None:
        return None, f"none was started for {Path(state_dir).expanduser().resolve()}"
    if not _supervisor_alive(info.supervisor_pid):
        return None, "its supervisor is gone (stale server.json)"
    try:
        check_reachable(info.url, timeout=min(timeout, 3.0))
        probe(info.url, timeout=timeout)
    except Exception as error:  # noqa: BLE001 - not answering, for whatever reason
        return None, f"{info.url} ({info.status}) does not answer: {_first_line(error)}"
    return info.url, ""


def server_status(state_dir: Path) -> ServerStatus:
    state = Path(state_dir).expanduser().resolve()
    info = read_info(state)
    if info is None:
        return ServerStatus(state, None, False, False, False, "not running (no server.json)")
    supervisor = _supervisor_alive(info.supervisor_pid)
    jvm = info.jvm_pid is not None and _alive(info.jvm_pid, _JVM_MARKERS)
    if not supervisor:
        detail = "not running (stale server.json: its supervisor is gone)"
        if info.status == "failed":
            detail = f"not running: the JVM kept dying, see {server_dir(state) / 'supervisor.log'}"
        return ServerStatus(state, info, False, jvm, False, detail)
    try:
        version = probe(info.url)
    except Exception as error:  # noqa: BLE001
        detail = f"{info.status}, not answering yet ({_first_line(error)})"
        return ServerStatus(state, info, True, jvm, False, detail)
    detail = f"healthy: Spark {version} at {info.url}"
    return ServerStatus(state, info, True, jvm, True, detail)


# --------------------------------------------------------------------------- start / stop


def start_server(
    state_dir: Path,
    *,
    port: int | None = None,
    master: str = "local[2]",
    conf: dict[str, Any] | None = None,
    jars_dir: Path | None = None,
    timeout: float = 180.0,
) -> ServerInfo:
    """Start the project's server (or return the running one) and wait until it answers."""

    state = Path(state_dir).expanduser().resolve()
    running = read_info(state)
    if running is not None and _supervisor_alive(running.supervisor_pid):
        return _wait_until_running(state, running.supervisor_pid, timeout)
    folder = _prepare_launch(state, running, port=port, master=master, conf=conf, jars_dir=jars_dir)
    with open(folder / "supervisor.log", "ab") as supervisor_log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", __name__, "supervise", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=supervisor_log,
            stderr=subprocess.STDOUT,
            cwd=os.getcwd(),
            env=_clean_env(),
            # Its own session: a Ctrl-C in the shell that ran `up` must not reach the server.
            start_new_session=True,
        )
    _CHILDREN[supervisor.pid] = supervisor
    try:
        return _wait_until_running(state, supervisor.pid, timeout)
    except BaseException:
        stop_server(state)
        if supervisor.poll() is None:  # it had not written server.json yet
            supervisor.terminate()
            try:
                supervisor.wait(STOP_GRACE_SECONDS + 5)
            except subprocess.TimeoutExpired:
                supervisor.kill()
        raise


def run_server_in_foreground(
    state_dir: Path,
    *,
    port: int | None = None,
    master: str = "local[2]",
    conf: dict[str, Any] | None = None,
    jars_dir: Path | None = None,
) -> NoReturn:
    """Become the supervisor, in this process, until SIGTERM or SIGINT: for a service manager
    (systemd, Docker, supervisord, a Kubernetes sidecar) that keeps the process itself. The
    JVM is restarted when it dies, as with `start_server`; its output goes to server.log and
    the supervisor's lines to this process's stdout. Exit code 0 once stopped.

    The process is replaced (exec, same pid) by the supervisor's own command line, which
    `down`, `status` and the runs recognise the supervisor by."""
    state = Path(state_dir).expanduser().resolve()
    running = read_info(state)
    if running is not None and _supervisor_alive(running.supervisor_pid):
        raise SparkServerError(
            f"a server of this state folder already runs ({running.url}, supervisor pid "
            f"{running.supervisor_pid}); a second one would fight over its state file",
            hint="stop it first (`aqueduct spark down`), or let the service manager own it alone",
        )
    folder = _prepare_launch(state, running, port=port, master=master, conf=conf, jars_dir=jars_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", __name__, "supervise", str(folder)], _clean_env())


def _prepare_launch(
    state: Path,
    running: ServerInfo | None,
    *,
    port: int | None,
    master: str,
    conf: dict[str, Any] | None,
    jars_dir: Path | None,
) -> Path:
    """Check what the server needs and write its launch.json; the server's folder."""
    folder = server_dir(state)
    folder.mkdir(parents=True, exist_ok=True)
    _clear_stale(state, running)

    if master.startswith(("sc://", "managed")):
        raise SparkServerError(
            f"the managed server runs Spark itself; master '{master}' names a Connect server",
            hint="give it a local or cluster master, e.g. --master local[2]",
        )
    java = java_executable()
    port = port or _free_port()
    _require_free(port)

    settings = engine_spark_conf(master, state, conf or {}, jars_dir)
    settings["spark.connect.grpc.binding.address"] = HOST
    settings["spark.connect.grpc.binding.port"] = str(port)
    # Its own log configuration (the line saying it listens is needed), replacing the session's.
    log4j = write_log_config(folder, info_loggers=(SERVER_CLASS,))
    settings["spark.driver.extraJavaOptions"] += f" -Dlog4j2.configurationFile={log4j.as_uri()}"
    spark_submit = Path(_pyspark_home()) / "bin" / "spark-submit"
    argv = [str(spark_submit), "--class", SERVER_CLASS, "--master", master]
    argv += ["--name", f"aqueduct-connect ({state})"]
    for key, value in settings.items():
        argv += ["--conf", f"{key}={value}"]
    env = {
        "SPARK_LOCAL_IP": HOST,
        # Python UDFs run on workers the server starts: with this project's interpreter.
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON") or sys.executable,
        "JAVA_HOME": str(Path(java).resolve().parents[1]),
    }
    launch = {"argv": argv, "env": env, "cwd": os.getcwd(), "url": f"sc://{HOST}:{port}",
              "port": port, "master": master, "state_dir": str(state)}  # fmt: skip
    (folder / "launch.json").write_text(json.dumps(launch, indent=2), encoding="utf-8")
    return folder


def stop_server(state_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the supervisor and its JVM; True when something was running."""
    state = Path(state_dir).expanduser().resolve()
    info = read_info(state)
    if info is None:
        return False
    supervisor = info.supervisor_pid if _supervisor_alive(info.supervisor_pid) else None
    jvm = info.jvm_pid if info.jvm_pid and _alive(info.jvm_pid, _JVM_MARKERS) else None
    if supervisor is not None:
        _signal(supervisor, signal.SIGTERM)
    elif jvm is not None:
        _signal(jvm, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid and _alive(pid) for pid in (supervisor, jvm)):
            break
        time.sleep(0.2)
    else:
        for pid in (jvm, supervisor):
            if pid:
                _signal(pid, signal.SIGKILL)
        time.sleep(0.5)
    for pid in (jvm, supervisor):
        if pid:
            _alive(pid)  # reaps it when it is our own child
    _info_path(state).unlink(missing_ok=True)
    return supervisor is not None or jvm is not None


def _wait_until_running(state: Path, supervisor_pid: int, timeout: float) -> ServerInfo:
    deadline = time.monotonic() + timeout
    folder = server_dir(state)
    while time.monotonic() < deadline:
        info = read_info(state)
        if not _supervisor_alive(supervisor_pid):
            raise _start_failed(folder, "the server stopped while starting")
        if info is not None and info.status == "failed":
            raise _start_failed(folder, "the server JVM did not start")
        if info is not None and info.status == "running" and is_healthy(info.url):
            return info
        time.sleep(0.5)
    raise _start_failed(folder, f"the server did not answer within {timeout:.0f} s")


def _start_failed(folder: Path, what: str) -> SparkServerError:
    tail = _tail(folder / "server.log", 30) or _tail(folder / "supervisor.log", 15)
    hint = f"see {folder / 'server.log'}"
    if "Address already in use" in tail or "BindException" in tail:
        hint = "the port is taken: leave --port out to pick a free one, or choose another"
    elif "UnsupportedClassVersionError" in tail:
        hint = "Spark 4.2 needs Java 17 or 21: point JAVA_HOME at one"
    last = " | ".join(line.strip() for line in tail.splitlines()[-3:] if line.strip())
    return SparkServerError(f"{what}: {last[:600] or 'no output'}", hint=hint)


def _clear_stale(state: Path, info: ServerInfo | None) -> None:
    """A server.json whose supervisor died (killed -9, a reboot): stop a surviving JVM too."""
    if info is None:
        return
    if info.jvm_pid and _alive(info.jvm_pid, _JVM_MARKERS):
        _signal(info.jvm_pid, signal.SIGKILL)
    _info_path(state).unlink(missing_ok=True)


# --------------------------------------------------------------------------- environment


def find_java() -> tuple[str | None, str]:
    """(the java spark-submit will use, or None; where it was looked for): JAVA_HOME first, as
    spark-class does, else the PATH. The one place that reads JAVA_HOME (`aqueduct doctor` too)."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return (str(candidate) if candidate.is_file() else None), f"JAVA_HOME={home}"
    return shutil.which("java"), "the PATH"


def java_executable() -> str:
    """The java spark-submit will use; SparkServerError when there is none."""
    java, where = find_java()
    if java is None:
        raise SparkServerError(
            f"no java executable in {where}; the Spark Connect server is a JVM",
            hint="install Java 17 or 21 and set JAVA_HOME (`aqueduct doctor` checks it)",
        )
    return java


def _pyspark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind((HOST, 0))
        return int(probe_socket.getsockname()[1])


def _require_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        try:
            probe_socket.bind((HOST, port))
        except OSError:
            raise SparkServerError(
                f"port {port} on {HOST} is taken",
                hint="leave --port out to pick a free one, or choose another; "
                "`aqueduct spark status` tells whether this project's server runs",
            ) from None


def _clean_env() -> dict[str, str]:
    """Our environment without pyspark's Connect switches (they would make the JVM a client)."""
    env = dict(os.environ)
    for key in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_LOCAL_REMOTE", "MASTER"):
        env.pop(key, None)
    return env


# --------------------------------------------------------------------------- processes

#: Supervisors this process started: polled, so a dead one is reaped, not left a zombie.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


#: The JVM's command line names its class; a moment after its fork, the supervisor's.
_JVM_MARKERS = (SERVER_CLASS, "connect_server")


def _supervisor_alive(pid: int) -> bool:
    """Whether `pid` is still a supervisor of ours (its command line runs this module), not a
    process that took over the number of a dead one."""
    return _alive(pid, "connect_server")


def _alive(pid: int, marker: str | tuple[str, ...] | None = None) -> bool:
    """Whether `pid` runs (and, with `marker`, is the process we think: pids get reused)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: poll() also reaps it. (Its cmdline may still be ours for a moment
        # after the fork, so the marker would not be there yet.)
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return marker is None  # someone else's process took the pid
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        with contextlib.suppress(OSError):
            if (proc / "stat").read_text().split(") ", 1)[1].startswith("Z"):
                return False  # exited, waiting to be reaped
            if marker is not None:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
                markers = (marker,) if isinstance(marker, str) else marker
                return any(m in cmdline for m in markers)
    return True


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


# --------------------------------------------------------------------------- the supervisor


class _Supervisor:
    """Runs the JVM, restarts it when it dies, stops it on SIGTERM/SIGINT."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.launch = json.loads((folder / "launch.json").read_text(encoding="utf-8"))
        self.state = Path(self.launch["state_dir"])
        self.stopping = False
        self.jvm: subprocess.Popen[bytes] | None = None
        self.info = ServerInfo(
            url=self.launch["url"],
            port=int(self.launch["port"]),
            state_dir=str(self.state),
            cwd=self.launch["cwd"],
            master=self.launch["master"],
            supervisor_pid=os.getpid(),
            log=str(folder / "server.log"),
        )

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        crashes: list[float] = []
        try:
            while not self.stopping:
                code, became_ready = self._run_jvm_once()
                if self.stopping:
                    break
                now = time.time()
                crashes = [t for t in crashes if now - t < RESTART_WINDOW_SECONDS] + [now]
                self._say(f"the server JVM exited with code {code}")
                if not became_ready and self.info.restarts == 0:
                    return self._give_up("it never started; see server.log")
                if len(crashes) > MAX_RESTARTS:
                    window = f"{RESTART_WINDOW_SECONDS:.0f} s"
                    return self._give_up(f"it died {len(crashes)} times in {window}")
                self.info.restarts += 1
                self.info.status = "restarting"
                _write_info(self.state, self.info)
                time.sleep(min(2 ** len(crashes), 10))
        finally:
            self._stop_jvm()
            if self.info.status != "failed":
                _info_path(self.state).unlink(missing_ok=True)
            self._say("stopped")
        return 0

    def _run_jvm_once(self) -> tuple[int, bool]:
        log_path = self.folder / "server.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.jvm = subprocess.Popen(
                self.launch["argv"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.launch["cwd"],
                env={**_clean_env(), **self.launch["env"]},
                preexec_fn=_die_with_parent,
            )
        self.info.jvm_pid = self.jvm.pid
        self.info.status = "starting" if self.info.restarts == 0 else "restarting"
        _write_info(self.state, self.info)
        self._say(f"started the server JVM (pid {self.jvm.pid}) for {self.info.url}")
        ready = False
        while self.jvm.poll() is None:
            if not ready and _STARTED_LINE in _read_from(log_path, offset):
                ready = True
                self.info.status = "running"
                _write_info(self.state, self.info)
                self._say("the server JVM listens")
            time.sleep(0.5)
        return self.jvm.returncode, ready

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.jvm is not None and self.jvm.poll() is None:
            self.jvm.terminate()

    def _stop_jvm(self) -> None:
        if self.jvm is None or self.jvm.poll() is not None:
            return
        self.jvm.terminate()
        try:
            self.jvm.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self.jvm.kill()
            self.jvm.wait()

    def _give_up(self, why: str) -> int:
        self.info.status = "failed"
        _write_info(self.state, self.info)
        self._say(f"giving up: {why}")
        return 1

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {text}", flush=True)


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _die_with_parent() -> None:
    """In the JVM's process, before exec: get SIGTERM when the supervisor dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "supervise":
        usage = "usage: python -m aqueduct_dagster.engine.connect_server supervise FOLDER"
        print(usage, file=sys.stderr)
        return 2
    return _Supervisor(Path(argv[1])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
