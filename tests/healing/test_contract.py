"""The output contract: each way a running patch can still publish the wrong thing is refused
with its measure (healing/contract.py)."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.contract import OutputProfile, profile_output, violations

CONTRACT = {
    "columns": [{"name": "invoice_id", "type": "int"}, {"name": "amount", "type": "decimal(12,2)"},
                {"name": "paid_on", "type": "date"}],
    "rows_written": 20,
    "profile": {"rows": 20, "null_count": {"invoice_id": 0, "amount": 0, "paid_on": 20},
                "max": {"paid_on": "2026-03-31"}},
}  # fmt: skip


def _profile(rows=20, amount=20, paid_on=0, columns=None, newest=None) -> OutputProfile:
    columns = columns or [("invoice_id", "int"), ("amount", "decimal(12,2)"), ("paid_on", "date")]
    return OutputProfile(columns=columns, rows=rows,
                         non_null={"invoice_id": rows, "amount": amount, "paid_on": paid_on}, newest=newest or {})  # fmt: skip


def test_a_profile_like_the_last_good_output_keeps_the_contract():
    assert violations(CONTRACT, _profile(), whole_input=True) == []


def test_a_column_that_had_values_turning_all_null_is_a_violation():
    [found] = violations(CONTRACT, _profile(amount=0), whole_input=True)
    assert found.startswith("no value left in amount (20 sampled output rows")


def test_a_column_that_was_empty_before_may_stay_empty():
    # paid_on was NULL on every row of the last good output: empty now is no change.
    assert violations(CONTRACT, _profile(paid_on=0), whole_input=True) == []


def test_without_statistics_any_empty_column_counts():
    contract = {k: v for k, v in CONTRACT.items() if k != "profile"}
    assert violations(contract, _profile(paid_on=0), whole_input=False) == [
        "no value left in paid_on (20 sampled output rows, all NULL there)"
    ]


def test_changed_columns_and_types_are_violations():
    columns = [("invoice_id", "int"), ("amount", "string"), ("paid_on", "date"), ("note", "string")]
    found = violations(CONTRACT, _profile(columns=columns), whole_input=True)
    assert "columns the last good run did not publish: note" in found
    assert "column types changed: amount decimal(12,2) -> string" in found


def test_rows_out_of_band_only_count_when_the_sample_was_the_whole_input():
    assert violations(CONTRACT, _profile(rows=4, amount=4), whole_input=True) == [
        "4 rows against 20 in the last good run (x0.20, allowed x0.5 to x2)"
    ]
    assert violations(CONTRACT, _profile(rows=4, amount=4), whole_input=False) == []
    assert violations(CONTRACT, _profile(rows=0, amount=0), whole_input=False) == [
        "no rows published on the sample; the last good run published 20"
    ]


def test_a_date_column_moving_backwards_is_a_violation():
    found = violations(CONTRACT, _profile(paid_on=20, newest={"paid_on": "2025-12-31"}), whole_input=True)
    assert found == ["paid_on moved backwards: newest 2025-12-31 against 2026-03-31 in the last good run"]
    assert violations(CONTRACT, _profile(paid_on=20, newest={"paid_on": "2026-04-02"}), whole_input=True) == []


@pytest.mark.spark
def test_profile_output_measures_in_one_job(spark):
    frame = spark.sql(
        "SELECT * FROM VALUES (1, CAST(NULL AS STRING), DATE'2026-01-02'), (2, CAST(NULL AS STRING), DATE'2026-01-05') "
        "AS t(id, `odd name`, day)"
    )
    profile = profile_output(frame)
    assert profile.rows == 2
    assert profile.non_null == {"id": 2, "odd name": 0, "day": 2}
    assert profile.newest == {"day": "2026-01-05"}


CURRENCY = """\
aqueduct: "1.0"
id: invoices
name: Invoices
agent:
  approval: human
modules:
  - id: invoices
    type: Ingress
    config: {{format: csv, path: "{data}/invoices.csv", header: true}}
  - id: typed_invoices
    type: Channel
    config:
      op: sql
      query: SELECT invoice_id, CAST(amount AS DECIMAL(12, 2)) AS amount FROM invoices
  - id: invoices_out
    type: Egress
    config: {{format: parquet, path: "{data}/out", mode: overwrite}}
edges:
  - {{from: invoices, to: typed_invoices}}
  - {{from: typed_invoices, to: invoices_out}}
"""


@pytest.mark.spark
def test_a_patch_that_runs_but_nulls_a_published_column_is_rejected_with_the_measure(spark, tmp_path):
    """TRY_CAST over amounts that became currency strings runs in the sandbox and would publish a
    column of NULLs: the contract gate refuses it (the rule had no measured evidence here)."""
    from aqueduct_dagster.blueprint import compile_text
    from aqueduct_dagster.healing.failure import build_failure_package
    from aqueduct_dagster.healing.heal import Healer, HealSettings, RuleDiagnoser
    from aqueduct_dagster.stores import DuckDBStore

    (tmp_path / "invoices.csv").write_text("invoice_id,amount\n1,EUR 12.50\n2,EUR 7.00\n3,EUR 1.25\n")
    path = tmp_path / "invoices.yml"
    path.write_text(CURRENCY.format(data=tmp_path))
    manifest = compile_text(path.read_text(), source_path=str(path))
    error = {"exception_class": "org.apache.spark.SparkNumberFormatException", "condition": "CAST_INVALID_INPUT",
             "sqlstate": "22018", "message_parameters": {"expression": "'EUR 12.50'", "sourceType": '"STRING"',
                                                         "targetType": '"DECIMAL(12,2)"'},
             "message": "[CAST_INVALID_INPUT] The value 'EUR 12.50' cannot be cast"}  # fmt: skip
    contract = {"columns": [{"name": "invoice_id", "type": "string"}, {"name": "amount", "type": "decimal(12,2)"}],
                "rows_written": 3}  # fmt: skip
    package = build_failure_package(manifest=manifest, blueprint_text=path.read_text(), failure=FailureRecord(module_id="typed_invoices", error=error),
                                    run_id="run-2", last_good_run="run-1",
                                    contracts={"invoices_out": contract})  # fmt: skip
    settings = HealSettings(store=DuckDBStore(tmp_path / "state.duckdb"), patches_dir=tmp_path / "patches",
                            revisions_dir=tmp_path / "revisions", diagnosers=[RuleDiagnoser()],
                            spark_factory=lambda: spark)  # fmt: skip
    outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "no_fix" and outcome.pending_path is None
    # It ran in the sandbox: only the contract says no, with the measure.
    assert "rejected by contract" in outcome.message
    assert "'invoices_out': no value left in amount (3 sampled output rows, all NULL there)" in outcome.message
