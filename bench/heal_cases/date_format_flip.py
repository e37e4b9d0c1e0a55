"""The bookings export switched dates from ISO (2026-03-04) to 04/03/2026. Every day is 12 or
less, so day-first and month-first read equally well: nothing in the data decides. Defer."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "date_format_flip"
SOURCE = "travel/bookings.csv"


def _rows(day_first: bool) -> list[list]:
    r = rng(25)
    rows = []
    for i in range(30):
        month, day = r.randint(1, 12), r.randint(1, 12)
        check_in = f"{day:02d}/{month:02d}/2026" if day_first else f"2026-{month:02d}-{day:02d}"
        rows.append([f"B{i:04d}", check_in, r.randint(1, 14)])
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["booking_id", "check_in", "nights"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["booking_id", "check_in", "nights"], _rows(True))


CASE = Case(
    name=NAME,
    breakage="ambiguous date format change",
    expect="defer",
    why="dd/MM and MM/dd both parse every value: defer with the samples as evidence",
    blueprint=blueprint(NAME, title="Bookings", body="""
modules:
  - id: bookings
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/travel/bookings.csv", header: true, options: {inferSchema: "false"}}
  - id: typed_bookings
    type: Channel
    config:
      op: sql
      query: |
        SELECT booking_id, CAST(check_in AS DATE) AS check_in, CAST(nights AS INT) AS nights
        FROM bookings
  - id: bookings_quality
    type: Assert
    config:
      rules:
        - {type: not_null, column: check_in}
  - id: bookings_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/bookings", mode: overwrite}
edges:
  - {from: bookings, to: typed_bookings}
  - {from: typed_bookings, to: bookings_quality}
  - {from: bookings_quality, to: bookings_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/bookings",
)
