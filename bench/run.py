"""Benchmark: the framework against the same pipeline hand-written in PySpark, and the peer.

    python bench/run.py                       # tiny + 10m, 3 runs each, defs load, heal latency
    python bench/run.py --sizes tiny --repeats 5 --skip-defs --skip-heal
    python bench/run.py --warm                # also ours on a warm Spark Connect server
    python bench/run.py --no-peer             # without aqueduct-core 2.3.0

Per size it runs the pipelines ALTERNATELY, each run in a fresh process that pays its own
cold start: ours is `dagster job execute` of bench/blueprints/bench_orders.yml against a
temporary Dagster instance (DAGSTER_HOME, SQLite), the baseline is `python
bench/handwritten.py`, the peer is aqueduct-core 2.3.0's `aqueduct run` of the same Blueprint
in its own virtualenv (bench/peer.py says how it is set up and what it needed changed; when
it cannot be set up, one line says why and the rest runs without it). Every run gets Spark's
event log (uncompressed, no rolling) through PYSPARK_SUBMIT_ARGS, the same way for all, and
the runner counts the Spark jobs and stages it records. Peak memory is sampled from /proc
every 0.1 s: the summed PSS of the whole process tree (Python, the JVM, Dagster's log
tailers, any Python workers), plus the largest single process's RSS; the report gives each
pipeline's peak and ours minus the hand-written script's (goal: at most 250 MB).
getrusage(RUSAGE_CHILDREN) would not do: its ru_maxrss is the largest single descendant that
was waited for, never a sum, and pyspark never waits for its JVM (the JVM outlives
`spark.stop()` by a moment and is reparented): measured, it reports ~120 MB for a
hand-written run whose JVM peaks near 1 GB.

`--warm` starts the managed Spark Connect server once (`aqueduct spark up`, its own event log
via aqueduct.yml), runs ours a third time per round with AQUEDUCT_SPARK_MASTER=sc://..., and
reports ours(warm)/hand-written(cold) beside ours(cold)/hand-written(cold); without the
`aqueduct spark` command it stops with exit code 3 and says so. The hand-written script runs
on that server too (a plain Spark Connect client, no framework): the floor a warm run can
approach. Each warm client runs once untimed first, so that neither pays the fresh JVM's
warm-up in its timed runs.

Then, in fresh processes too: Definitions load for 200 generated Blueprints of 10 modules
against Dagster alone on trivial assets of the same shape, ours with an empty and with a
warm compile cache (bench/defs_load.py --compare) and failure -> pending patch latency of the offline healer with a warm
SparkSession (bench/heal_latency.py). Results go to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peer import PeerSetup, PeerUnavailable, ensure_peer_venv, prepare_peer

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
BLUEPRINT_ID = "bench_orders"

#: name -> (orders, customers)
SIZES: dict[str, tuple[int, int]] = {"tiny": (1_000, 100), "10m": (10_000_000, 100_000)}
#: Issue 17's goals: ours / hand-written, both cold, and ours on a warm server / hand-written cold.
TARGETS = {"tiny": 1.10, "10m": 1.05}
WARM_TARGETS = {"tiny": 0.25, "10m": 0.30}
#: Most the process tree of ours may hold at its peak beyond the hand-written script's.
MEMORY_OVER_HANDWRITTEN_GOAL_MB = 250


# --------------------------------------------------------------------------- measuring


@dataclass
class RunFacts:
    variant: str  # ours | handwritten | ours_warm | handwritten_warm | peer
    size: str
    seconds: float
    returncode: int
    spark_jobs: int | None = None
    spark_stages: int | None = None
    spark_tasks: int | None = None
    peak_tree_pss_mb: float | None = None
    max_process_rss_mb: float | None = None
    peak_processes: list[tuple[str, float]] = field(default_factory=list)
    log: str = ""
    #: the last lines of a failed run's output: why it failed, in its own words
    failure: str | None = None


class TreeMemorySampler:
    """Peak of the summed memory (PSS) of a process and all its descendants, from /proc."""

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.peak_bytes = 0
        self.peak_single_bytes = 0
        #: (process name, PSS MB) of every process in the tree at the peak.
        self.peak_parts: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            # The command name may hold spaces or parentheses: fields start after the last ')'.
            parent = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
        total, stack, parts = 0, [self.root_pid], []
        while stack:
            pid = stack.pop()
            try:
                with open(f"/proc/{pid}/statm", "rb") as handle:
                    resident = int(handle.read().split()[1]) * self._page
                with open(f"/proc/{pid}/comm", "rb") as handle:
                    name = handle.read().decode(errors="replace").strip()
                proportional = _pss_bytes(pid)
            except OSError:
                resident, name, proportional = 0, "?", 0
            # PSS splits shared pages between their sharers: a child the JVM forks (Hadoop
            # runs shell commands) shares the JVM's pages until it execs, and summed RSS
            # would count them twice.
            share = proportional if proportional is not None else resident
            total += share
            if share:
                parts.append((name, round(share / 2**20, 1)))
            self.peak_single_bytes = max(self.peak_single_bytes, resident)
            stack.extend(children.get(pid, []))
        if total > self.peak_bytes:
            self.peak_bytes = total
            self.peak_parts = sorted(parts, key=lambda part: -part[1])


def _pss_bytes(pid: int) -> int | None:
    """Proportional set size from /proc/PID/smaps_rollup, or None when the kernel has none."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return None
    return None


