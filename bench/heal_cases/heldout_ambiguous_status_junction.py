"""The customers export gained a `status` column (the account's status: active, dormant,
closed). The join's unqualified `status`, in the SELECT and the WHERE, meant the order's
status (paid, refunded, void) and is now ambiguous. A Junction splits by region downstream."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "heldout_ambiguous_status_junction"
ORDERS, CUSTOMERS = "sales/orders.csv", "sales/customers.csv"


def write_good(data: Path) -> None:
    r = rng(107)
    write_csv(data / ORDERS, ["order_id", "customer_id", "region", "amount", "status"],
              [[40_000 + i, r.randint(1, 12), r.choice(("EU", "EU", "US", "APAC")), round(r.uniform(15, 700), 2),
                r.choice(("paid", "paid", "paid", "refunded", "void"))] for i in range(60)])  # fmt: skip
    write_csv(data / CUSTOMERS, ["customer_id", "customer_name", "tier"],
              [[i, f"Customer {i:02d}", r.choice(("gold", "silver", "bronze"))] for i in range(1, 13)])  # fmt: skip


def break_input(data: Path) -> None:
    customers = read_csv(data / CUSTOMERS)
    r = rng(207)
    write_csv(data / CUSTOMERS, ["customer_id", "customer_name", "status", "tier"],
              [[row.customer_id, row.customer_name, r.choice(("active", "active", "dormant", "closed")), row.tier]
               for row in customers.itertuples(index=False)])  # fmt: skip


def answer(data: Path) -> pd.DataFrame:
    orders, customers = read_csv(data / ORDERS), read_csv(data / CUSTOMERS)
    joined = orders.merge(customers, on="customer_id", suffixes=("", "_customer"))
    joined = joined[(joined.status != "void") & (joined.region == "EU")]
    return pd.DataFrame({
        "order_id": joined.order_id.astype(int),
        "customer_name": joined.customer_name,
        "tier": joined.tier,
        "region": joined.region,
        "amount": joined.amount.astype(float),
        "status": joined.status,  # the order's own status
    })  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="ambiguous column after a join (SELECT and WHERE), Junction downstream",
    expect="fix",
    why="qualify both status references with the orders side (o.status)",
    blueprint=blueprint(NAME, title="EU orders with customers", body="""
modules:
  - id: orders
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/sales/orders.csv", header: true, options: {inferSchema: "true"}}
  - id: customers
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/sales/customers.csv", header: true, options: {inferSchema: "true"}}
  - id: enriched_orders
    type: Channel
    config:
      op: sql
      query: |
        SELECT o.order_id, c.customer_name, c.tier, o.region, o.amount, status
        FROM orders o JOIN customers c ON o.customer_id = c.customer_id
        WHERE status <> 'void'
  - id: by_region
    type: Junction
    config:
      mode: conditional
      branches:
        - {id: eu, condition: "region = 'EU'"}
        - {id: rest, condition: _else_}
  - id: eu_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/eu_orders", mode: overwrite}
  - id: rest_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/other_orders", mode: overwrite}
edges:
  - {from: orders, to: enriched_orders}
  - {from: customers, to: enriched_orders}
  - {from: enriched_orders, to: by_region}
  - {from: by_region, to: eu_out, port: eu}
  - {from: by_region, to: rest_out, port: rest}
"""),
    reference=(("o.amount, status\n", "o.amount, o.status\n"), ("WHERE status <>", "WHERE o.status <>")),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/eu_orders",
)
