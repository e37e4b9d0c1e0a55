"""The point-of-sale export now writes `units` as text ("12") in its Parquet parts; no
schema_hint guards the Ingress. SUM silently turns the text into a double and MAX compares
it as text ("9" > "24"); the Delta table refuses the changed types at the write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "heldout_digit_strings_sum_delta"
FOLDER = "pos/sales_lines"
STORES = ("S01", "S02", "S03", "S99")  # S99 is the test till


def _records(units_type: type) -> list[dict]:
    r = rng(106)
    return [{"receipt_id": f"R{60000 + i}", "store_id": r.choice(STORES), "sku": f"SKU-{r.randint(100, 140)}",
             "units": units_type(r.choice((1, 2, 3, 4, 6, 9, 12, 24))), "unit_price": r.choice((0.99, 2.49, 5.0, 12.95)),
             "sold_at": f"2026-05-{1 + i % 28:02d} {8 + i % 12:02d}:{i % 60:02d}:00"}
            for i in range(80)]  # fmt: skip


def _schema(units: pa.DataType) -> pa.Schema:
    return pa.schema([("receipt_id", pa.string()), ("store_id", pa.string()), ("sku", pa.string()), ("units", units),
                      ("unit_price", pa.float64()), ("sold_at", pa.string())])  # fmt: skip


def write_good(data: Path) -> None:
    write_parquet(data / FOLDER / "part-00000.parquet", _records(int), _schema(pa.int64()))


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    write_parquet(data / FOLDER / "part-00000.parquet", _records(str), _schema(pa.string()))


def answer(data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data / FOLDER)
    frame = frame[frame.store_id != "S99"].assign(units=lambda f: f.units.astype(int))
    return frame.groupby("store_id", as_index=False).agg(
        units_sold=("units", "sum"), largest_line=("units", "max"), lines=("receipt_id", "count"))


CASE = Case(
    name=NAME,
    breakage="retyped column (int -> clean digit strings), no schema_hint",
    expect="fix",
    why="CAST(units AS BIGINT) before SUM/MAX (not overwriteSchema: MAX over text is wrong)",
    blueprint=blueprint(NAME, title="Units sold per store", body="""
modules:
  - id: sales_lines
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/pos/sales_lines"}
  - id: store_lines
    type: Channel
    config:
      op: sql
      query: SELECT * FROM sales_lines WHERE store_id <> 'S99'
  - id: units_per_store
    type: Channel
    config:
      op: sql
      query: |
        SELECT store_id, SUM(units) AS units_sold, MAX(units) AS largest_line, COUNT(*) AS lines
        FROM store_lines
        GROUP BY store_id
  - id: units_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/units_per_store", mode: overwrite}
edges:
  - {from: sales_lines, to: store_lines}
  - {from: store_lines, to: units_per_store}
  - {from: units_per_store, to: units_out}
"""),
    reference=(("SUM(units) AS units_sold, MAX(units)", "SUM(CAST(units AS BIGINT)) AS units_sold, MAX(CAST(units AS BIGINT))"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/units_per_store",
    output_format="delta",
)
