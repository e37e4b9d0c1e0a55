"""The refunds folder `refunds_2026_h1` was renamed `refunds-2026-h1`; last half-year's
`refunds_2025_h2` (same schema, older) sits beside it and scores as well on the name."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "renamed_folder_with_decoy"
CURRENT, RENAMED, DECOY = "refunds/refunds_2026_h1", "refunds/refunds-2026-h1", "refunds/refunds_2025_h2"


def _records(seed: int, year: int, first_month: int, count: int) -> list[dict]:
    r = rng(seed)
    return [{"refund_id": seed * 1000 + i, "order_id": r.randint(1, 500), "amount": round(r.uniform(1, 200), 2),
             "refunded_on": f"{year}-{first_month + i % 6:02d}-{1 + i % 27:02d}"}
            for i in range(count)]  # fmt: skip


def write_good(data: Path) -> None:
    write_parquet(data / DECOY / "part-00000.parquet", _records(7, 2025, 7, 25))
    old = time.time() - 200 * 86400  # last half-year's export, written months ago
    for path in (data / DECOY / "part-00000.parquet", data / DECOY):
        os.utime(path, (old, old))
    write_parquet(data / CURRENT / "part-00000.parquet", _records(8, 2026, 1, 20))


def break_input(data: Path) -> None:
    os.rename(data / CURRENT, data / RENAMED)
    # the upstream job keeps appending to the renamed folder
    write_parquet(data / RENAMED / "part-00001.parquet", _records(9, 2026, 1, 8))


def answer(data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data / RENAMED)
    return frame[frame.amount >= 20][["refund_id", "order_id", "amount"]]


CASE = Case(
    name=NAME,
    breakage="renamed input folder, older decoy beside it",
    expect="fix",
    why="point at refunds-2026-h1 (matches the last good schema and is not older), not refunds_2025_h2",
    blueprint=blueprint(NAME, title="Large refunds", body="""
modules:
  - id: refunds
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/refunds/refunds_2026_h1"}
  - id: large_refunds
    type: Channel
    config:
      op: sql
      query: SELECT refund_id, order_id, amount FROM refunds WHERE amount >= 20
  - id: refunds_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/large_refunds", mode: overwrite}
edges:
  - {from: refunds, to: large_refunds}
  - {from: large_refunds, to: refunds_out}
"""),
    reference=(("refunds/refunds_2026_h1", "refunds/refunds-2026-h1"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/large_refunds",
)
