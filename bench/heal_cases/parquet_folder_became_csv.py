"""The warehouse system's inventory folder used to hold Parquet parts; now it writes CSV parts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv, write_parquet

NAME = "parquet_folder_became_csv"
FOLDER = "warehouse/inventory"
HEADER = ["warehouse", "sku", "on_hand"]


def _parts() -> list[list[list]]:
    r = rng(15)
    rows = [[r.choice(("AMS", "RTM", "UTR")), f"SKU-{i:03d}", r.randint(0, 30)] for i in range(36)]
    return [rows[:18], rows[18:]]


def write_good(data: Path) -> None:
    # int32 counts: what CSV inference reads back, so the format is the only change
    schema = pa.schema([("warehouse", pa.string()), ("sku", pa.string()), ("on_hand", pa.int32())])
    for index, rows in enumerate(_parts()):
        records = [dict(zip(HEADER, row, strict=True)) for row in rows]
        write_parquet(data / FOLDER / f"part-{index:05d}.parquet", records, schema)


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    for index, rows in enumerate(_parts()):
        write_csv(data / FOLDER / f"part-{index:05d}.csv", HEADER, rows)


def answer(data: Path) -> pd.DataFrame:
    frame = pd.concat([read_csv(path) for path in sorted((data / FOLDER).glob("*.csv"))])
    frame = frame.assign(on_hand=frame.on_hand.astype(int))
    return frame[frame.on_hand > 0]


CASE = Case(
    name=NAME,
    breakage="Parquet folder replaced by CSV files",
    expect="fix",
    why="read the folder as csv with a header (types inferred)",
    blueprint=blueprint(NAME, title="Stock on hand", body="""
modules:
  - id: inventory
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/warehouse/inventory"}
  - id: in_stock
    type: Channel
    config:
      op: sql
      query: SELECT warehouse, sku, on_hand FROM inventory WHERE on_hand > 0
  - id: stock_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
  - id: stock_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/in_stock", mode: overwrite}
edges:
  - {from: inventory, to: in_stock}
  - {from: in_stock, to: stock_quality}
  - {from: stock_quality, to: stock_out}
"""),
    reference=(("{format: parquet, path: \"${ctx.data_dir}/warehouse/inventory\"}",
                "{format: csv, path: \"${ctx.data_dir}/warehouse/inventory\", header: true, options: {inferSchema: \"true\"}}"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/in_stock",
    output_format="delta",
)
