"""The sensor gateway's firmware update dropped `humidity_pct` from its Parquet readings and
appended `battery_pct` at the end: also a double, also 0-100, but the device's battery, not
the air. Reading battery_pct as humidity would run and publish nonsense. Defer."""

from __future__ import annotations

import shutil
from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "heldout_column_dropped_unrelated_added"
FOLDER = "iot/readings"


def _records(new_firmware: bool) -> list[dict]:
    r = rng(108)
    records = []
    for i in range(72):
        record = {"device_id": f"dev-{i % 6:02d}", "read_at": f"2026-05-14T{i // 6:02d}:00:00Z",
                  "temperature_c": round(r.uniform(14, 31), 2)}
        humidity, pressure, battery = round(r.uniform(30, 85), 1), round(r.uniform(990, 1030), 1), round(r.uniform(5, 100), 1)
        if new_firmware:
            record.update(pressure_hpa=pressure, battery_pct=battery)
        else:
            record.update(humidity_pct=humidity, pressure_hpa=pressure)
        records.append(record)
    return records


def write_good(data: Path) -> None:
    write_parquet(data / FOLDER / "part-00000.parquet", _records(False))


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    write_parquet(data / FOLDER / "part-00000.parquet", _records(True))


CASE = Case(
    name=NAME,
    breakage="column removed, unrelated column of the same type added",
    expect="defer",
    why="humidity_pct is gone; battery_pct is new but means something else: defer and show both",
    blueprint=blueprint(NAME, title="Climate per device", body="""
modules:
  - id: readings
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/iot/readings"}
  - id: plausible_readings
    type: Channel
    config:
      op: sql
      query: SELECT * FROM readings WHERE temperature_c BETWEEN -40 AND 85
  - id: climate_per_device
    type: Channel
    config:
      op: sql
      query: |
        SELECT device_id,
               ROUND(AVG(temperature_c), 2) AS avg_temperature_c,
               ROUND(AVG(humidity_pct), 1) AS avg_humidity_pct,
               MAX(pressure_hpa) AS max_pressure_hpa
        FROM plausible_readings
        GROUP BY device_id
  - id: climate_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/climate_per_device", mode: overwrite}
edges:
  - {from: readings, to: plausible_readings}
  - {from: plausible_readings, to: climate_per_device}
  - {from: climate_per_device, to: climate_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/climate_per_device",
    output_format="delta",
)
