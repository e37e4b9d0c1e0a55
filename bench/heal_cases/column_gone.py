"""The orders export dropped `discount_pct` altogether. `discount_amount` (euros off, numeric)
was there before and still is: reading it as a percentage would run, and publish nonsense."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "column_gone"
SOURCE = "shop/orders.csv"


def _rows(with_discount: bool) -> list[list]:
    r = rng(22)
    rows = []
    for i in range(30):
        amount_off = r.choice((0, 0, 2.5, 7.5))
        row = [9000 + i, round(r.uniform(5, 300), 2)]
        row += [r.choice((0, 5, 10)), amount_off] if with_discount else [amount_off]
        rows.append(row)
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["order_id", "gross", "discount_pct", "discount_amount"], _rows(True))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["order_id", "gross", "discount_amount"], _rows(False))


CASE = Case(
    name=NAME,
    breakage="column removed upstream",
    expect="defer",
    why="no column carries the discount any more: defer and show the removed column",
    blueprint=blueprint(NAME, title="Net order value", body="""
modules:
  - id: orders
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/shop/orders.csv", header: true, options: {inferSchema: "true"}}
  - id: net_orders
    type: Channel
    config:
      op: sql
      query: |
        SELECT order_id, gross, ROUND(gross * (1 - discount_pct / 100), 2) AS net
        FROM orders
  - id: net_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/net_orders", mode: overwrite}
edges:
  - {from: orders, to: net_orders}
  - {from: net_orders, to: net_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/net_orders",
)
