"""The CRM's customer snapshot (Parquet, nested) renamed `profile.address.postcode` to
`profile.address.postal_code`. `profile.billing.postcode` (the billing address, different
values) still exists. A Junction splits the result by country downstream."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, rng, write_parquet

NAME = "heldout_renamed_nested_parquet_junction"
FOLDER = "crm/customer_snapshot"
CITIES = (("NL", "Utrecht", "3511"), ("NL", "Haarlem", "2011"), ("BE", "Gent", "9000"), ("DE", "Aachen", "52062"))


def _records(postcode_field: str) -> list[dict]:
    r = rng(104)
    records = []
    for i in range(40):
        country, city, prefix = r.choice(CITIES)
        records.append({
            "customer_id": 50_000 + i,
            "profile": {
                "contact": {"email": f"customer{i}@example.org", "phone": f"+31 6 {r.randint(10000000, 99999999)}"},
                "address": {"street": f"Kerkstraat {1 + i}", "city": city, postcode_field: f"{prefix} {chr(65 + i % 26)}K",
                            "country": country},
                "billing": {"postcode": f"{r.randint(1000, 9999)} ZZ", "vat_id": f"NL{r.randint(10**8, 10**9 - 1)}B01"},
            },
            "lifetime_value": round(r.uniform(20, 900), 2),
        })  # fmt: skip
    return records


def write_good(data: Path) -> None:
    write_parquet(data / FOLDER / "part-00000.parquet", _records("postcode"))


def break_input(data: Path) -> None:
    shutil.rmtree(data / FOLDER)
    write_parquet(data / FOLDER / "part-00000.parquet", _records("postal_code"))


def answer(data: Path) -> pd.DataFrame:
    frame = pd.read_parquet(data / FOLDER)
    rows = [{"customer_id": int(row.customer_id), "city": row.profile["address"]["city"],
             "postcode": row.profile["address"]["postal_code"], "country": row.profile["address"]["country"],
             "lifetime_value": float(row.lifetime_value)}
            for row in frame.itertuples(index=False)
            if row.lifetime_value > 100 and row.profile["address"]["country"] == "NL"]  # fmt: skip
    return pd.DataFrame(rows)


CASE = Case(
    name=NAME,
    breakage="renamed nested field two levels deep (Parquet), Junction downstream",
    expect="fix",
    why="read profile.address.postal_code AS postcode (not profile.billing.postcode)",
    blueprint=blueprint(NAME, title="Valuable customers by country", body="""
modules:
  - id: customers
    type: Ingress
    config: {format: parquet, path: "${ctx.data_dir}/crm/customer_snapshot"}
  - id: valuable_customers
    type: Channel
    config:
      op: sql
      query: |
        SELECT customer_id,
               profile.address.city AS city,
               profile.address.postcode AS postcode,
               profile.address.country AS country,
               lifetime_value
        FROM customers
        WHERE lifetime_value > 100
  - id: by_country
    type: Junction
    config:
      mode: conditional
      branches:
        - {id: nl, condition: "country = 'NL'"}
        - {id: abroad, condition: _else_}
  - id: nl_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/valuable_customers_nl", mode: overwrite}
  - id: abroad_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/valuable_customers_abroad", mode: overwrite}
edges:
  - {from: customers, to: valuable_customers}
  - {from: valuable_customers, to: by_country}
  - {from: by_country, to: nl_out, port: nl}
  - {from: by_country, to: abroad_out, port: abroad}
"""),
    reference=(("profile.address.postcode AS postcode", "profile.address.postal_code AS postcode"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/valuable_customers_nl",
)
