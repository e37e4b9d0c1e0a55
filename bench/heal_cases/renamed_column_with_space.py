"""A CRM's users export renamed `signup_date` to `signup date`: the new name needs quoting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "renamed_column_with_space"
SOURCE = "crm/users.csv"
COUNTRIES = ("NL", "DE", "FR", "XX")


def _rows() -> list[list]:
    r = rng(12)
    return [[i + 1, r.choice(COUNTRIES), f"2025-{1 + i % 12:02d}-{1 + i % 27:02d}", r.choice(("free", "pro"))]
            for i in range(30)]  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["user_id", "country", "signup_date", "plan"], _rows())


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["user_id", "country", "signup date", "plan"], _rows())


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE)
    frame = frame[frame.country != "XX"]
    return pd.DataFrame({
        "user_id": frame.user_id.astype(int),
        "country": frame.country,
        "signup_date": pd.to_datetime(frame["signup date"]).dt.date,
        "plan": frame.plan,
    })  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="renamed column, new name needs quoting",
    expect="fix",
    why="read `signup date` (quoted) AS signup_date",
    blueprint=blueprint(NAME, title="Known users", body="""
modules:
  - id: users
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/crm/users.csv", header: true, options: {inferSchema: "false"}}
  - id: known_users
    type: Channel
    config:
      op: sql
      query: |
        SELECT CAST(user_id AS INT) AS user_id, country,
               CAST(signup_date AS DATE) AS signup_date, plan
        FROM users
        WHERE country <> 'XX'
  - id: users_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/known_users", mode: overwrite}
edges:
  - {from: users, to: known_users}
  - {from: known_users, to: users_out}
"""),
    reference=(("CAST(signup_date AS DATE)", "CAST(`signup date` AS DATE)"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/known_users",
    output_format="delta",
)
