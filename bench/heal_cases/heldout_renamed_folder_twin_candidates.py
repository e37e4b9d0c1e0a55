"""The partner-orders folder `exports/partner_orders` is gone. Beside it two folders appeared
in the same export run, `exports/partner-orders` and `exports/partner_orders_new`: same
schema as the last good run, same modification time, different rows. Nothing in the data
says which one replaced the old folder. Defer."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "heldout_renamed_folder_twin_candidates"
OLD = "exports/partner_orders"
TWINS = ("exports/partner-orders", "exports/partner_orders_new")
OTHER = "exports/partner_returns"


def _records(seed: int, count: int) -> list[dict]:
    r = rng(seed)
    return [{"order_id": seed * 1000 + i, "partner_id": f"P{r.randint(1, 6):02d}", "amount": round(r.uniform(10, 400), 2),
             "ordered_on": f"2026-05-{1 + i % 28:02d}"} for i in range(count)]  # fmt: skip


def write_good(data: Path) -> None:
    write_parquet(data / OLD / "part-00000.parquet", _records(109, 30))
    write_parquet(data / OTHER / "part-00000.parquet",
                  [{"return_id": i, "order_id": 109_000 + i, "reason": "damaged"} for i in range(5)])  # fmt: skip


def break_input(data: Path) -> None:
    shutil.rmtree(data / OLD)
    same = time.time()
    for seed, folder in zip((110, 111), TWINS, strict=True):
        write_parquet(data / folder / "part-00000.parquet", _records(seed, 30))
    for folder in TWINS:  # written in the same run: neither is newer
        for path in (data / folder / "part-00000.parquet", data / folder):
            os.utime(path, (same, same))


CASE = Case(
    name=NAME,
    breakage="renamed input folder, two equally recent candidates",
    expect="defer",
    why="partner-orders and partner_orders_new both match the schema and are equally recent: defer and show both",
    blueprint=blueprint(NAME, title="Partner revenue", body="""
modules:
  - id: partner_orders
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/exports/partner_orders"}
  - id: partner_revenue
    type: Channel
    config:
      op: sql
      query: |
        SELECT partner_id, COUNT(*) AS orders, ROUND(SUM(amount), 2) AS revenue
        FROM partner_orders
        GROUP BY partner_id
  - id: revenue_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/partner_revenue", mode: overwrite}
edges:
  - {from: partner_orders, to: partner_revenue}
  - {from: partner_revenue, to: revenue_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/partner_revenue",
)
