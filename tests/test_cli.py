"""The `aqueduct` command line: exit codes and what a user reads."""

from __future__ import annotations

import json
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


def test_validate_folder_holds_back_only_the_files_sharing_an_id(tmp_path):
    """As the code location would: both files named, the third one still ok; a file with the
    same id in a sub-folder (an Arcade's, not loaded by the code location) is no collision."""
    body = 'aqueduct: "1.0"\nid: {id}\nmodules:\n  - id: a\n    type: Ingress\n    config: {{format: csv, path: x.csv}}\n'
    (tmp_path / "blueprint.yml").write_text(body.format(id="sales"))
    (tmp_path / "blueprint_bugged.yml").write_text(body.format(id="sales"))
    (tmp_path / "other.yml").write_text(body.format(id="other"))
    (tmp_path / "arcades").mkdir()
    (tmp_path / "arcades" / "part.yml").write_text(body.format(id="other"))
    result = CliRunner().invoke(main, ["validate", str(tmp_path), "--json"])
    assert result.exit_code == 2, result.output
    files = {Path(f["path"]).relative_to(tmp_path).as_posix(): f for f in json.loads(result.output)["files"]}
    assert files["other.yml"]["status"] == "ok" and files["arcades/part.yml"]["status"] == "ok"
    for name in ("blueprint.yml", "blueprint_bugged.yml"):
        message = files[name]["error"]["message"]
        assert files[name]["status"] == "invalid"
        assert "blueprint.yml" in message and "blueprint_bugged.yml" in message and "'sales'" in message


def test_compile_shows_provenance_for_macro_built_sql():
    result = invoke("compile", str(REPO / "blueprints" / "orders_daily.yml"), "--show", "provenance")
    assert result.exit_code == 0
    line = next(x for x in result.output.splitlines() if x.startswith("modules.clean_orders.config.query"))
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


# --------------------------------------------------------------------------- the error boundary

GOOD = 'aqueduct: "1.0"\nid: good\nname: g\nmodules:\n  - {id: raw, type: Ingress, config: {format: csv, path: x.csv}}\n'
BAD = 'aqueduct: "1.0"\nid: bad\nname: b\nmodules:\n  - id: a\n    type: Ingres\n'


def run_cli(*args: str, env: dict[str, str | None] | None = None):
    """Like a user's shell: stderr apart, exceptions left to the command's error boundary."""
    return CliRunner().invoke(main, list(args), env=env or {}, catch_exceptions=False)


def test_validate_a_folder_reports_every_file_recursively(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "sub" / "bad.yaml").write_text(BAD)
    (tmp_path / "sub" / "also_bad.yml").write_text("a: &a [*a]\nmodules: []\n")
    (tmp_path / "orders.aqtest.yml").write_text("tests: []\n")
    (tmp_path / "ci.yml").write_text("on: push\njobs: {}\n")
    (tmp_path / "aqueduct.yml").write_text("agent: {}\n")
    result = run_cli("validate", str(tmp_path))
    assert result.exit_code == 2
    assert f"ok    {tmp_path / 'good.yml'}  (good: 1 modules)" in result.output
    assert f"{tmp_path / 'sub' / 'bad.yaml'}:6" in result.output and "Ingress" in result.output
    assert f"{tmp_path / 'sub' / 'also_bad.yml'}:1:8: recursive alias" in result.output
    assert f"skip  {tmp_path / 'ci.yml'}" in result.output
    assert f"skip  {tmp_path / 'aqueduct.yml'}" in result.output
    assert "aqtest" not in result.output
    assert "1 ok, 2 invalid, 2 skipped" in result.output
    assert "Traceback" not in result.output


def test_validate_json_lists_every_file(tmp_path):
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "bad.yml").write_text(BAD)
    result = run_cli("validate", "--json", str(tmp_path / "good.yml"), str(tmp_path / "bad.yml"),
                     str(tmp_path / "missing.yml"))  # fmt: skip
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    assert [f["status"] for f in payload["files"]] == ["ok", "invalid", "invalid"]
    assert payload["files"][1]["error"]["location"].endswith("bad.yml:6:11")
    assert "no such file or folder" in payload["files"][2]["error"]["message"]


def test_validate_and_compile_agree_on_a_context_nested_400_deep(tmp_path):
    path = tmp_path / "deep.yml"
    path.write_text(GOOD + "context:\n  x: " + "{a: " * 400 + "1" + "}" * 400 + "\n")
    for command in ("validate", "compile"):
        result = run_cli(command, str(path))
        assert result.exit_code == 2, (command, result.output)
        assert f"{path}:7:" in result.output and "nesting depth limit of 64 levels" in result.output


def test_an_internal_error_is_one_line_and_exit_4(tmp_path, monkeypatch):
    import aqueduct_dagster.cli.manifest as compile_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(compile_module, "compile_blueprint", broken)
    result = run_cli("compile", str(tmp_path / "x.yml"))
    assert result.exit_code == 4
    assert "error: internal error: ZeroDivisionError: a bug" in result.output
    assert "Traceback" not in result.output


def test_a_missing_blueprint_file_is_bad_input(tmp_path):
    result = run_cli("compile", str(tmp_path / "nope.yml"))
    assert result.exit_code == 2 and "Blueprint file not found" in result.output


# --------------------------------------------------------------------------- environment


