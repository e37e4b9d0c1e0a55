"""The web analytics collector used to drop JSON-lines parts into `clickstream/page_views`;
after a collector upgrade the same folder holds Parquet parts with the same fields. The JSON
reader sees only `_corrupt_record`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from heal_cases.common import Case, blueprint, rng, write_jsonl, write_parquet

NAME = "heldout_jsonl_folder_became_parquet"
FOLDER = "clickstream/page_views"
PAGES = ("/", "/pricing", "/docs/install", "/blog/spark-4", "/signup")
REFERRERS = ("google", "newsletter", "twitter", None)
SCHEMA = pa.schema([("view_id", pa.string()), ("user_id", pa.int64()), ("page", pa.string()),
                    ("referrer", pa.string()), ("dwell_ms", pa.int64()), ("viewed_at", pa.string())])  # fmt: skip


def _parts() -> list[list[dict]]:
    r = rng(102)
    records = [{"view_id": f"pv-{i:05d}", "user_id": r.randint(1, 25), "page": r.choice(PAGES),
                "referrer": r.choice(REFERRERS), "dwell_ms": r.choice((250, 800, 1200, 4300, 15000, 61000)),
                "viewed_at": f"2026-05-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z"}
               for i in range(60)]  # fmt: skip
    return [records[:30], records[30:]]


def write_good(data: Path) -> None:
    for index, records in enumerate(_parts()):
        write_jsonl(data / FOLDER / f"part-{index:05d}.json", records)


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    for index, records in enumerate(_parts()):
        write_parquet(data / FOLDER / f"part-{index:05d}.snappy.parquet", records, SCHEMA)


def answer(data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data / FOLDER)
    frame = frame[frame.dwell_ms >= 1000]
    return frame.groupby("page", as_index=False).agg(
        views=("view_id", "count"), visitors=("user_id", "nunique"), total_dwell_ms=("dwell_ms", "sum"))


CASE = Case(
    name=NAME,
    breakage="JSON-lines folder replaced by Parquet parts",
    expect="fix",
    why="read the folder as parquet",
    blueprint=blueprint(NAME, title="Engaged page views", body="""
modules:
  - id: page_views
    type: Ingress
    config: {format: json, path: "${ctx.data_dir}/clickstream/page_views"}
  - id: page_engagement
    type: Channel
    config:
      op: sql
      query: |
        SELECT page, COUNT(*) AS views, COUNT(DISTINCT user_id) AS visitors, SUM(dwell_ms) AS total_dwell_ms
        FROM page_views
        WHERE dwell_ms >= 1000
        GROUP BY page
  - id: engagement_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
  - id: engagement_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/page_engagement", mode: overwrite}
edges:
  - {from: page_views, to: page_engagement}
  - {from: page_engagement, to: engagement_quality}
  - {from: engagement_quality, to: engagement_out}
"""),
    reference=(('{format: json, path: "${ctx.data_dir}/clickstream/page_views"}',
                '{format: parquet, path: "${ctx.data_dir}/clickstream/page_views"}'),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/page_engagement",
    output_format="delta",
)
