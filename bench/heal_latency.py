"""Time failure -> pending patch for the offline healer, with a warm SparkSession.

    python bench/heal_latency.py --heals 3
    python bench/heal_latency.py --heals 3 --master sc://127.0.0.1:15002   # on a warm server

One process, one JVM started (and warmed with a tiny job) before anything is timed. Each heal
gets a fresh project: the demo Blueprint (blueprints/orders_daily.yml) and demo data whose
export renamed `amount` to `order_amount`. The Blueprint's job runs through Dagster and
fails on the unresolved column; then the `aqueduct_heal` job (what the failure sensor
launches, and what `aqueduct heal` runs) diagnoses it with the offline rules, passes the
gates (the sandbox replays the patch on Spark) and stages the patch in patches/pending/.
The latency is the heal run's wall time, from the recorded failure to the staged patch.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("generate_data", REPO / "gallery" / "generate_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_project(root: Path) -> Path:
    """A project whose orders export renamed `amount`: the demo Blueprint will fail on it."""
    generator = _generator()
    data = root / "data" / "demo"
    data.mkdir(parents=True)
    rng = random.Random(7)
    generator.write_customers(data / "customers.csv", 100, rng)
    generator.write_orders(data / "orders.csv", 1000, 100, rng, {"amount": "order_amount"})
    blueprints = root / "blueprints"
    blueprints.mkdir()
    shutil.copy(REPO / "blueprints" / "orders_daily.yml", blueprints / "orders_daily.yml")
    (root / "aqueduct.yml").write_text("{}\n")
    return blueprints


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heals", type=int, default=3)
    parser.add_argument("--master", default=None,
                        help="a Spark Connect URL: the failed run, the heal and its sandbox all use it")  # fmt: skip
    args = parser.parse_args(argv)
    if args.master:
        # Every session of the process (the run's resource, the heal's sandbox) takes it.
        os.environ["AQUEDUCT_SPARK_MASTER"] = args.master
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    import dagster as dg

    from aqueduct_dagster.dagster import build_definitions
    from aqueduct_dagster.dagster.healing import aqueduct_heal_job
    from aqueduct_dagster.engine.session import create_base_session

    facts: dict = {"run_to_failure_s": [], "failure_to_pending_s": [], "statuses": []}
    with tempfile.TemporaryDirectory(prefix="aq-heal-bench-") as temp:
        temp_root = Path(temp)
        started = time.perf_counter()
        spark = create_base_session(master=args.master, app_name="bench-heal", state_dir=temp_root / "spark-state")
        spark.range(10).count()
        facts["session_start_s"] = round(time.perf_counter() - started, 3)
        for index in range(args.heals):
            root = temp_root / f"heal-{index}"
            blueprints = make_project(root)
            # Fresh state and queue per heal: a pending patch for the same failure would
            # suppress the next heal, and the hourly heal limit would count them all.
            os.environ.update(
                AQUEDUCT_DATA_DIR=str(root / "data"),
                AQUEDUCT_STATE_DIR=str(root / "state"),
                AQUEDUCT_PATCHES_DIR=str(root / "patches"),
                AQUEDUCT_CONFIG=str(root / "aqueduct.yml"),
            )
            (root / "dagster_home").mkdir()
            instance = dg.DagsterInstance.local_temp(str(root / "dagster_home"))
            job = build_definitions(blueprints).resolve_job_def("orders_daily")
            run_started = time.perf_counter()
            failed = job.execute_in_process(instance=instance, raise_on_error=False)
            failed_at = time.perf_counter()
            if failed.success:
                raise SystemExit("the broken blueprint ran successfully: nothing to heal")
            heal = aqueduct_heal_job.execute_in_process(
                run_config={
                    "ops": {"heal": {"config": {"run_id": failed.run_id}}},
                    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
                },
                instance=instance,
                tags={"aqueduct/heal_of": failed.run_id},
            )
            staged_at = time.perf_counter()
            summary = heal.output_for_node("heal")
            pending = summary.get("pending_path")
            if summary["status"] != "staged" or not pending or not Path(pending).is_file():
                raise SystemExit(f"heal {index} did not stage a patch: {summary}")
            facts["run_to_failure_s"].append(round(failed_at - run_started, 3))
            facts["failure_to_pending_s"].append(round(staged_at - failed_at, 3))
            facts["statuses"].append(summary["status"])
            facts.setdefault("gates", summary.get("gates"))
            instance.dispose()
        spark.stop()
    facts["master"] = args.master or "local[2]"
    facts["median_failure_to_pending_s"] = round(statistics.median(facts["failure_to_pending_s"]), 3)
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
