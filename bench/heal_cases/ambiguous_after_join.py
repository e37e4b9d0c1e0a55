"""The carriers export gained a `region` column (the carrier's head office): the join's
unqualified `region`, meant as the shipment's destination region, became ambiguous."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "ambiguous_after_join"
SHIPMENTS, CARRIERS = "logistics/shipments.csv", "logistics/carriers.csv"
REGIONS = ("north", "south", "east", "west")


def write_good(data: Path) -> None:
    r = rng(17)
    write_csv(data / SHIPMENTS, ["shipment_id", "carrier_id", "region", "parcels"],
              [[5000 + i, r.randint(1, 5), r.choice(REGIONS), r.randint(1, 9)] for i in range(40)])  # fmt: skip
    write_csv(data / CARRIERS, ["carrier_id", "carrier_name"], [[i, f"carrier-{i}"] for i in range(1, 6)])


def break_input(data: Path) -> None:
    # new column first, with values that never equal a shipment's region by accident
    write_csv(data / CARRIERS, ["region", "carrier_id", "carrier_name"],
              [[f"hq-{REGIONS[i % 4]}", i, f"carrier-{i}"] for i in range(1, 6)])  # fmt: skip


def answer(data: Path) -> pd.DataFrame:
    shipments, carriers = read_csv(data / SHIPMENTS), read_csv(data / CARRIERS)
    joined = shipments.merge(carriers, on="carrier_id", suffixes=("", "_carrier"))
    return pd.DataFrame({
        "shipment_id": joined.shipment_id.astype(int),
        "carrier_name": joined.carrier_name,
        "region": joined.region,  # the shipment's own column
        "parcels": joined.parcels.astype(int),
    })  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="ambiguous column after a join",
    expect="fix",
    why="qualify region with the shipments side (the side that had it in the last good run)",
    blueprint=blueprint(NAME, title="Shipments by carrier", body="""
modules:
  - id: shipments
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/logistics/shipments.csv", header: true, options: {inferSchema: "true"}}
  - id: carriers
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/logistics/carriers.csv", header: true, options: {inferSchema: "true"}}
  - id: shipments_by_carrier
    type: Channel
    config:
      op: sql
      query: |
        SELECT s.shipment_id, c.carrier_name, region, s.parcels
        FROM shipments s JOIN carriers c ON s.carrier_id = c.carrier_id
  - id: shipments_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/shipments_by_carrier", mode: overwrite}
edges:
  - {from: shipments, to: shipments_by_carrier}
  - {from: carriers, to: shipments_by_carrier}
  - {from: shipments_by_carrier, to: shipments_out}
"""),
    reference=(("c.carrier_name, region,", "c.carrier_name, s.region,"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/shipments_by_carrier",
)
