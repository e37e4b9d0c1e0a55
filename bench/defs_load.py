"""Time loading a code location of many Blueprints: compile, build Definitions, resolve.

    python bench/defs_load.py --blueprints 200 --modules 10 [--keep DIR] [--profile FILE]
    python bench/defs_load.py --compare 5     # against Dagster's floor, cold and warm cache

Generates the Blueprints into a temp folder first (not timed), then, in this fresh process,
times the import of the framework and what the code location module does,
`load_code_location(folder)`: `build_definitions` (compile + assets + jobs) and what Dagster
does when a code location loads, `get_repository_def()` with every job resolved (the asset
graph included); `load_s` is those together (wall time, `load_cpu_s` the process's CPU time
for them). Compiled Manifests, and the asset specs built from them, are cached where
AQUEDUCT_COMPILE_CACHE says (`off`: nowhere).
Apart: the repository snapshot a code server sends to the webserver. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

#: One generated Blueprint of 10 modules: 2 Ingress, 5 SQL Channels (a join, aggregates),
#: 1 Assert, 2 Egress; the schema hints give column lineage something to trace. Every SQL
#: text differs between blueprints (the index is in it), as in a real project: nothing
#: parsed for one blueprint can be reused for the next.
TEMPLATE = """\
aqueduct: "1.0"
id: gen_{index:04d}
name: Generated pipeline {index}
context:
  data_dir: "/data/gen_{index:04d}"
macros:
  valid: "amount IS NOT NULL AND amount > 0.{index:04d}"
modules:
  - id: orders
    type: Ingress
    config:
      format: parquet
      path: "${{ctx.data_dir}}/orders"
      schema_hint: {{order_id: long, customer_id: int, amount: double, status: string, order_ts: timestamp}}
  - id: customers
    type: Ingress
    config:
      format: parquet
      path: "${{ctx.data_dir}}/customers"
      schema_hint: {{customer_id: int, name: string, region: string, segment: string}}
  - id: valid_orders
    type: Channel
    config:
      op: sql
      query: SELECT order_id, customer_id, amount, status, CAST(order_ts AS DATE) AS order_date FROM orders WHERE {{{{ macros.valid }}}}
  - id: enriched
    type: Channel
    config:
      op: sql
      query: SELECT o.order_id, o.amount, o.status, o.order_date, c.region, c.segment FROM valid_orders o JOIN customers c ON o.customer_id = c.customer_id WHERE c.region <> 'none_{index}'
  - id: by_region
    type: Channel
    config:
      op: sql
      query: SELECT region, order_date, COUNT(*) AS orders, SUM(amount) AS revenue FROM enriched GROUP BY region, order_date HAVING SUM(amount) > {index}
  - id: by_status
    type: Channel
    config:
      op: sql
      query: SELECT status, segment, COUNT(*) AS orders, AVG(amount) AS avg_amount FROM enriched GROUP BY status, segment HAVING COUNT(*) > {index}
  - id: top_days
    type: Channel
    config:
      op: sql
      query: SELECT region, order_date, revenue FROM by_region WHERE revenue > {threshold}
  - id: region_quality
    type: Assert
    config:
      rules:
        - {{type: min_rows, min: 1}}
        - {{type: not_null, column: region}}
        - {{type: sql, expr: "MIN(revenue) > 0"}}
  - id: top_days_out
    type: Egress
    config: {{format: delta, path: "${{ctx.data_dir}}/out/top_days", mode: overwrite}}
  - id: by_status_out
    type: Egress
    config: {{format: delta, path: "${{ctx.data_dir}}/out/by_status", mode: overwrite}}
edges:
  - {{from: orders, to: valid_orders}}
  - {{from: valid_orders, to: enriched}}
  - {{from: customers, to: enriched}}
  - {{from: enriched, to: by_region}}
  - {{from: enriched, to: by_status}}
  - {{from: by_region, to: top_days}}
  - {{from: top_days, to: region_quality}}
  - {{from: region_quality, to: top_days_out}}
  - {{from: by_status, to: by_status_out}}
