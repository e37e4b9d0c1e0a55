"""The benchmark pipeline written by hand in plain PySpark: the baseline bench/run.py times.

    python bench/handwritten.py --data bench/data/tiny --out bench/data/out/handwritten

Exactly the work of bench/blueprints/bench_orders.yml: read orders and customers (parquet),
keep billable orders, join their customers, aggregate per day, region and segment, check the
result (the Assert's rules: at least one row, no null region or date, every revenue
positive) and write it to Delta, overwriting. Written as a careful engineer would: one
SparkSession, the small aggregate cached once so the checks and the write do not compute
the join twice, all checks in one aggregate, nothing collected but that one row.

The Spark settings are the ones the framework gives a local session (same jars, Delta
extension, shuffle partitions), so the comparison measures the framework, not the tuning.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def spark_conf(master: str) -> dict[str, str]:
    """The settings the framework gives a session on `master`: its jars, Delta, local defaults.

    bench/peer.py hands the same ones to the peer, so all three pipelines run alike.
    """
    jars_dir = Path(os.environ.get("AQUEDUCT_JARS_DIR") or REPO / ".jars")
    # Delta and what it needs; the framework's JDBC driver is not needed here.
    jars = sorted(str(p) for p in jars_dir.glob("*.jar") if not p.name.startswith("postgresql"))
    conf = {
        "spark.jars": ",".join(jars),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }
    if master.startswith("local"):
        # The framework's defaults for local masters: a 2-core machine, modest data.
        conf.update({
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "4",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        })  # fmt: skip
    return conf


def build_session(master: str, extra_conf: dict[str, str]):
    from pyspark.sql import SparkSession

    if master.startswith("sc://"):
        # A Spark Connect server that is already up (bench/run.py --warm): its JVM has the
        # framework's settings; the script only connects, as a hand-written client would.
        return SparkSession.builder.remote(master).getOrCreate()
    builder = SparkSession.builder.master(master).appName("bench-handwritten")
    for key, value in {**spark_conf(master), **extra_conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def run(spark, data: str, out: str) -> dict:
    from pyspark.sql import functions as F

    orders = spark.read.parquet(f"{data}/orders")
    customers = spark.read.parquet(f"{data}/customers")
    billable = orders.where(
        "amount IS NOT NULL AND amount > 0 AND status <> 'cancelled'"
    ).select("order_id", "customer_id", "amount", F.col("order_ts").cast("date").alias("order_date"))
    enriched = billable.join(customers, "customer_id").select(
        "order_date", "amount", "region", "segment"
    )
    daily = (
        enriched.groupBy("order_date", "region", "segment")
        .agg(
            F.count(F.lit(1)).alias("orders"),
            F.round(F.sum("amount"), 2).alias("revenue"),
            F.avg("amount").alias("avg_amount"),
        )
        .cache()
    )
    check = daily.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.when(F.col("region").isNull(), 1).otherwise(0)).alias("null_region"),
        F.sum(F.when(F.col("order_date").isNull(), 1).otherwise(0)).alias("null_date"),
        F.min("revenue").alias("min_revenue"),
    ).collect()[0]
    problems = []
    if check["rows"] < 1:
        problems.append(f"{check['rows']} rows, expected at least 1")
    if check["null_region"]:
        problems.append(f"{check['null_region']} rows have a null region")
    if check["null_date"]:
        problems.append(f"{check['null_date']} rows have a null order_date")
    if not (check["min_revenue"] is not None and check["min_revenue"] > 0):
        problems.append(f"MIN(revenue) is {check['min_revenue']}, expected > 0")
    if problems:
        raise SystemExit("quality check failed: " + "; ".join(problems))
    daily.write.format("delta").mode("overwrite").save(f"{out}/daily_revenue")
    daily.unpersist()
    return {"rows": check["rows"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with orders/ and customers/")
    parser.add_argument("--out", required=True, help="output folder (daily_revenue/ goes in it)")
    parser.add_argument("--master", default=os.environ.get("AQUEDUCT_SPARK_MASTER", "local[2]"))
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = time.perf_counter()
    spark = build_session(args.master, dict(item.split("=", 1) for item in args.conf))
    try:
        facts = run(spark, str(Path(args.data).resolve()), str(Path(args.out).resolve()))
    finally:
        spark.stop()
    print(f"handwritten: {facts['rows']} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
