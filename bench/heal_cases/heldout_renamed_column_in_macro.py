"""The ERP's order-lines export renamed `unit_price` to `price_per_unit`. The first Channel
passes every column on with `SELECT *`; the name is used only in the second Channel and in a
macro it expands. `list_price` (numeric, present before and after) is not the renamed column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "heldout_renamed_column_in_macro"
SOURCE = "erp/order_lines.csv"
PRODUCTS = (("SKU-1001", "Espresso beans 1kg", "coffee", 24.9), ("SKU-1002", "Oat milk 6x1l", "dairy", 13.5),
            ("SKU-2001", "Paper cups 500", "supplies", 31.0), ("SKU-2002", "Lids 500", "supplies", 17.25),
            ("SKU-3001", "Croissant 40x", "bakery", 38.4))  # fmt: skip


def _rows() -> list[list]:
    r = rng(103)
    rows = []
    for i in range(45):
        sku, product, category, list_price = r.choice(PRODUCTS)
        unit_price = round(list_price * r.choice((1.0, 0.95, 0.9, 0.8)), 2)
        rows.append([f"SO-{7000 + i // 3}", 1 + i % 3, sku, product, category, r.choice((0, 1, 2, 5, 12)),
                     list_price, unit_price, r.choice((0.0, 0.0, 0.05, 0.1)), r.choice(("EUR", "EUR", "EUR", "GBP")),
                     r.choice(("AMS-1", "RTM-2")), f"2026-04-{1 + i % 28:02d}"])  # fmt: skip
    return rows


def _header(price: str) -> list[str]:
    return ["order_id", "line_no", "sku", "product_name", "category", "quantity", "list_price", price,
            "discount_rate", "currency", "warehouse", "order_date"]  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, _header("unit_price"), _rows())


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, _header("price_per_unit"), _rows())


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE)
    quantity = frame.quantity.astype(int)
    frame = frame[(quantity > 0) & (frame.currency == "EUR")]
    quantity, price, discount = frame.quantity.astype(int), frame.price_per_unit.astype(float), frame.discount_rate.astype(float)
    return pd.DataFrame({
        "order_id": frame.order_id,
        "line_no": frame.line_no.astype(int),
        "sku": frame.sku,
        "category": frame.category,
        "quantity": quantity,
        "unit_price": price,
        "net_value": quantity * price * (1 - discount),
    })  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="renamed column, used only downstream and in a macro",
    expect="fix",
    why="read price_per_unit AS unit_price in line_values and in the net_line macro (not list_price)",
    blueprint=blueprint(NAME, title="EUR order line values", body="""
macros:
  net_line: "quantity * unit_price * (1 - discount_rate)"

modules:
  - id: order_lines
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/erp/order_lines.csv", header: true, options: {inferSchema: "true"}}
  - id: valid_lines
    type: Channel
    config:
      op: sql
      query: SELECT * FROM order_lines WHERE quantity > 0 AND currency = 'EUR'
  - id: line_values
    type: Channel
    config:
      op: sql
      query: |
        SELECT order_id, line_no, sku, category, quantity, unit_price,
               {{ macros.net_line }} AS net_value
        FROM valid_lines
  - id: lines_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/order_line_values", mode: overwrite}
edges:
  - {from: order_lines, to: valid_lines}
  - {from: valid_lines, to: line_values}
  - {from: line_values, to: lines_out}
"""),
    reference=(("quantity * unit_price * (1", "quantity * price_per_unit * (1"),
               ("quantity, unit_price,", "quantity, price_per_unit AS unit_price,")),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/order_line_values",
)
