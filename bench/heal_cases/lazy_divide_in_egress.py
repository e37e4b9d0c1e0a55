"""A paused ad campaign now reports 0 clicks: `spend / clicks` in an upstream Channel divides
by zero, and Spark raises only when the Egress writes."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "lazy_divide_in_egress"
SOURCE = "ads/campaigns.csv"
PAUSED = (3, 11)


def _rows(broken: bool) -> list[list]:
    r = rng(19)
    return [[f"cmp-{i:02d}", round(r.uniform(10, 500), 2), 0 if broken and i in PAUSED else r.randint(5, 400)]
            for i in range(24)]  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["campaign_id", "spend", "clicks"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["campaign_id", "spend", "clicks"], _rows(True))


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE)
    spend, clicks = frame.spend.astype(float), frame.clicks.astype(int)
    # zero clicks -> NULL, as try_divide; ROUND half up from the double's decimal form, as SQL does
    cpc = [None if c == 0 else float(Decimal(repr(s / c)).quantize(Decimal("0.0001"), ROUND_HALF_UP))
           for s, c in zip(spend, clicks, strict=True)]  # fmt: skip
    return pd.DataFrame({"campaign_id": frame.campaign_id, "spend": spend, "clicks": clicks, "cost_per_click": cpc})


CASE = Case(
    name=NAME,
    breakage="division by zero in a Channel, surfaces in the Egress",
    expect="fix",
    why="try_divide(spend, clicks) in campaign_costs (2 of 24 rows NULL)",
    blueprint=blueprint(NAME, title="Campaign costs", body="""
modules:
  - id: campaigns
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/ads/campaigns.csv", header: true, options: {inferSchema: "true"}}
  - id: campaign_costs
    type: Channel
    config:
      op: sql
      query: SELECT campaign_id, spend, clicks, spend / clicks AS raw_cpc FROM campaigns
  - id: rounded_costs
    type: Channel
    config:
      op: sql
      query: SELECT campaign_id, spend, clicks, ROUND(raw_cpc, 4) AS cost_per_click FROM campaign_costs
  - id: costs_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/campaign_costs", mode: overwrite}
edges:
  - {from: campaigns, to: campaign_costs}
  - {from: campaign_costs, to: rounded_costs}
  - {from: rounded_costs, to: costs_out}
"""),
    reference=(("spend / clicks AS raw_cpc", "try_divide(spend, clicks) AS raw_cpc"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/campaign_costs",
)
