"""The menu export replaced `price` with two new columns, `price_net` and `price_gross`. Either
could be what `price` meant (VAT included or not): the evidence does not decide. Defer."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "ambiguous_rename"
SOURCE = "menu/items.csv"


def _rows(split: bool) -> list[list]:
    r = rng(26)
    rows = []
    for i in range(24):
        net = round(r.uniform(3, 30), 2)
        rows.append([f"item-{i:02d}", r.choice(("starter", "main", "dessert"))]
                    + ([net, round(net * 1.09, 2)] if split else [net]))  # fmt: skip
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["item_id", "course", "price"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["item_id", "course", "price_net", "price_gross"], _rows(True))


CASE = Case(
    name=NAME,
    breakage="renamed column, two equally good candidates",
    expect="defer",
    why="price_net and price_gross both replace price: defer and show both",
    blueprint=blueprint(NAME, title="Menu prices", body="""
modules:
  - id: items
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/menu/items.csv", header: true, options: {inferSchema: "true"}}
  - id: priced_items
    type: Channel
    config:
      op: sql
      query: SELECT item_id, course, price FROM items WHERE price > 0
  - id: items_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/menu_prices", mode: overwrite}
edges:
  - {from: items, to: priced_items}
  - {from: priced_items, to: items_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/menu_prices",
)
