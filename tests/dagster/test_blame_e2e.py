"""Lazy faults through Dagster on real Spark: recorded where they surface, blamed where written.

A CAST of 'N/A' or a division by zero written in a Channel raises only at an action: in the
Assert check that aggregates the Channel's output, or in the Egress that writes it. Each
test runs the Blueprint as a user would (good input, then the input changes), heals the
failed run, and checks which module the patch touches; one applies it and compares the
published table with an answer computed with pandas from the input.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.assets import ERROR_METADATA_KEY
from aqueduct_dagster.dagster.healing import aqueduct_heal_job
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.heal import PatchQueue
from aqueduct_dagster.settings import Settings

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark"), pytest.mark.spark_kind("classic")]
# One session kind: what these tests check does not depend on it (Connect runs through
# Dagster are covered by test_materialize, test_module_types and test_warm_spark).

HEADER = 'aqueduct: "1.0"\nid: {id}\nname: {id}\ncontext:\n  data_dir: "@aq.env(\'AQUEDUCT_DATA_DIR\', \'data\')"\nagent:\n  approval: human\n'

PICKS = HEADER.format(id="picks_bp") + """
modules:
  - id: picks
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/picks.csv", header: true, options: {inferSchema: "false"}}
  - id: typed_picks
    type: Channel
    config:
      op: sql
      query: SELECT pick_id, site, CAST(qty AS INT) AS qty FROM picks
  - id: units_per_site
    type: Channel
    config:
      op: sql
      query: SELECT site, COUNT(pick_id) AS picks, SUM(qty) AS units FROM typed_picks GROUP BY site
  - id: units_quality
    type: Assert
    config:
      rules:
        - {type: sql, expr: "MIN(units) > 0"}
  - id: units_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/units", mode: overwrite}
edges:
  - {from: picks, to: typed_picks}
  - {from: typed_picks, to: units_per_site}
  - {from: units_per_site, to: units_quality}
  - {from: units_quality, to: units_out}
"""

CAMPAIGNS = HEADER.format(id="campaigns_bp") + """
modules:
  - id: campaigns
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/campaigns.csv", header: true, options: {inferSchema: "true"}}
  - id: campaign_costs
    type: Channel
    config:
      op: sql
      query: SELECT campaign_id, spend, clicks, spend / clicks AS raw_cpc FROM campaigns
  - id: rounded_costs
    type: Channel
    config:
      op: sql
      query: SELECT campaign_id, ROUND(raw_cpc, 4) AS cost_per_click FROM campaign_costs
  - id: costs_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/costs", mode: overwrite}
edges:
  - {from: campaigns, to: campaign_costs}
  - {from: campaign_costs, to: rounded_costs}
  - {from: rounded_costs, to: costs_out}
"""

#: Every amount became a formatted string: a TRY_CAST would publish a column of NULLs.
INVOICES = HEADER.format(id="invoices_bp") + """
modules:
  - id: invoices
    type: Ingress
    config: {format: csv, path: "${ctx.data_dir}/invoices.csv", header: true, options: {inferSchema: "false"}}
  - id: typed_invoices
    type: Channel
    config:
      op: sql
      query: SELECT invoice_id, CAST(amount AS DECIMAL(12, 2)) AS amount FROM invoices
  - id: invoices_quality
    type: Assert
    config:
      rules:
        - {type: sql, expr: "SUM(amount) > 0"}
  - id: invoices_out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/published/invoices", mode: overwrite}
edges:
  - {from: invoices, to: typed_invoices}
  - {from: typed_invoices, to: invoices_quality}
  - {from: invoices_quality, to: invoices_out}
