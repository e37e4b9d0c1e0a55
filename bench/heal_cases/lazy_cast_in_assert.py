"""The picking export started writing `N/A` for a quantity it could not count. The CAST is in
an upstream Channel; Spark only evaluates it when the Assert's check aggregates the result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "lazy_cast_in_assert"
SOURCE = "picking/picks.csv"
UNCOUNTED = (4, 17, 29)


def _rows(broken: bool) -> list[list]:
    r = rng(18)
    rows = []
    for i in range(40):
        qty = "N/A" if broken and i in UNCOUNTED else str(r.randint(1, 12))
        rows.append([f"P{i:03d}", r.choice(("AMS", "RTM")), qty])
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["pick_id", "site", "qty"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["pick_id", "site", "qty"], _rows(True))


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE)
    frame = frame.assign(qty=pd.to_numeric(frame.qty, errors="coerce"))  # N/A -> NULL, as TRY_CAST
    grouped = frame.groupby("site", as_index=False).agg(picks=("pick_id", "count"), units=("qty", lambda s: s.sum(min_count=1)))
    return grouped


CASE = Case(
    name=NAME,
    breakage="lazy CAST of 'N/A' in a Channel, surfaces in an Assert",
    expect="fix",
    why="TRY_CAST(qty AS INT) in typed_picks (the contract holds: 3 of 40 values become NULL)",
    blueprint=blueprint(NAME, title="Units picked per site", body="""
modules:
  - id: picks
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/picking/picks.csv", header: true, options: {inferSchema: "false"}}
  - id: typed_picks
    type: Channel
    config:
      op: sql
      query: SELECT pick_id, site, CAST(qty AS INT) AS qty FROM picks
  - id: units_per_site
    type: Channel
    config:
      op: sql
      query: SELECT site, COUNT(pick_id) AS picks, SUM(qty) AS units FROM typed_picks GROUP BY site
  - id: units_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
        - {type: sql, expr: "MIN(units) > 0"}
  - id: units_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/units_per_site", mode: overwrite}
edges:
  - {from: picks, to: typed_picks}
  - {from: typed_picks, to: units_per_site}
  - {from: units_per_site, to: units_quality}
  - {from: units_quality, to: units_out}
"""),
    reference=(("CAST(qty AS INT)", "TRY_CAST(qty AS INT)"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/units_per_site",
)
