"""The procurement system now writes its vendor master as `master_data_vendors.csv` (the old
`vendor_master.csv` is gone). The folder, picked by a context variable, also holds
`vendor_contacts.csv` and `vendor_bank_accounts.csv` (other schemas, names closer to the old
one), rewritten by the same export run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from heal_cases.common import Case, blueprint, read_csv, rng, write_csv

NAME = "heldout_renamed_file_among_csvs"
FOLDER = "procurement/vendors"
OLD, NEW = f"{FOLDER}/vendor_master.csv", f"{FOLDER}/master_data_vendors.csv"
CONTACTS, BANKS = f"{FOLDER}/vendor_contacts.csv", f"{FOLDER}/vendor_bank_accounts.csv"
HEADER = ["vendor_id", "vendor_name", "country", "payment_terms_days", "preferred", "created_on"]
COUNTRIES = ("NL", "DE", "BE", "FR", "PL")


def _vendors() -> list[list]:
    r = rng(105)
    return [[800 + i, f"{r.choice(('Noord', 'Delta', 'Rijn', 'Polder', 'Haven'))} {r.choice(('Supplies', 'Logistics', 'Foods', 'Tech'))} {i}",
             r.choice(COUNTRIES), r.choice((14, 30, 30, 45, 60)), r.choice(("true", "false")),
             f"20{r.randint(15, 25)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"]
            for i in range(35)]  # fmt: skip


def _write_neighbours(data: Path) -> None:
    r = rng(205)
    write_csv(data / CONTACTS, ["vendor_id", "contact_name", "email", "phone"],
              [[800 + i, f"contact {i}", f"ap{i}@vendor{i}.example", f"+31 20 {r.randint(1000000, 9999999)}"]
               for i in range(35)])  # fmt: skip
    write_csv(data / BANKS, ["vendor_id", "iban", "bic", "country", "verified"],
              [[800 + i, f"NL{r.randint(10, 99)}BANK0{r.randint(10**8, 10**9 - 1)}", "BANKNL2A", r.choice(COUNTRIES),
                r.choice(("true", "false"))] for i in range(35)])  # fmt: skip


def write_good(data: Path) -> None:
    write_csv(data / OLD, HEADER, _vendors())
    _write_neighbours(data)


def break_input(data: Path) -> None:
    (data / OLD).unlink()
    write_csv(data / NEW, HEADER, _vendors())
    _write_neighbours(data)  # the same export run rewrites them: they are as recent as the new file


def answer(data: Path) -> pd.DataFrame:
    frame = read_csv(data / NEW)
    terms = frame.payment_terms_days.astype(int)
    frame = frame[(frame.preferred == "true") & (terms <= 30)]
    return pd.DataFrame({"vendor_id": frame.vendor_id.astype(int), "vendor_name": frame.vendor_name,
                         "country": frame.country, "payment_terms_days": frame.payment_terms_days.astype(int)})  # fmt: skip


CASE = Case(
    name=NAME,
    breakage="renamed input file, two other CSVs beside it",
    expect="fix",
    why="point the Ingress at master_data_vendors.csv (the one with the last good schema)",
    blueprint=blueprint(NAME, title="Preferred vendors", body="""
modules:
  - id: vendors
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/${ctx.vendor_dir}/vendor_master.csv", header: true, options: {inferSchema: "true"}}
  - id: preferred_vendors
    type: Channel
    config:
      op: sql
      query: |
        SELECT vendor_id, vendor_name, country, payment_terms_days
        FROM vendors
        WHERE preferred AND payment_terms_days <= 30
  - id: vendors_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/preferred_vendors", mode: overwrite}
edges:
  - {from: vendors, to: preferred_vendors}
  - {from: preferred_vendors, to: vendors_out}
""").replace("context:\n", "context:\n  vendor_dir: procurement/vendors\n", 1),
    reference=(("/vendor_master.csv", "/master_data_vendors.csv"),),
    write_good=write_good,
    break_input=break_input,
    answer=answer,
    output="published/preferred_vendors",
)
