"""A carrier's shipments export renamed `weight_kg` to `weight_kilograms`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "renamed_column"
SOURCE = "exports/shipments.csv"
CARRIERS = ("dhl", "ups", "fedex", "postnl")


def _rows() -> list[list]:
    r = rng(11)
    return [[1000 + i, r.choice(CARRIERS), round(r.uniform(0.5, 40.0), 1), f"2026-03-{1 + i % 28:02d}"]
            for i in range(36)]  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["shipment_id", "carrier", "weight_kg", "shipped_on"], _rows())


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["shipment_id", "carrier", "weight_kilograms", "shipped_on"], _rows())


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / SOURCE)
    frame = frame.assign(shipment_id=frame.shipment_id.astype(int), weight_kg=frame.weight_kilograms.astype(float))
    return frame[frame.weight_kg >= 10][["shipment_id", "carrier", "weight_kg"]]


CASE = Case(
    name=NAME,
    breakage="renamed column",
    expect="fix",
    why="read weight_kilograms AS weight_kg",
    blueprint=blueprint(NAME, title="Heavy shipments", body="""
modules:
  - id: shipments
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/exports/shipments.csv", header: true, options: {inferSchema: "true"}}
  - id: heavy_shipments
    type: Channel
    config:
      op: sql
      query: |
        SELECT shipment_id, carrier, weight_kg
        FROM shipments
        WHERE weight_kg >= 10
  - id: shipments_quality
    type: Assert
    config:
      rules:
        - {type: min_rows, min: 1}
        - {type: not_null, column: shipment_id}
  - id: heavy_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/heavy_shipments", mode: overwrite}
edges:
  - {from: shipments, to: heavy_shipments}
  - {from: heavy_shipments, to: shipments_quality}
  - {from: shipments_quality, to: heavy_out}
"""),
    reference=(("carrier, weight_kg", "carrier, weight_kilograms AS weight_kg"), ("WHERE weight_kg", "WHERE weight_kilograms")),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/heavy_shipments",
)
