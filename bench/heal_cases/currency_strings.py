"""The invoicing export now formats amounts for people: "$1,234.50". A TRY_CAST would turn
every amount into NULL; parsing the format is a judgement about currency: defer."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "currency_strings"
SOURCE = "finance/invoices.csv"


def _rows(formatted: bool) -> list[list]:
    r = rng(24)
    rows = []
    for i in range(28):
        amount = round(r.uniform(50, 5000), 2)
        rows.append([f"INV-{i:04d}", f"${amount:,.2f}" if formatted else f"{amount:.2f}"])
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, ["invoice_id", "amount"], _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, ["invoice_id", "amount"], _rows(True))


CASE = Case(
    name=NAME,
    breakage="amounts became currency strings",
    expect="defer",
    why="TRY_CAST would NULL the whole column: defer with the sample values as evidence",
    blueprint=blueprint(NAME, title="Invoice amounts", body="""
modules:
  - id: invoices
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/finance/invoices.csv", header: true, options: {inferSchema: "true"}}
  - id: typed_invoices
    type: Channel
    config:
      op: sql
      query: SELECT invoice_id, CAST(amount AS DECIMAL(12, 2)) AS amount FROM invoices
  - id: invoices_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/invoices", mode: overwrite}
edges:
  - {from: invoices, to: typed_invoices}
  - {from: typed_invoices, to: invoices_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/invoices",
    output_format="delta",
)