def test_heal_without_dagster_home_explains_how_to_set_it():
    result = run_cli("heal", "--latest-failure", "job", env={"DAGSTER_HOME": None})
    assert result.exit_code == 3
    assert "DAGSTER_HOME is not set" in result.output and "export DAGSTER_HOME=" in result.output
    assert "Traceback" not in result.output


def test_runs_without_dagster_home_falls_back_to_the_store(tmp_path):
    from aqueduct_dagster.stores import DuckDBStore

    DuckDBStore(tmp_path / "s" / "aqueduct.duckdb").record_module_metric(
        run_id="r1", blueprint_id="bp", module_id="raw", module_type="Ingress", status="success", duration_ms=5)
    env = {"AQUEDUCT_STATE_DIR": str(tmp_path / "s"), "DAGSTER_HOME": None}
    result = run_cli("runs", env=env)
    assert result.exit_code == 0, result.output
    assert "r1  bp  unknown" in result.stdout and "DAGSTER_HOME is not set" in result.stderr
    payload = json.loads(run_cli("runs", "--json", env=env).stdout)
    assert payload["runs"][0]["run_id"] == "r1" and payload["runs"][0]["modules"][0]["module_id"] == "raw"


def test_heal_of_a_run_with_nothing_to_heal_says_why(tmp_path):
    import dagster as dg

    from aqueduct_dagster.dagster.tags import BLUEPRINT_PATH_TAG

    home = tmp_path / "home"
    home.mkdir()
    blueprint = tmp_path / "good.yml"
    blueprint.write_text(GOOD)

    @dg.op
    def boom() -> None:
        raise RuntimeError("not an aqueduct failure")

    @dg.job
    def plain() -> None:
        boom()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = plain.execute_in_process(instance=instance, raise_on_error=False,
                                       tags={BLUEPRINT_PATH_TAG: str(blueprint)})  # fmt: skip
    env = {"DAGSTER_HOME": str(home), "AQUEDUCT_STATE_DIR": str(tmp_path / "s"),
           "AQUEDUCT_PATCHES_DIR": str(tmp_path / "p")}  # fmt: skip
    result = run_cli("heal", "--run-id", run.run_id, env=env)
    assert result.exit_code == 0, result.output
    assert f"heal of run {run.run_id}: skipped: no healable failure in the run" in result.output
    payload = json.loads(run_cli("heal", "--run-id", run.run_id, "--json", env=env).stdout)
    assert payload["status"] == "skipped" and payload["run_id"] == run.run_id
    missing = run_cli("heal", "--run-id", "no-such-run", env=env)
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.output


# --------------------------------------------------------------------------- configuration


def test_a_typo_in_aqueduct_yml_is_bad_input_with_did_you_mean(tmp_path):
    config = tmp_path / "aqueduct.yml"
    config.write_text("state_dir: .aq\nagnet:\n  provider: openai\n")
    env = {"AQUEDUCT_CONFIG": str(config), "AQUEDUCT_PATCHES_DIR": str(tmp_path / "p")}
    for args in (["patch", "list"], ["patch", "show", "x"], ["runs"]):
        result = run_cli(*args, env=env)
        assert result.exit_code == 2, (args, result.output)
        assert f"{config}:2:1: unknown key 'agnet' (did you mean 'agent'?)" in result.output
        assert "Traceback" not in result.output


def test_the_peer_engine_config_is_accepted_whole(tmp_path):
    from tests.support.shared import shared_reference

    template = shared_reference("aqueduct-core-2.3.0", "aqueduct.yml.template")
    env = {"AQUEDUCT_CONFIG": str(template), "AQUEDUCT_PATCHES_DIR": str(tmp_path / "p"),
           "AQUEDUCT_STATE_DIR": str(tmp_path / "s")}  # fmt: skip
    result = run_cli("patch", "list", "--json", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"status": "pending", "patches": []}


# --------------------------------------------------------------------------- asking for what is not there


def test_lineage_of_an_unknown_column_says_so(tmp_path):
    path = tmp_path / "l.yml"
    path.write_text(
        'aqueduct: "1.0"\nid: l\nname: l\nmodules:\n'
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv, schema_hint: {order_id: int}}}\n"
        "  - {id: a, type: Channel, config: {op: sql, query: 'SELECT order_id AS id FROM raw'}}\n"
    )
    result = run_cli("lineage", str(path), "--column", "a.idd")
    assert result.exit_code == 2
    assert "no column lineage for 'a.idd'" in result.output and "did you mean 'a.id'" in result.output
    payload = json.loads(run_cli("lineage", str(path), "--json").stdout)
    assert payload["columns"] == [{"column": "a.id", "direct": ["raw.order_id"], "origin": ["raw.order_id"]}]


def test_depot_of_an_unknown_blueprint_says_so(tmp_path):
    (tmp_path / "bp").mkdir()
    (tmp_path / "bp" / "good.yml").write_text(GOOD)
    env = {"AQUEDUCT_STATE_DIR": str(tmp_path / "s"), "AQUEDUCT_BLUEPRINTS_DIR": str(tmp_path / "bp"),
           "DAGSTER_HOME": None}  # fmt: skip
    unknown = run_cli("depot", "goood", env=env)
    assert unknown.exit_code == 2
    assert "no Blueprint 'goood'" in unknown.output and "did you mean 'good'" in unknown.output
    known = run_cli("depot", "good", env=env)
    assert known.exit_code == 0 and "the Depot of 'good' is empty" in known.output
