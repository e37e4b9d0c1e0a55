"""Where one run of ours spends its time: the benchmark Blueprint's `dagster job execute`, cut
into phases that add up to the wall time of the process.

    python bench/profile_run.py                     # cold: a classic local[2] session per run
    python bench/profile_run.py --master sc://...   # on a warm Spark Connect server
    python bench/profile_run.py --repeats 3 --json  # medians, and the figures as JSON

Each run is a fresh process, as in bench/run.py. Inside it, before Dagster's CLI runs, a few
functions are wrapped with timers (no sampling, no cProfile: its overhead would distort the
Python side, which is what this measures):

- imports: from the process's start (read from /proc) until Dagster's CLI and our package
  are imported;
- definitions: `aqueduct_dagster.definitions`, the code location (compile cache, asset specs);
- event log: `DagsterInstance.handle_new_event`, every event Dagster stores (SQLite here);
- Spark session: the JVM's start (classic) or the Connect client's, and the run's session;
- Spark work: waiting on the JVM (every Py4J command) or the server (every Connect call);
- module code: our step code, less the Spark work and the session start inside it;
- run end: the resource's teardown: waiting for the store writer's last writes, releasing
  the Connect session (the writer's own time, concurrent with the steps, is shown apart);
- other Dagster: the rest of `dagster job execute` (the instance, run creation, planning,
  the executor, IO manager and materialization bookkeeping);
- exit: from the CLI's return to the process's end (atexit, the JVM's shutdown).

Python CPU is the process's own user+sys time (the JVM, a child, is not in it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PHASES = ("imports", "definitions", "event log", "Spark session", "Spark work", "module code",
          "run end", "other Dagster", "exit")  # fmt: skip
#: The framework store's writes run on a thread of their own beside the steps; the run's end
#: waits for what is left of them ("run end").
WRITER = "store writer (thread)"


def _process_age() -> float:
    """Seconds since this process started (from /proc: the interpreter's own start is in it)."""
    ticks = os.sysconf("SC_CLK_TCK")
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - started


class _Clock:
    """Time spent inside wrapped calls, per phase; nested calls count once (the innermost
    phase gets the time, outer ones do not count it again). The run's thread only: the store
    writer's thread is timed apart (`store writer`), concurrent with the phases."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys((*PHASES, WRITER), 0.0)
        self.calls: dict[str, int] = dict.fromkeys((*PHASES, WRITER), 0)
        self._stack: list[str] = []
        self._main = threading.get_ident()

    def wrap(self, owner: object, name: str, phase: str) -> None:
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            if threading.get_ident() != clock._main and phase != WRITER:
                return original(*args, **kwargs)
            stack = clock._stack if phase != WRITER else []
            if stack and stack[-1] in ("Spark work", "Spark session"):
                return original(*args, **kwargs)  # inside a Spark call already
            stack.append(phase)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                stack.pop()
                clock.spent[phase] += elapsed
                clock.calls[phase] += 1
                for outer in stack:  # an outer phase does not count this time again
                    clock.spent[outer] -= elapsed

        setattr(owner, name, timed)

    def wrap_generator(self, owner: object, name: str, phase: str) -> None:
        """Time each resumption of a generator function (our step code yields to Dagster)."""
        original = getattr(owner, name)
        clock = self

        def timed(*args, **kwargs):
            inner = original(*args, **kwargs)
            while True:
                clock._stack.append(phase)
                started = time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration as stop:
                    return stop.value
                finally:
                    clock._stack.pop()
                    clock.spent[phase] += time.perf_counter() - started
                clock.calls[phase] += 1
                yield item

        setattr(owner, name, timed)


def _inner(out: Path) -> None:
    """In the measured process: wrap, run Dagster's CLI, write the phases to `out`."""
    import atexit

    clock = _Clock()
    import dagster._cli

    import aqueduct_dagster.dagster.assets as assets
    import aqueduct_dagster.dagster.factory  # noqa: F401  (our package, as the CLI imports it)

    imported = _process_age()
    started = time.perf_counter()
    import aqueduct_dagster.definitions  # noqa: F401  (the code location the CLI then finds loaded)

    definitions = time.perf_counter() - started

    from dagster._core.instance import DagsterInstance

    from aqueduct_dagster.dagster import resources
    from aqueduct_dagster.engine import session

    clock.wrap(DagsterInstance, "handle_new_event", "event log")
    clock.wrap(resources.SparkResource, "teardown_after_execution", "run end")
    clock.wrap(resources.SparkResource, "_write_facts", WRITER)
    clock.wrap_generator(assets, "run_module_step", "module code")
    clock.wrap(session, "create_base_session", "Spark session")
    clock.wrap(session, "run_session", "Spark session")
    # The resource calls them through its own module's names.
    for name in ("create_base_session", "run_session", "release_run_session"):
        if hasattr(resources, name):
            clock.wrap(resources, name, "Spark session")
    import py4j.clientserver
    import py4j.java_gateway

    clock.wrap(py4j.clientserver.ClientServerConnection, "send_command", "Spark work")
    clock.wrap(py4j.java_gateway.GatewayConnection, "send_command", "Spark work")
    try:
        from pyspark.sql.connect.client.core import SparkConnectClient
    except ImportError:  # no Connect client dependencies: classic runs only
        SparkConnectClient = None
    if SparkConnectClient is not None:
        for name in ("_execute_and_fetch", "_analyze", "_execute", "config", "release_session"):
            clock.wrap(SparkConnectClient, name, "Spark work")

    sys.argv = ["dagster", "job", "execute", "-m", "aqueduct_dagster.definitions", "-j", "bench_orders"]
    run_started = time.perf_counter()
    facts: dict = {}

    def write() -> None:
        # Registered first, so it runs last of the atexit handlers.
        cpu = os.times()
        facts.update(python_cpu_s=round(cpu.user + cpu.system, 3), exit_started_at=time.time())
        out.write_text(json.dumps(facts))

    atexit.register(write)
    code = 0
    try:
        dagster._cli.main()
    except SystemExit as done:
        code = done.code or 0
    run = time.perf_counter() - run_started
    spent = dict(clock.spent)
    measured = sum(spent[p] for p in ("event log", "Spark session", "Spark work", "module code", "run end"))
    spent.update(imports=imported, definitions=definitions, **{"other Dagster": run - measured})
    facts.update(phases=spent, calls=clock.calls, returncode=code, cli_returned_at=time.time())
    sys.exit(code)


def _one_run(master: str | None, data: Path, root: Path, index: int) -> dict:
    sys.path.insert(0, str(BENCH))
    from run import Workspace, ours_command

    workspace = Workspace(root / f"run-{index}")
    command, env = ours_command(workspace, "profile", data, master)
    out = workspace.root / "phases.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--inner", str(out)]
    log = workspace.root / "run.log"
    started = time.time()
    with log.open("wb") as sink:
        code = subprocess.run(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=BENCH.parent).returncode
    ended = time.time()
    if code != 0 or not out.exists():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"the run failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
    facts = json.loads(out.read_text())
    phases = facts["phases"]
    phases["exit"] = ended - facts["cli_returned_at"]
    return {"wall_s": ended - started, "phases": phases, "python_cpu_s": facts["python_cpu_s"],
            "calls": facts["calls"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inner", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--master", default=None, help="sc://... for a warm server (default: local[2])")
    parser.add_argument("--data", type=Path, default=BENCH / "data" / "tiny", help="bench/generate.py output")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args(argv)
    if args.inner:
        _inner(args.inner)
        return 0
    if not (args.data / "orders").exists():
        raise SystemExit(f"no benchmark data in {args.data}: python bench/generate.py --out {args.data}")
    with tempfile.TemporaryDirectory(prefix="aq-profile-") as root:
        runs = [_one_run(args.master, args.data.resolve(), Path(root), i) for i in range(args.repeats)]
    median = {p: statistics.median(r["phases"][p] for r in runs) for p in PHASES}
    wall = statistics.median(r["wall_s"] for r in runs)
    cpu = statistics.median(r["python_cpu_s"] for r in runs)
    print(f"ours, {args.master or 'local[2] (cold)'}, {args.data.name}: median of {len(runs)} runs")
    for phase in PHASES:
        print(f"  {phase:<14} {median[phase]:6.2f} s")
    print(f"  {'sum':<14} {sum(median.values()):6.2f} s   (wall {wall:.2f} s; Python CPU {cpu:.2f} s)")
    writer = statistics.median(r["phases"][WRITER] for r in runs)
    print(f"  beside them: {WRITER} {writer:.2f} s")
    if args.json:
        print(json.dumps({"master": args.master, "wall_s": wall, "python_cpu_s": cpu, "phases": median,
                          "runs": runs}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