"""
MODULES_PER_TEMPLATE = 10


def generate_blueprints(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"gen_{index:04d}.yml").write_text(TEMPLATE.format(index=index, threshold=1000 + index))


def measure(folder: Path, profile: Path | None = None) -> dict:
    """One load, as the code location module does it (`load_code_location`): compile (with
    the compile cache AQUEDUCT_COMPILE_CACHE names, if any), build, resolve every job."""
    started = time.perf_counter()
    import dagster as dg  # noqa: F401

    from aqueduct_dagster.blueprint.cache import COMPILE_CACHE
    from aqueduct_dagster.dagster import factory, loading

    imported = time.perf_counter()
    # How much of the load is compiling Blueprints, and building definitions (the rest is
    # Dagster resolving the repository and its jobs).
    compiling, building = [0.0], [0.0]
    compile_blueprint, build_definitions = loading.compile_blueprint, factory.build_definitions

    def timed(function, total):
        def wrapper(*args, **kwargs):
            begun = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                total[0] += time.perf_counter() - begun

        return wrapper

    loading.compile_blueprint = timed(compile_blueprint, compiling)
    factory.build_definitions = timed(build_definitions, building)
    # CPU time too: the load is single-threaded Python, and on a shared machine its CPU time
    # varies far less than its wall time.
    cpu_imported = time.process_time()
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    defs = factory.load_code_location(folder)
    # What Dagster asks for when it loads the location (done by now: cached).
    repository = defs.get_repository_def()
    jobs = repository.get_all_jobs()
    graph = repository.asset_graph
    resolved = time.perf_counter()
    cpu_resolved = time.process_time()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    from dagster._core.remote_representation.external_data import RepositorySnap

    RepositorySnap.from_def(repository)
    snapshotted = time.perf_counter()
    return {
        "import_s": round(imported - started, 3),
        "build_definitions_s": round(building[0], 3),
        "compile_s": round(compiling[0], 3),
        "resolve_repository_s": round(resolved - imported - building[0], 3),
        "load_s": round(resolved - imported, 3),
        "load_cpu_s": round(cpu_resolved - cpu_imported, 3),
        "repository_snapshot_s": round(snapshotted - resolved, 3),
        "compile_cache_hits": COMPILE_CACHE.hits,
        "jobs": len(jobs),
        "assets": len(list(graph.get_all_asset_keys())),
        "asset_checks": len(list(graph.asset_check_keys)),
    }


def measure_dagster_floor(blueprints: int, modules: int) -> dict:
    """What Dagster alone costs for a code location of this shape: trivial multi-assets (one
    per non-Assert module, a blocking check on one of them), one job per Blueprint resolved
    against its own assets, Definitions, repository with every job. No compiling at all."""
    import dagster as dg
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

    started = time.perf_counter()
    cpu_started = time.process_time()
    assets, jobs = [], []
    for index in range(blueprints):
        mine, previous = [], None
        for position in range(modules - 1):  # the Assert is a check, not an asset
            key = dg.AssetKey([f"gen_{index:04d}", f"m{position}"])
            ins = {"in_0": dg.AssetIn(key=previous)} if previous else {}
            checks = [dg.AssetCheckSpec(name="quality", asset=key, blocking=True)] if position == 6 else []

            @dg.multi_asset(name=f"gen_{index:04d}__m{position}", outs={"result": dg.AssetOut(key=key)},
                            ins=ins, check_specs=checks, can_subset=False)  # fmt: skip
            def _asset(context, **inputs):
                return None

            mine.append(_asset)
            previous = key
        assets.extend(mine)
        job = dg.define_asset_job(f"gen_{index:04d}", selection=dg.AssetSelection.assets(*mine),
                                  executor_def=dg.in_process_executor)  # fmt: skip
        jobs.append(job.resolve(asset_graph=AssetGraph.from_assets(mine)))
    repository = dg.Definitions(assets=assets, jobs=jobs).get_repository_def()
    repository.get_all_jobs()
    return {
        "dagster_floor_s": round(time.perf_counter() - started, 3),
        "dagster_floor_cpu_s": round(time.process_time() - cpu_started, 3),
    }


def compare(blueprints: int, repeats: int) -> dict:
    """Ours against Dagster's floor in one invocation, every load a fresh process, in turns.

    Per round: the floor, ours with an empty compile cache (a first load: the code server's
    after an edit of every file), ours again on the cache the first one wrote (what every
    later process pays: run workers, `dagster job execute`, a restarted server). The floor
    goes first in even rounds and last in odd ones, so drift on a shared machine hits all
    three alike. Ratios are of medians, wall time and CPU time.
    """
    import statistics
    import subprocess

    def run(args: list[str], cache: Path | str) -> dict:
        env = {**os.environ, "AQUEDUCT_COMPILE_CACHE": str(cache)}
        done = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True,
                              text=True, check=True)  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])

    samples: dict[str, list[dict]] = {"floor": [], "cold_cache": [], "warm_cache": []}
    with tempfile.TemporaryDirectory(prefix="aq-defs-") as temp:
        folder = Path(temp) / "blueprints"
        generate_blueprints(folder, blueprints)
        common = ["--blueprints", str(blueprints), "--keep", str(folder)]
        for index in range(repeats):
            cache = Path(temp) / f"cache-{index}"
            ours = [("cold_cache", common), ("warm_cache", common)]
            floor = [("floor", ["--blueprints", str(blueprints), "--dagster-floor"])]
            for name, args in floor + ours if index % 2 == 0 else ours + floor:
                samples[name].append(run(args, cache))
                print(f"  defs {name} {index + 1}/{repeats}: {samples[name][-1]}", file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float:
        return round(statistics.median(s[key] for s in samples[name]), 3)

    result: dict = {"blueprints": blueprints, "modules_per_blueprint": MODULES_PER_TEMPLATE,
                    "repeats": repeats, "samples": samples}  # fmt: skip
    result["floor"] = {"load_s": median("floor", "dagster_floor_s"),
                       "load_cpu_s": median("floor", "dagster_floor_cpu_s")}  # fmt: skip
    for name in ("cold_cache", "warm_cache"):
        keys = [k for k, v in samples[name][0].items() if k.endswith("_s")]
        result[name] = {k: median(name, k) for k in keys}
        result[name]["ratio_vs_floor"] = round(result[name]["load_s"] / result["floor"]["load_s"], 3)
        result[name]["cpu_ratio_vs_floor"] = round(
            result[name]["load_cpu_s"] / result["floor"]["load_cpu_s"], 3
        )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blueprints", type=int, default=200)
    parser.add_argument("--modules", type=int, default=MODULES_PER_TEMPLATE,
                        help="modules per blueprint (the template has 10; other values are refused)")
    parser.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile build+resolve into FILE")
    parser.add_argument("--compare", type=int, metavar="N", default=0,
                        help="N rounds of floor / ours (empty compile cache) / ours (warm cache), "
                        "each a fresh process; prints medians and ratios")  # fmt: skip
    parser.add_argument("--dagster-floor", action="store_true",
                        help="time only Dagster, on trivial assets of the same shape (no Blueprints)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.modules != MODULES_PER_TEMPLATE:
        parser.error(f"the generated blueprints have {MODULES_PER_TEMPLATE} modules")
    if args.compare:
        print(json.dumps(compare(args.blueprints, args.compare)))
        return
    if args.dagster_floor:
        facts = measure_dagster_floor(args.blueprints, args.modules)
        facts.update(blueprints=args.blueprints, modules_per_blueprint=args.modules)
        print(json.dumps(facts))
        return
    # A plain run times a first load: no compile cache unless one is named.
    os.environ.setdefault("AQUEDUCT_COMPILE_CACHE", "off")
    with tempfile.TemporaryDirectory(prefix="aq-defs-") as temp:
        folder = args.keep or Path(temp) / "blueprints"
        generate_blueprints(folder, args.blueprints)
        facts = measure(folder, args.profile)
    facts.update(blueprints=args.blueprints, modules_per_blueprint=args.modules)
    json.dump(facts, sys.stdout)
    print()


if __name__ == "__main__":
    main()
