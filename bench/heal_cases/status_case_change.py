"""The billing system now writes subscription statuses in upper case (`ACTIVE`, `PAUSED`).
The filter `status = 'active'` keeps no rows and the Assert asks the agent. Whether
`ACTIVE` means what `active` meant is a business question: the honest answer is to defer."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "status_case_change"
SOURCE = "billing/subscriptions.csv"


def _rows(upper: bool) -> list[list]:
    r = rng(23)
    rows = []
    for i in range(34):
        status = r.choice(("active", "active", "paused", "cancelled"))
        rows.append([f"sub-{i:03d}", status.upper() if upper else status, r.choice((9, 19, 49))])
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["subscription_id", "status", "monthly_fee"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["subscription_id", "status", "monthly_fee"], _rows(True))


CASE = Case(
    name=NAME,
    breakage="semantic change: status values change case",
    expect="defer",
    why="values changed meaning-bearing spelling: defer with the value distribution as evidence",
    blueprint=blueprint(NAME, title="Active subscriptions", body="""
modules:
  - id: subscriptions
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/billing/subscriptions.csv", header: true, options: {inferSchema: "true"}}
  - id: active_subscriptions
    type: Channel
    config:
      op: sql
      query: SELECT subscription_id, monthly_fee FROM subscriptions WHERE status = 'active'
  - id: active_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1, on_fail: trigger_agent, error_type: NoActiveSubscriptions}
  - id: active_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/active_subscriptions", mode: overwrite}
edges:
  - {from: subscriptions, to: active_subscriptions}
  - {from: active_subscriptions, to: active_quality}
  - {from: active_quality, to: active_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/active_subscriptions",
)
