"""A mobile SDK upgrade renamed the nested field `device.os.name` to `device.os.family`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, rng, write_jsonl

NAME = "renamed_nested_field"
SOURCE = "events/sessions.jsonl"


def _records(field: str) -> list[dict]:
    r = rng(13)
    return [
        {
            "session_id": f"s{i:03d}",
            "device": {"model": r.choice(("pixel", "galaxy", "iphone")),
                       "os": {field: r.choice(("android", "ios")), "version": str(r.randint(12, 17))}},
            "duration_s": r.randint(1, 120),
        }
        for i in range(32)
    ]  # fmt: skip


def write_good(data: Path) -> None:
    write_jsonl(data / SOURCE, _records("name"))


def break_input(data: Path) -> None:
    write_jsonl(data / SOURCE, _records("family"))


def answer(data: Path) -> pd.DataFrame:
    records = [json.loads(line) for line in (data / SOURCE).read_text().splitlines()]
    rows = [{"session_id": r["session_id"], "os_name": r["device"]["os"]["family"], "duration_s": r["duration_s"]}
            for r in records if r["duration_s"] > 5]  # fmt: skip
    return pd.DataFrame(rows)


CASE = Case(
    name=NAME,
    breakage="renamed nested struct field",
    expect="fix",
    why="read device.os.family AS os_name",
    blueprint=blueprint(NAME, title="Engaged sessions", body="""
modules:
  - id: sessions
    type: Ingress
    config: {format: json, path: "${ctx.data_dir}/events/sessions.jsonl"}
  - id: engaged_sessions
    type: Channel
    config:
      op: sql
      query: |
        SELECT session_id, device.os.name AS os_name, duration_s
        FROM sessions
        WHERE duration_s > 5
  - id: sessions_quality
    type: Assert
    config:
      rules:
        - {type: not_null, column: os_name}
  - id: sessions_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/engaged_sessions", mode: overwrite}
edges:
  - {from: sessions, to: engaged_sessions}
  - {from: engaged_sessions, to: sessions_quality}
  - {from: sessions_quality, to: sessions_out}
"""),
    reference=(("device.os.name AS os_name", "device.os.family AS os_name"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/engaged_sessions",
)
