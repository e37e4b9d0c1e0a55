"""The ticketing system's Parquet export now stores `priority` as text ("1", "2", ...)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "retyped_int_to_string"
FOLDER = "support/tickets"


def _records(priority_type: type) -> list[dict]:
    r = rng(20)
    return [{"ticket_id": 70_000 + i, "priority": priority_type(r.randint(1, 4)), "team": r.choice(("billing", "ops"))}
            for i in range(30)]  # fmt: skip


def write_good(data: Path) -> None:
    schema = pa.schema([("ticket_id", pa.int64()), ("priority", pa.int32()), ("team", pa.string())])
    write_parquet(data / FOLDER / "part-00000.parquet", _records(int), schema)


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    schema = pa.schema([("ticket_id", pa.int64()), ("priority", pa.string()), ("team", pa.string())])
    write_parquet(data / FOLDER / "part-00000.parquet", _records(str), schema)


def answer(data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data / FOLDER)
    frame = frame.assign(priority=frame.priority.astype(int))  # clean digits: the published type stays int
    return frame[frame.priority <= 2]


CASE = Case(
    name=NAME,
    breakage="retyped column (int -> string of clean digits)",
    expect="fix",
    why="cast priority back to INT (the published column keeps its type)",
    blueprint=blueprint(NAME, title="Urgent tickets", body="""
modules:
  - id: tickets
    type: Ingress
    config:
      format: parquet
      path: "${ctx.data_dir}/support/tickets"
      schema_hint: {ticket_id: long, priority: int}
  - id: urgent_tickets
    type: Channel
    config:
      op: sql
      query: SELECT ticket_id, priority, team FROM tickets WHERE priority <= 2
  - id: tickets_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/urgent_tickets", mode: overwrite}
edges:
  - {from: tickets, to: urgent_tickets}
  - {from: urgent_tickets, to: tickets_out}
"""),
    reference=(("priority: int}", "priority: string}"),
               ("SELECT ticket_id, priority, team FROM tickets WHERE priority <= 2",
                "SELECT ticket_id, CAST(priority AS INT) AS priority, team FROM tickets WHERE CAST(priority AS INT) <= 2")),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/urgent_tickets",
)