def count_spark_events(event_dir: Path) -> tuple[int, int, int] | None:
    """(jobs started, stages completed, tasks ended) recorded in every event log in the folder."""
    files = [p for p in event_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if not files:
        return None
    jobs = stages = tasks = 0
    for path in files:
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                # Cheap prefilter: only three event types are counted.
                if '"SparkListenerJobStart"' in line:
                    jobs += 1
                elif '"SparkListenerStageCompleted"' in line:
                    stages += 1
                elif '"SparkListenerTaskEnd"' in line:
                    tasks += 1
    return jobs, stages, tasks


def event_log_submit_args(event_dir: Path) -> str:
    """PYSPARK_SUBMIT_ARGS giving a pyspark process a plain-JSON event log in `event_dir`."""
    return (
        "--conf spark.eventLog.enabled=true "
        f"--conf spark.eventLog.dir=file://{event_dir} "
        "--conf spark.eventLog.compress=false "
        "--conf spark.eventLog.rolling.enabled=false "
        "pyspark-shell"
    )


def timed_process(
    variant: str, size: str, command: list[str], env: dict[str, str], log_path: Path,
    event_dir: Path | None, cwd: Path = REPO,
) -> RunFacts:  # fmt: skip
    if event_dir is not None:
        event_dir.mkdir(parents=True, exist_ok=True)
        env = {**env, "PYSPARK_SUBMIT_ARGS": event_log_submit_args(event_dir)}
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        with TreeMemorySampler(process.pid) as sampler:
            returncode = process.wait()
        seconds = time.perf_counter() - started
    counts = count_spark_events(event_dir) if event_dir is not None else None
    return RunFacts(
        variant=variant,
        size=size,
        seconds=round(seconds, 3),
        returncode=returncode,
        spark_jobs=counts[0] if counts else None,
        spark_stages=counts[1] if counts else None,
        spark_tasks=counts[2] if counts else None,
        peak_tree_pss_mb=round(sampler.peak_bytes / 2**20, 1),
        max_process_rss_mb=round(sampler.peak_single_bytes / 2**20, 1),
        peak_processes=sampler.peak_parts,
        log=str(log_path),
        failure=None if returncode == 0 else last_lines(log_path),
    )


def last_lines(path: Path, count: int = 8) -> str:
    """The last `count` non-blank lines of a log, each cut to 300 characters."""
    lines = [line.rstrip()[:300] for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return "\n".join(lines[-count:])


# --------------------------------------------------------------------------- the two pipelines


@dataclass
class Workspace:
    """Temp folders of one benchmark invocation."""

    root: Path
    dagster_home: Path = field(init=False)
    state: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dagster_home = self.root / "dagster_home"
        self.dagster_home.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.state = self.root / "state"
        # No operator config from the working directory: the defaults are what is measured.
        self.config = self.root / "aqueduct.yml"
        self.config.write_text("{}\n")
        self.warm_events = self.root / "events" / "warm-server"

    def out(self, variant: str, size: str) -> Path:
        return self.root / "out" / size / variant


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    env.pop("AQUEDUCT_SPARK_MASTER", None)
    return env


def ours_command(workspace: Workspace, size: str, data: Path, master: str | None = None,
                 variant: str = "ours") -> tuple[list[str], dict[str, str]]:  # fmt: skip
    env = base_env()
    env.update(
        DAGSTER_HOME=str(workspace.dagster_home),
        AQUEDUCT_BLUEPRINTS_DIR=str(BENCH / "blueprints"),
        AQUEDUCT_BENCH_DATA=str(data),
        AQUEDUCT_BENCH_OUT=str(workspace.out(variant, size)),
        AQUEDUCT_STATE_DIR=str(workspace.state),
        AQUEDUCT_PATCHES_DIR=str(workspace.root / "patches"),
        AQUEDUCT_CONFIG=str(workspace.config),
    )
    # Cold is a classic session started by the run, as the hand-written script starts one: the
    # default master (`auto`) would take the warm server of this state folder when it runs.
    env["AQUEDUCT_SPARK_MASTER"] = master or "local[2]"
    command = [str(VENV_BIN / "dagster"), "job", "execute", "-m", "aqueduct_dagster.definitions",
               "-j", BLUEPRINT_ID]  # fmt: skip
    return command, env


def handwritten_command(workspace: Workspace, size: str, data: Path, master: str | None = None,
                        variant: str = "handwritten") -> tuple[list[str], dict[str, str]]:  # fmt: skip
    command = [sys.executable, str(BENCH / "handwritten.py"), "--data", str(data),
               "--out", str(workspace.out(variant, size))]  # fmt: skip
    if master:
        command += ["--master", master]
    return command, base_env()


def ensure_data(size: str, orders: int, customers: int, data_root: Path) -> Path:
    folder = data_root / size
    subprocess.run(
        [sys.executable, str(BENCH / "generate.py"), "--out", str(folder), "--orders", str(orders),
         "--customers", str(customers)],
        check=True, env=base_env(), cwd=REPO,
    )  # fmt: skip
    return folder


def compare_outputs(first: Path, second: Path, first_name: str = "ours") -> dict:
    """Both Delta tables hold the same rows (read with delta-rs, no JVM); `second` is the
    hand-written script's."""
    import pyarrow  # noqa: F401  (before deltalake, or delta-rs aborts at exit)
    from deltalake import DeltaTable

    def summary(path: Path) -> tuple[int, float, int]:
        table = DeltaTable(str(path / "daily_revenue")).to_pyarrow_table()
        revenue = sum(v for v in table.column("revenue").to_pylist() if v is not None)
        orders = sum(table.column("orders").to_pylist())
        return table.num_rows, round(revenue, 2), orders

    ours, theirs = summary(first), summary(second)
    return {"match": ours == theirs, first_name: ours, "handwritten": theirs,
            "fields": ["rows", "sum(revenue)", "sum(orders)"]}  # fmt: skip


# --------------------------------------------------------------------------- warm mode


class WarmServerUnavailable(RuntimeError):
    pass


def _server_env(workspace: Workspace) -> dict[str, str]:
    """The server reads its JVM settings from aqueduct.yml: give it an event log of its own."""
    workspace.warm_events.mkdir(parents=True, exist_ok=True)
    config = workspace.root / "aqueduct-warm-server.yml"
    config.write_text(json.dumps({"engine": {"spark": {"conf": {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": f"file://{workspace.warm_events}",
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }}}}))  # fmt: skip
    return {**base_env(), "AQUEDUCT_STATE_DIR": str(workspace.state), "AQUEDUCT_CONFIG": str(config)}


def start_warm_server(workspace: Workspace) -> str:
    """`aqueduct spark up` once; returns its sc:// URL. Raises WarmServerUnavailable."""
    aqueduct = VENV_BIN / "aqueduct"
    env = _server_env(workspace)
    probe = subprocess.run([str(aqueduct), "spark", "--help"], capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        raise WarmServerUnavailable(
            "--warm needs the managed Spark Connect server (`aqueduct spark up|down|status`), "
            "and this checkout's `aqueduct` CLI has no `spark` command yet: "
            + (probe.stderr.strip().splitlines() or ["no output"])[-1]
        )
    up = subprocess.run([str(aqueduct), "spark", "up"], capture_output=True, text=True, env=env,
                        timeout=300, cwd=REPO)  # fmt: skip
    if up.returncode != 0:
        raise WarmServerUnavailable(f"`aqueduct spark up` failed ({up.returncode}): {up.stderr.strip()[-500:]}")
    status = subprocess.run([str(aqueduct), "spark", "status"], capture_output=True, text=True, env=env)
    match = re.search(r"sc://[\w.\-]+:\d+", f"{up.stdout}\n{status.stdout}")
    if not match:
        raise WarmServerUnavailable(
            "`aqueduct spark up` ran but neither it nor `aqueduct spark status` printed an sc:// URL"
        )
    return match.group(0)


def warm_server_peak_rss_mb(workspace: Workspace) -> float | None:
    """The server JVM's peak RSS so far (VmHWM): its memory is outside the runs' process trees."""
    done = subprocess.run([str(VENV_BIN / "aqueduct"), "spark", "status", "--json"], capture_output=True,
                          text=True, env=_server_env(workspace), cwd=REPO)  # fmt: skip
    try:
        pid = json.loads(done.stdout)["jvm_pid"]
        with open(f"/proc/{pid}/status") as handle:
            peak = next(line for line in handle if line.startswith("VmHWM:"))
        return round(int(peak.split()[1]) / 1024, 1)
    except (ValueError, KeyError, TypeError, OSError, StopIteration):
        return None


def stop_warm_server(workspace: Workspace) -> None:
    subprocess.run([str(VENV_BIN / "aqueduct"), "spark", "down"], capture_output=True,
                   env=_server_env(workspace), timeout=120, cwd=REPO)  # fmt: skip


# --------------------------------------------------------------------------- one size


def bench_size(size: str, data: Path, workspace: Workspace, repeats: int, logs: Path,
               warm_url: str | None, peer: PeerSetup | None = None) -> dict:  # fmt: skip
    runs: list[RunFacts] = []
    # handwritten_warm: the same script as a client of the same warm server, the floor a
    # warm run of ours can approach (its Spark work without any framework).
    variants = (["ours", "handwritten"] + (["ours_warm", "handwritten_warm"] if warm_url else [])
                + (["peer"] if peer else []))  # fmt: skip
    warmup: dict[str, float] = {}
    if warm_url:
        # A warm server is one that has run work: the first runs on a fresh JVM pay its JIT and
        # class loading (measured: 14 s against 6 s for the next). One untimed run of each
        # client first, so that neither side's timed runs carry it.
        for variant in ("ours_warm", "handwritten_warm"):
            if variant == "ours_warm":
                command, env = ours_command(workspace, size, data, warm_url, variant)
            else:
                command, env = handwritten_command(workspace, size, data, warm_url, variant)
            facts = timed_process(variant, size, command, env, logs / f"{size}-{variant}-warmup.log", None, REPO)
            warmup[variant] = facts.seconds
            print(f"  {size:>5} {variant:<12} warm-up (not counted): {facts.seconds:7.2f} s", flush=True)
    for index in range(repeats):
        # Alternate the order so that drift on a shared machine hits both sides alike.
        order = variants if index % 2 == 0 else list(reversed(variants))
        for variant in order:
            cwd = REPO
            if variant in ("handwritten", "handwritten_warm"):
                master = warm_url if variant == "handwritten_warm" else None
                command, env = handwritten_command(workspace, size, data, master, variant)
            elif variant == "peer":
                command, env = peer.command(data, workspace.out("peer", size), base_env())
                # Where it keeps what it writes besides the output (its store, any .aqueduct/).
                cwd = peer.workdir
            else:
                master = warm_url if variant == "ours_warm" else None
                command, env = ours_command(workspace, size, data, master, variant)
            warm = variant in ("ours_warm", "handwritten_warm")
            # A warm server logs its events itself: its run's jobs are the difference.
            events = None if warm else workspace.root / "events" / f"{size}-{variant}-{index}"
            before = count_spark_events(workspace.warm_events) if warm else None
            facts = timed_process(variant, size, command, env, logs / f"{size}-{variant}-{index}.log", events,
                                  cwd)  # fmt: skip
            if warm:
                after = count_spark_events(workspace.warm_events)
                if before is not None and after is not None:
                    facts.spark_jobs, facts.spark_stages, facts.spark_tasks = (
                        a - b for a, b in zip(after, before, strict=True)
                    )
            runs.append(facts)
            status = "ok" if facts.returncode == 0 else f"FAILED rc={facts.returncode} (see {facts.log})"
            print(f"  {size:>5} {variant:<12} run {index + 1}/{repeats}: {facts.seconds:7.2f} s  "
                  f"jobs={facts.spark_jobs} stages={facts.spark_stages} "
                  f"peak={facts.peak_tree_pss_mb} MB  {status}", flush=True)  # fmt: skip
            if facts.failure:
                print("      " + facts.failure.replace("\n", "\n      "), flush=True)
    summary: dict[str, dict] = {}
    for variant in variants:
        mine = [r for r in runs if r.variant == variant and r.returncode == 0]
        if not mine:
            failures = [r.failure for r in runs if r.variant == variant and r.failure]
            summary[variant] = {"failed": True, "why": failures[-1] if failures else None}
            continue
        summary[variant] = {
            "median_s": round(statistics.median(r.seconds for r in mine), 3),
            "min_s": min(r.seconds for r in mine),
            "max_s": max(r.seconds for r in mine),
            "spark_jobs": _same_or_range([r.spark_jobs for r in mine]),
            "spark_stages": _same_or_range([r.spark_stages for r in mine]),
            "spark_tasks": _same_or_range([r.spark_tasks for r in mine]),
            "peak_tree_pss_mb": max(r.peak_tree_pss_mb or 0 for r in mine),
            "max_process_rss_mb": max(r.max_process_rss_mb or 0 for r in mine),
            "runs": len(mine),
        }
    result: dict = {"data": str(data), "runs": [asdict(r) for r in runs], "summary": summary}
    if warmup:
        result["warmup_s"] = warmup
    base = summary.get("handwritten", {}).get("median_s")
    base_memory = summary.get("handwritten", {}).get("peak_tree_pss_mb")
    for variant in ("ours", "ours_warm", "handwritten_warm", "peer"):
        median = summary.get(variant, {}).get("median_s")
        if base and median:
            result[f"ratio_{variant}_vs_handwritten_cold"] = round(median / base, 3)
        memory = summary.get(variant, {}).get("peak_tree_pss_mb")
        # A warm run's JVM is the server's, outside its process tree: no like-for-like figure.
        if base_memory and memory and variant not in ("ours_warm", "handwritten_warm"):
            result[f"memory_{variant}_minus_handwritten_mb"] = round(memory - base_memory, 1)
    warm_floor = summary.get("handwritten_warm", {}).get("median_s")
    warm_ours = summary.get("ours_warm", {}).get("median_s")
    if warm_floor and warm_ours:
        result["ratio_ours_warm_vs_handwritten_warm"] = round(warm_ours / warm_floor, 3)
    for variant, key in (("ours", "outputs"), ("peer", "outputs_peer")):
        if variant not in variants:
            continue
        try:
            result[key] = compare_outputs(workspace.out(variant, size), workspace.out("handwritten", size), variant)
        except Exception as error:  # noqa: BLE001 - reported, the timings still stand
            result[key] = {"match": None, "error": f"{type(error).__name__}: {error}"}
    return result


def _same_or_range(values: list[int | None]) -> int | str | None:
    known = sorted({v for v in values if v is not None})
    if not known:
        return None
    return known[0] if len(known) == 1 else f"{known[0]}-{known[-1]}"


# --------------------------------------------------------------------------- the rest


def run_json_script(script: str, args: list[str], repeats: int, logs: Path, name: str) -> dict:
    """Run a bench script that prints one JSON object, `repeats` times in fresh processes."""
    samples = []
    for index in range(repeats):
        log = logs / f"{name}-{index}.log"
        with log.open("w") as handle:
            done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, env=base_env(),
                                  stdout=subprocess.PIPE, stderr=handle, text=True)  # fmt: skip
        if done.returncode != 0:
            return {"failed": True, "returncode": done.returncode, "log": str(log)}
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {name} {index + 1}/{repeats}: {samples[-1]}", flush=True)
    return {"samples": samples}


def run_defs_compare(blueprints: int, repeats: int, logs: Path) -> dict:
    """`defs_load.py --compare`: ours (empty and warm compile cache) against Dagster's floor."""
    log = logs / "defs.log"
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, str(BENCH / "defs_load.py"), "--blueprints", str(blueprints),
                               "--compare", str(repeats)], cwd=REPO, env=base_env(), stdout=subprocess.PIPE,
                              stderr=handle, text=True)  # fmt: skip
    if done.returncode != 0:
        return {"failed": True, "returncode": done.returncode, "log": str(log)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize_heal(result: dict) -> dict:
    if result.get("failed"):
        return result
    latencies = [x for s in result["samples"] for x in s["failure_to_pending_s"]]
    result["median_failure_to_pending_s"] = round(statistics.median(latencies), 3)
    result["heals"] = len(latencies)
    return result


def set_up_peer(workspace: Workspace, results: dict) -> PeerSetup | None:
    """The peer ready to run, or None after one line saying why it cannot (recorded too)."""
    try:
        peer = prepare_peer(ensure_peer_venv(), workspace.root / "peer")
    except PeerUnavailable as error:
        print(f"peer: not run: {error}", flush=True)
        results["peer"] = {"available": False, "why": str(error)}
        return None
    results["peer"] = {"available": True, **peer.describe()}
    versions = ", ".join(f"{name} {number}" for name, number in peer.environment.versions.items())
    changes = "unchanged" if peer.blueprint_unchanged else "changed: " + "; ".join(peer.adaptations)
    print(f"peer: {versions}; our Blueprint {changes}", flush=True)
    return peer


def machine_facts() -> dict:
    facts = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        facts["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
        facts["load_average_at_start"] = os.getloadavg()
    except (ValueError, OSError):
        pass
    try:
        version = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()
        facts["java"] = version[0] if version else None
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        facts["git_commit"] = commit.stdout.strip() or None
    except OSError:
        pass
    return facts


def print_report(results: dict) -> None:
    print("\n== summary")
    machine = results.get("machine", {})
    print(f"load average (1, 5, 15 min) at start {machine.get('load_average_at_start')}, at end "
          f"{machine.get('load_average_at_end')} on {machine.get('cpus')} CPUs")  # fmt: skip
    for size, result in results["sizes"].items():
        summary = result["summary"]
        print(f"{size}: data {result['data']}")
        for variant, facts in summary.items():
            if facts.get("failed"):
                why = (facts.get("why") or "no output").replace("\n", "\n      ")
                print(f"  {variant:<12} FAILED, the end of its output:\n      {why}")
                continue
            print(f"  {variant:<12} median {facts['median_s']:7.2f} s (min {facts['min_s']:.2f}, max "
                  f"{facts['max_s']:.2f}, {facts['runs']} runs)  jobs {facts['spark_jobs']}  stages "
                  f"{facts['spark_stages']}  tasks {facts['spark_tasks']}  peak PSS of process tree "
                  f"{facts['peak_tree_pss_mb']} MB (largest process RSS {facts['max_process_rss_mb']} MB)")  # fmt: skip
        print("  " + report_columns(size, result))
        for key in ("outputs", "outputs_peer"):
            if key in result:
                print(f"  same output as hand-written ({'peer' if key == 'outputs_peer' else 'ours'}): "
                      f"{result[key]}")  # fmt: skip
    defs = results.get("definitions_load")
    if defs and not defs.get("failed"):
        floor = defs["floor"]
        print(f"definitions load ({defs['blueprints']} blueprints x {defs['modules_per_blueprint']} modules, "
              f"medians of {defs['repeats']} fresh processes each, in turns):")  # fmt: skip
        print(f"  Dagster alone, same shape, trivial assets: {floor['load_s']} s (CPU {floor['load_cpu_s']} s)")
        for name, label in (("cold_cache", "empty compile cache"), ("warm_cache", "warm compile cache")):
            facts = defs[name]
            print(f"  ours, {label}: {facts['load_s']} s (CPU {facts['load_cpu_s']} s; compiling "
                  f"{facts['compile_s']} s, build_definitions {facts['build_definitions_s']} s, resolve "
                  f"{facts['resolve_repository_s']} s; import {facts['import_s']} s) = {facts['ratio_vs_floor']} x "
                  f"the floor (CPU {facts['cpu_ratio_vs_floor']} x)  (target <= 1.5 x: "
                  f"{'met' if facts['ratio_vs_floor'] <= 1.5 else 'MISSED'})")  # fmt: skip
    for key, label, target in (("heal", "classic session started before", 15), ("heal_warm", "warm server", 3)):
        heal = results.get(key)
        if heal and not heal.get("failed"):
            median = heal["median_failure_to_pending_s"]
            print(f"offline heal, failure -> pending patch ({label}): median {median} s over {heal['heals']} "
                  f"heals  (target <= {target} s: {'met' if median <= target else 'MISSED'})")  # fmt: skip
        elif heal:
            print(f"offline heal ({label}): FAILED, see {heal.get('log')}")


def report_columns(size: str, result: dict) -> str:
    """Time ratios and peak memory against the hand-written script, one line each."""
    summary = result["summary"]
    goals = {"ours": TARGETS.get(size), "ours_warm": WARM_TARGETS.get(size)}
    ratios = []
    for variant, label in (("ours", "ours"), ("ours_warm", "ours (warm)"),
                           ("handwritten_warm", "hand-written (warm)"), ("peer", "peer")):  # fmt: skip
        ratio = result.get(f"ratio_{variant}_vs_handwritten_cold")
        if variant not in summary:
            continue
        text = f"{label} / hand-written {ratio if ratio is not None else 'n/a (a side failed)'}"
        goal = goals.get(variant)
        if ratio is not None and goal is not None:
            text += f" (goal <= {goal}: {'met' if ratio <= goal else 'MISSED'})"
        ratios.append(text)
    if "ratio_ours_warm_vs_handwritten_warm" in result:
        ratios.append(f"ours (warm) / hand-written (warm) {result['ratio_ours_warm_vs_handwritten_warm']}")
    peaks = [f"{variant} {summary[variant].get('peak_tree_pss_mb', 'failed')}"
             for variant in ("ours", "handwritten", "peer") if variant in summary]  # fmt: skip
    deltas = []
    for variant in ("ours", "peer"):
        delta = result.get(f"memory_{variant}_minus_handwritten_mb")
        if delta is None:
            continue
        text = f"{variant} - hand-written {delta:+.1f} MB"
        if variant == "ours":
            goal = MEMORY_OVER_HANDWRITTEN_GOAL_MB
            text += f" (goal <= {goal} MB: {'met' if delta <= goal else 'MISSED'})"
        deltas.append(text)
    return "\n  ".join([
        "time: " + "  |  ".join(ratios),
        "peak MB (summed PSS of the process tree): " + "  |  ".join(peaks),
        "memory: " + ("  |  ".join(deltas) or "n/a"),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,10m",
                        help="comma-separated: tiny, 10m, or NAME=ORDERS[:CUSTOMERS]")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="runs of each pipeline per size")
    parser.add_argument("--warm", action="store_true",
                        help="also run ours on a warm Spark Connect server (`aqueduct spark up`)")  # fmt: skip
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True,
                        help="also run aqueduct-core 2.3.0 (bench/peer.py; default on when its "
                             "virtualenv can be made)")  # fmt: skip
    parser.add_argument("--skip-defs", action="store_true", help="skip the Definitions load timing")
    parser.add_argument("--skip-heal", action="store_true", help="skip the heal latency timing")
    parser.add_argument("--defs-blueprints", type=int, default=200)
    parser.add_argument("--defs-repeats", type=int, default=3,
                        help="rounds of floor / ours cold / ours warm (bench/defs_load.py --compare)")  # fmt: skip
    parser.add_argument("--heal-repeats", type=int, default=3, help="heals timed (one warm process)")
    parser.add_argument("--data-dir", type=Path, default=BENCH / "data", help="generated inputs (gitignored)")
    parser.add_argument("--name", default=None, help="results file name (default: a timestamp)")
    parser.add_argument("--keep", action="store_true", help="keep the temp workspace (outputs, logs)")
    args = parser.parse_args(argv)

    sizes: dict[str, tuple[int, int]] = {}
    for item in filter(None, args.sizes.split(",")):
        if "=" in item:
            name, counts = item.split("=", 1)
            orders, _, customers = counts.partition(":")
            sizes[name] = (int(orders), int(customers or max(1, int(orders) // 100)))
        elif item in SIZES:
            sizes[item] = SIZES[item]
        else:
            parser.error(f"unknown size '{item}' (use tiny, 10m or NAME=ORDERS[:CUSTOMERS])")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = args.name or stamp
    results_dir = BENCH / "results"
    results_dir.mkdir(exist_ok=True)
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="aq-bench-")))
    logs = workspace.root / "logs"
    logs.mkdir()
    print(f"workspace {workspace.root}")
    results: dict = {"name": name, "started_at": dt.datetime.now().isoformat(timespec="seconds"),
                     "machine": machine_facts(), "repeats": args.repeats, "sizes": {}}  # fmt: skip
    warm_url = None
    try:
        if args.warm:
            try:
                warm_url = start_warm_server(workspace)
            except WarmServerUnavailable as error:
                print(f"error: {error}", file=sys.stderr)
                return 3
            results["warm_master"] = warm_url
            print(f"warm Spark Connect server at {warm_url}")
        peer = set_up_peer(workspace, results) if args.peer else None
        for size, (orders, customers) in sizes.items():
            data = ensure_data(size, orders, customers, args.data_dir)
            print(f"== {size}: {orders} orders, {customers} customers")
            results["sizes"][size] = bench_size(size, data, workspace, args.repeats, logs, warm_url, peer)
            results["sizes"][size].update(orders=orders, customers=customers)
        if not args.skip_defs:
            print(f"== definitions load: {args.defs_blueprints} blueprints x 10 modules")
            results["definitions_load"] = run_defs_compare(args.defs_blueprints, args.defs_repeats, logs)
        if not args.skip_heal:
            print("== heal latency: renamed column -> failed run -> offline heal -> pending patch")
            heal = run_json_script("heal_latency.py", ["--heals", str(args.heal_repeats)], 1, logs, "heal")
            results["heal"] = summarize_heal(heal)
            if warm_url:
                print("== heal latency on the warm server")
                heal = run_json_script("heal_latency.py", ["--heals", str(args.heal_repeats), "--master", warm_url],
                                       1, logs, "heal-warm")  # fmt: skip
                results["heal_warm"] = summarize_heal(heal)
    finally:
        if warm_url:
            results["warm_server_jvm_peak_rss_mb"] = warm_server_peak_rss_mb(workspace)
            stop_warm_server(workspace)
        results["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        results["machine"]["load_average_at_end"] = os.getloadavg()
        target = results_dir / f"{name}.json"
        target.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nresults: {target}")
        failed_runs = [r for size in results["sizes"].values() for r in size.get("runs", [])
                       if r["returncode"] != 0]  # fmt: skip
        if args.keep or failed_runs:
            print(f"kept (logs of every run in logs/): {workspace.root}")
        else:
            shutil.rmtree(workspace.root, ignore_errors=True)
    print_report(results)
    if results.get("warm_server_jvm_peak_rss_mb"):
        print(f"warm server JVM peak RSS (not in the runs' figures): {results['warm_server_jvm_peak_rss_mb']} MB")
    failed = any(f.get("failed") for r in results["sizes"].values() for f in r["summary"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
