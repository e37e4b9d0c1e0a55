"""Time loading a code location of many Blueprints: compile, build Definitions, resolve.

    python bench/defs_load.py --blueprints 200 --modules 10 [--keep DIR] [--profile FILE]

Generates the Blueprints into a temp folder first (not timed), then, in this fresh process,
times the import of the framework, `build_definitions(folder)` (compile + assets + jobs),
and what Dagster does when a code location loads: `get_repository_def()` with every job
resolved (the asset graph included); `load_s` is those two together (wall time,
`load_cpu_s` the process's CPU time for them). Apart: the repository snapshot a code server
sends to the webserver. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
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
    started = time.perf_counter()
    import dagster as dg  # noqa: F401

    from aqueduct_dagster.dagster import factory
    from aqueduct_dagster.dagster.factory import build_definitions

    imported = time.perf_counter()
    # How much of build_definitions is compiling Blueprints (the rest is Dagster objects).
    compiling = [0.0]
    compile_blueprint = factory.compile_blueprint

    def timed_compile(*args, **kwargs):
        begun = time.perf_counter()
        try:
            return compile_blueprint(*args, **kwargs)
        finally:
            compiling[0] += time.perf_counter() - begun

    factory.compile_blueprint = timed_compile
    # CPU time too: the load is single-threaded Python, and on a shared machine its CPU time
    # varies far less than its wall time.
    cpu_imported = time.process_time()
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    defs = build_definitions(folder)
    built = time.perf_counter()
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
        "build_definitions_s": round(built - imported, 3),
        "compile_s": round(compiling[0], 3),
        "resolve_repository_s": round(resolved - built, 3),
        "load_s": round(resolved - imported, 3),
        "load_cpu_s": round(cpu_resolved - cpu_imported, 3),
        "repository_snapshot_s": round(snapshotted - resolved, 3),
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blueprints", type=int, default=200)
    parser.add_argument("--modules", type=int, default=MODULES_PER_TEMPLATE,
                        help="modules per blueprint (the template has 10; other values are refused)")
    parser.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile build+resolve into FILE")
    parser.add_argument("--dagster-floor", action="store_true",
                        help="time only Dagster, on trivial assets of the same shape (no Blueprints)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.modules != MODULES_PER_TEMPLATE:
        parser.error(f"the generated blueprints have {MODULES_PER_TEMPLATE} modules")
    if args.dagster_floor:
        facts = measure_dagster_floor(args.blueprints, args.modules)
        facts.update(blueprints=args.blueprints, modules_per_blueprint=args.modules)
        print(json.dumps(facts))
        return
    with tempfile.TemporaryDirectory(prefix="aq-defs-") as temp:
        folder = args.keep or Path(temp) / "blueprints"
        generate_blueprints(folder, args.blueprints)
        facts = measure(folder, args.profile)
    facts.update(blueprints=args.blueprints, modules_per_blueprint=args.modules)
    json.dump(facts, sys.stdout)
    print()


if __name__ == "__main__":
    main()
