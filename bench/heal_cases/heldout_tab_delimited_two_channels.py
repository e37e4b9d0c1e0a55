"""The payroll system's timesheet export (one folder per pay period, picked by a context
variable) switched from commas to tabs. The first Channel passes every column on with
`SELECT *`; the comma reader now sees one column and the run fails in the first Channel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "heldout_tab_delimited_two_channels"
SOURCE = "hr/2026-05/timesheets.csv"
HEADER = ["employee_id", "first_name", "last_name", "department", "cost_center",
          "hours_regular", "hours_overtime", "hourly_rate", "approved"]  # fmt: skip
DEPARTMENTS = (("finance", "CC-110"), ("warehouse", "CC-420"), ("it", "CC-230"), ("sales", "CC-310"))
FIRST = ("Anna", "Bram", "Chloe", "Daan", "Eva", "Finn", "Grace", "Hugo")
LAST = ("de Vries", "Jansen", "van der Berg", "Bakker", "Visser", "Smit", "Meijer")


def _rows() -> list[list]:
    r = rng(101)
    rows = []
    for i in range(48):
        department, cost_center = r.choice(DEPARTMENTS)
        rows.append([3100 + i, r.choice(FIRST), r.choice(LAST), department, cost_center,
                     r.choice((32.0, 36.0, 38.5, 40.0)), r.choice((0.0, 0.0, 1.5, 2.25, 4.0)),
                     r.choice((18.5, 21.75, 24.0, 31.25, 42.0)), r.choice(("true", "true", "true", "false"))])  # fmt: skip
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows())


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows(), delimiter="\t")


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE, sep="\t")
    frame = frame[frame.approved == "true"]
    regular, overtime, rate = (frame[c].astype(float) for c in ("hours_regular", "hours_overtime", "hourly_rate"))
    return pd.DataFrame({
        "employee_id": frame.employee_id.astype(int),
        "department": frame.department,
        "cost_center": frame.cost_center,
        "hours": regular + overtime,
        "gross_pay": regular * rate + overtime * rate * 1.5,
    })  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="CSV delimiter change (tab), two Channels",
    expect="fix",
    why="read the CSV with sep '\\t' (a tab); the Channels stay as they are",
    blueprint=blueprint(NAME, title="Approved timesheets", body="""
modules:
  - id: timesheets
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/hr/${ctx.period}/timesheets.csv", header: true, options: {inferSchema: "true"}}
  - id: approved_timesheets
    type: Channel
    config:
      op: sql
      query: SELECT * FROM timesheets WHERE approved = true
  - id: pay_lines
    type: Channel
    config:
      op: sql
      query: |
        SELECT employee_id, department, cost_center,
               hours_regular + hours_overtime AS hours,
               hours_regular * hourly_rate + hours_overtime * hourly_rate * 1.5 AS gross_pay
        FROM approved_timesheets
  - id: pay_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
        - {type: not_null, column: gross_pay}
  - id: pay_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/pay_lines", mode: overwrite}
edges:
  - {from: timesheets, to: approved_timesheets}
  - {from: approved_timesheets, to: pay_lines}
  - {from: pay_lines, to: pay_quality}
  - {from: pay_quality, to: pay_out}
""").replace("context:\n", 'context:\n  period: "2026-05"\n', 1),
    reference=(('options: {inferSchema: "true"}', 'options: {inferSchema: "true", sep: "\\t"}'),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/pay_lines",
)
