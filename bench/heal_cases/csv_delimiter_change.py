"""The catalogue export switched its delimiter from `,` to `;` (a locale change upstream)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "csv_delimiter_change"
SOURCE = "catalogue/products.csv"
HEADER = ["sku", "category", "price", "in_stock"]


def _rows() -> list[list]:
    r = rng(14)
    return [[f"SKU-{i:04d}", r.choice(("garden", "kitchen", "toys")), round(r.uniform(1, 80), 2), r.randint(0, 9)]
            for i in range(40)]  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows())


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows(), delimiter=";")


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE, sep=";")
    frame = frame.assign(price=frame.price.astype(float), in_stock=frame.in_stock.astype(int))
    return frame[(frame.price > 5) & (frame.in_stock > 0)][["sku", "category", "price"]]


CASE = Case(
    name=NAME,
    breakage="CSV delimiter change",
    expect="fix",
    why="read the CSV with sep ';'",
    blueprint=blueprint(NAME, title="Sellable products", body="""
modules:
  - id: products
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/catalogue/products.csv", header: true, options: {inferSchema: "true"}}
  - id: sellable
    type: Channel
    config:
      op: sql
      query: |
        SELECT sku, category, price
        FROM products
        WHERE price > 5 AND in_stock > 0
  - id: sellable_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
  - id: sellable_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/sellable", mode: overwrite}
edges:
  - {from: products, to: sellable}
  - {from: sellable, to: sellable_quality}
  - {from: sellable_quality, to: sellable_out}
"""),
    reference=(('options: {inferSchema: "true"}', 'options: {inferSchema: "true", sep: ";"}'),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/sellable",
)
