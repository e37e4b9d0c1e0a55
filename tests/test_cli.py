"""The `aqueduct` command line: exit codes and what a user reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def test_validate_ok_and_warnings():
    result = invoke("validate", str(REPO / "blueprints" / "orders_daily.yml"))
    assert result.exit_code == 0
    assert "ok" in result.output and "orders_daily: 4 modules" in result.output


def test_validate_bad_blueprint_exits_2_with_location(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text('aqueduct: "1.0"\nid: x\nname: x\nmodules:\n  - id: a\n    type: Ingres\n')
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:6" in result.output and "Ingress" in result.output


def test_compile_shows_provenance_for_macro_built_sql():
    result = invoke("compile", str(REPO / "blueprints" / "orders_daily.yml"), "--show", "provenance")
    assert result.exit_code == 0
    line = next(l for l in result.output.splitlines() if l.startswith("modules.clean_orders.config.query"))
    assert "macro" in line


def test_compile_ctx_override_changes_the_manifest():
    result = invoke("compile", str(REPO / "blueprints" / "orders_daily.yml"), "--ctx", "min_amount=10")
    assert result.exit_code == 0 and "amount > 10" in result.output


def test_patch_commands_on_an_empty_queue(tmp_path):
    env = {"AQUEDUCT_PATCHES_DIR": str(tmp_path / "p"), "AQUEDUCT_STATE_DIR": str(tmp_path / "s")}
    assert "no pending patches" in invoke("patch", "list", env=env).output
    result = CliRunner().invoke(main, ["patch", "show", "nope"], env=env)
    assert result.exit_code == 2 and "no pending patch 'nope'" in result.output


@pytest.mark.parametrize("args", [["--help"], ["patch", "--help"], ["heal", "--help"], ["compile", "--help"]])
def test_help_for_each_command(args):
    assert invoke(*args).exit_code == 0


def test_lineage_traces_columns_back_to_the_ingress(tmp_path):
    path = tmp_path / "l.yml"
    path.write_text(
        'aqueduct: "1.0"\nid: l\nname: l\nmodules:\n'
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv, schema_hint: {order_id: int, amount: double}}}\n"
        "  - {id: a, type: Channel, config: {op: sql, query: 'SELECT order_id AS id, amount * 2 AS doubled FROM raw'}}\n"
        "  - {id: b, type: Channel, config: {op: sql, query: 'SELECT id, doubled AS total FROM a'}}\n"
    )
    result = invoke("lineage", str(path))
    assert result.exit_code == 0
    assert "b.total <- a.doubled   (from raw.amount)" in result.output
    assert "a.id <- raw.order_id" in result.output


def test_runs_lists_store_runs(tmp_path):
    from aqueduct_dagster.stores import DuckDBStore

    DuckDBStore(tmp_path / "s" / "aqueduct.duckdb").record_module_metric(
        run_id="r1", blueprint_id="bp", module_id="raw", module_type="Ingress", status="success", duration_ms=5)
    (tmp_path / "home").mkdir()
    result = invoke("runs", env={"AQUEDUCT_STATE_DIR": str(tmp_path / "s"), "DAGSTER_HOME": str(tmp_path / "home")})
    assert result.exit_code == 0, result.output
    assert "r1  bp  unknown" in result.output and "raw" in result.output