"""

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("blueprints", "data", "dagster_home"):
        (tmp_path / name).mkdir()
    (tmp_path / "aqueduct.yml").write_text("{}\n")  # no LLM: the offline rules
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("AQUEDUCT_BLUEPRINTS_DIR", str(tmp_path / "blueprints"))
    monkeypatch.setenv("AQUEDUCT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AQUEDUCT_PATCHES_DIR", str(tmp_path / "patches"))
    monkeypatch.setenv("AQUEDUCT_CONFIG", str(tmp_path / "aqueduct.yml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    instance = dg.DagsterInstance.get()
    yield tmp_path, instance
    instance.dispose()


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def run(root: Path, instance: dg.DagsterInstance, blueprint_id: str) -> dg.ExecuteInProcessResult:
    job = build_definitions(root / "blueprints").resolve_job_def(blueprint_id)
    return job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False)


def heal(instance: dg.DagsterInstance, run_id: str) -> dict:
    result = aqueduct_heal_job.execute_in_process(
        run_config={"ops": {"heal": {"config": {"run_id": run_id}}}, **QUIET}, instance=instance
    )
    return result.output_for_node("heal")


def good_then_broken(root: Path, instance, blueprint: str, blueprint_id: str, write) -> str:
    (root / "blueprints" / f"{blueprint_id}.yml").write_text(blueprint)
    write(broken=False)
    assert run(root, instance, blueprint_id).success
    write(broken=True)
    broken = run(root, instance, blueprint_id)
    # Also proves each run reads the files as they are now: on Spark Connect the good run's
    # persisted frame used to be served to the broken run from the cache.
    assert not broken.success
    return broken.run_id


def recorded_failure(instance: dg.DagsterInstance, run_id: str) -> FailureRecord:
    [record] = [r for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    user = record.dagster_event.event_specific_data.user_failure_data
    assert user is not None, "the failure carries no structured error"
    return FailureRecord.from_json(user.metadata[ERROR_METADATA_KEY].value)


def test_cast_raised_inside_a_check_is_blamed_on_the_channel_and_healed(project):
    root, instance = project
    source = root / "data" / "picks.csv"

    def write(broken: bool) -> None:
        rows = [[f"P{i:03d}", ("AMS", "RTM")[i % 2], "N/A" if broken and i in (4, 17, 29) else str(1 + i % 12)]
                for i in range(40)]  # fmt: skip
        write_csv(source, ["pick_id", "site", "qty"], rows)

    run_id = good_then_broken(root, instance, PICKS, "picks_bp", write)
    # Recorded like any step failure, under the check's module, data values redacted.
    error = recorded_failure(instance, run_id)
    assert error.module_id == "units_quality"
    assert error.error.condition == "CAST_INVALID_INPUT"
    assert error.error.query_context[0]["fragment"] == "CAST(qty AS INT)"
    assert "N/A" not in error.to_json()

    summary = heal(instance, run_id)
    assert summary["status"] == "staged", summary
    record = json.loads(Path(summary["pending_path"]).read_text())
    assert record["failed_module"] == "typed_picks"
    assert "TRY_CAST(qty AS INT)" in record["diff"] and "units_quality" not in record["diff"].split("@@")[-1]
    [operation] = record["patch"]["operations"]
    assert operation["module_id"] == "typed_picks"

    PatchQueue.from_settings(Settings.resolve()).apply(summary["patch_id"])
    rerun = run(root, instance, "picks_bp")
    assert rerun.success
    published = pd.read_parquet(root / "data" / "published" / "units").sort_values("site").reset_index(drop=True)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame["qty"] = pd.to_numeric(frame.qty, errors="coerce")  # N/A -> NULL, as TRY_CAST
    answer = frame.groupby("site", as_index=False).agg(picks=("pick_id", "count"), units=("qty", "sum"))
    assert published["site"].tolist() == answer["site"].tolist()
    assert published["picks"].tolist() == answer["picks"].tolist()
    assert published["units"].astype(int).tolist() == answer["units"].astype(int).tolist()


def test_division_surfacing_in_the_egress_is_patched_in_the_channel(project):
    root, instance = project

    def write(broken: bool) -> None:
        rows = [[f"cmp-{i:02d}", 10.0 + i, 0 if broken and i in (3, 11) else 5 + i] for i in range(24)]
        write_csv(root / "data" / "campaigns.csv", ["campaign_id", "spend", "clicks"], rows)

    run_id = good_then_broken(root, instance, CAMPAIGNS, "campaigns_bp", write)
    assert recorded_failure(instance, run_id).module_id == "costs_out"
    summary = heal(instance, run_id)
    assert summary["status"] == "staged", summary
    record = json.loads(Path(summary["pending_path"]).read_text())
    assert record["failed_module"] == "campaign_costs"
    assert [op["module_id"] for op in record["patch"]["operations"]] == ["campaign_costs"]
    assert "try_divide(spend, clicks) AS raw_cpc" in record["diff"]
    assert "2 of 24 values become NULL" in record["patch"]["rationale"]


def test_try_cast_that_would_null_every_amount_is_refused_and_the_cli_reports_it(project):
    root, instance = project

    def write(broken: bool) -> None:
        rows = [[f"INV-{i:03d}", f"${1000 + i * 7.5:,.2f}" if broken else f"{1000 + i * 7.5:.2f}"] for i in range(28)]
        write_csv(root / "data" / "invoices.csv", ["invoice_id", "amount"], rows)

    run_id = good_then_broken(root, instance, INVOICES, "invoices_bp", write)
    summary = heal(instance, run_id)
    assert summary["status"] == "no_fix", summary
    assert "every value" in summary["message"] and "'typed_invoices'" in summary["message"]
    assert "28 of 28" in summary["message"]
    assert not list(root.glob("patches/**/*.json")), "nothing may be staged"

    # `aqueduct heal` on the same run: says why, exits non-zero, never a traceback.
    result = CliRunner().invoke(main, ["heal", "--run-id", run_id])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "no_fix" in result.output and "every value" in result.output


def test_cli_heal_of_a_run_with_nothing_to_heal_does_not_crash(project):
    root, instance = project
    blueprint = PICKS.replace('{type: sql, expr: "MIN(units) > 0"}', "{type: min_rows, min: 100000}")

    def write(broken: bool) -> None:
        write_csv(root / "data" / "picks.csv", ["pick_id", "site", "qty"], [["P1", "AMS", "3"]])

    (root / "blueprints" / "picks_bp.yml").write_text(blueprint)
    write(broken=False)
    failed = run(root, instance, "picks_bp")
    assert not failed.success  # an abort rule: nothing to heal
    result = CliRunner().invoke(main, ["heal", "--run-id", failed.run_id])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "KeyError" not in result.output
