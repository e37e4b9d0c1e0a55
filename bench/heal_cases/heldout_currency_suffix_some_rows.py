"""The expense tool now appends a currency code to amounts claimed abroad ("120.00 USD",
"64.50 GBP"); the other rows stay plain euro amounts. TRY_CAST would drop the foreign
claims, stripping the suffix would add dollars to euros: converting is a business decision. Defer."""

from __future__ import annotations

from pathlib import Path

from heal_cases.common import Case, blueprint, rng, write_csv

NAME = "heldout_currency_suffix_some_rows"
SOURCE = "finance/expense_claims.csv"
HEADER = ["claim_id", "employee_id", "category", "amount", "submitted_on"]
ABROAD = {3: "USD", 11: "GBP", 19: "USD", 27: "CHF", 34: "USD"}


def _rows(suffixed: bool) -> list[list]:
    r = rng(112)
    rows = []
    for i in range(40):
        amount = f"{r.uniform(8, 450):.2f}"
        if suffixed and i in ABROAD:
            amount = f"{amount} {ABROAD[i]}"
        rows.append([f"EXP-{i:04d}", r.randint(100, 130), r.choice(("travel", "meals", "lodging", "software")),
                     amount, f"2026-05-{1 + i % 28:02d}"])  # fmt: skip
    return rows


def write_good(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows(False))


def break_input(data: Path) -> None:
    write_csv(data / SOURCE, HEADER, _rows(True))


CASE = Case(
    name=NAME,
    breakage="some amounts gained a currency suffix",
    expect="defer",
    why="5 of 40 amounts carry USD/GBP/CHF: neither TRY_CAST nor stripping is honest; defer with the samples",
    blueprint=blueprint(NAME, title="Expenses per category", body="""
modules:
  - id: claims
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/finance/expense_claims.csv", header: true, options: {inferSchema: "true"}}
  - id: typed_claims
    type: Channel
    config:
      op: sql
      query: |
        SELECT claim_id, employee_id, category, CAST(amount AS DECIMAL(10, 2)) AS amount_eur
        FROM claims
  - id: expenses_per_category
    type: Channel
    config:
      op: sql
      query: SELECT category, COUNT(*) AS claims, SUM(amount_eur) AS total_eur FROM typed_claims GROUP BY category
  - id: expenses_out
    type: Egress
    config: {format: delta, path: "${ctx.data_dir}/published/expenses_per_category", mode: overwrite}
edges:
  - {from: claims, to: typed_claims}
  - {from: typed_claims, to: expenses_per_category}
  - {from: expenses_per_category, to: expenses_out}
"""),
    write_good=write_good,
    break_input=break_input,
    answer=None,
    output="published/expenses_per_category",
    output_format="delta",
)
