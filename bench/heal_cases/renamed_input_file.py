"""The stores export is now written as `stores_export.csv` (the old `stores.csv` is gone);
an unrelated `regions.csv` sits in the same folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "renamed_input_file"
OLD, NEW, OTHER = "retail/stores.csv", "retail/stores_export.csv", "retail/regions.csv"
HEADER = ["store_id", "city", "opened_year"]


def _rows() -> list[list]:
    r = rng(21)
    return [[200 + i, r.choice(("Utrecht", "Leiden", "Delft", "Gouda")), r.randint(2001, 2025)] for i in range(26)]


def write_good(data: Path) -> None:
    write_csv(data / OLD, HEADER, _rows())
    write_csv(data / OTHER, ["region_id", "name"], [[1, "randstad"], [2, "north"]])


def break_input(data: Path) -> None:
    (data / OLD).unlink()
    write_csv(data / NEW, HEADER, _rows())


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / NEW)
    frame = frame.assign(store_id=frame.store_id.astype(int), opened_year=frame.opened_year.astype(int))
    return frame[frame.opened_year >= 2015]


CASE = Case(
    name=NAME,
    breakage="renamed input file",
    expect="fix",
    why="point the Ingress at stores_export.csv",
    blueprint=blueprint(NAME, title="Recent stores", body="""
modules:
  - id: stores
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/retail/stores.csv", header: true, options: {inferSchema: "true"}}
  - id: recent_stores
    type: Channel
    config:
      op: sql
      query: SELECT store_id, city, opened_year FROM stores WHERE opened_year >= 2015
  - id: stores_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/recent_stores", mode: overwrite}
edges:
  - {from: stores, to: recent_stores}
  - {from: recent_stores, to: stores_out}
"""),
    reference=(("retail/stores.csv", "retail/stores_export.csv"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/recent_stores",
)
