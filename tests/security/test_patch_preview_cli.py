"""`aqueduct patch preview`: every gate's verdict, exit 0 / 1 (a gate rejects) / 2 (bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main

# Absolute paths: a classic Spark driver resolves relative ones against the folder its JVM
# started in, which a test's chdir does not move.
BLUEPRINT = """\
aqueduct: "1.0"
id: pv
name: Preview
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{root}/data/in.csv", header: true, options: {{inferSchema: "true"}}}}
  - id: clean
    type: Channel
    config:
      op: sql
      query: SELECT id, amount FROM raw
  - id: out
    type: Egress
    config: {{format: parquet, path: "{root}/out/clean", mode: overwrite}}
edges:
  - {{from: raw, to: clean}}
  - {{from: clean, to: out}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,amount,qty\n1,10,1\n2,20,0\n")
    (tmp_path / "pv.yml").write_text(BLUEPRINT.format(root=tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AQUEDUCT_CONFIG", raising=False)
    return tmp_path


def patch_file(project: Path, *operations, name: str = "patch.json", **top) -> Path:
    body = {"patch_id": "preview-test", "rationale": "test", "confidence": 0.9,
            "operations": list(operations), **top}  # fmt: skip
    path = project / name
    path.write_text(json.dumps(body))
    return path


def query(text: str) -> dict:
    return {"op": "set_module_config_key", "module_id": "clean", "key": "query", "value": text}


def preview(*args: str):
    return CliRunner().invoke(main, ["patch", "preview", *args])


def test_all_gates_pass(project):
    result = preview(str(patch_file(project, query("SELECT id, amount * 2 AS amount FROM raw"))), "--blueprint", "pv.yml")
    assert result.exit_code == 0, result.output
    for gate in ("guardrails", "compile", "effect", "lineage"):
        assert f"PASS    {gate}" in result.output
    # nothing staged, nothing applied
    assert "amount * 2" not in (project / "pv.yml").read_text() and not (project / "patches").exists()


def test_json_output(project):
    result = preview(str(patch_file(project, query("SELECT id FROM raw"))), "--blueprint", "pv.yml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True and [g["gate"] for g in report["gates"]] == ["guardrails", "compile", "effect", "lineage"]


@pytest.mark.parametrize(
    ("operation", "gate", "words"),
    [
        ({"op": "set_engine_config", "engine": "spark", "key": "spark.driver.extraJavaOptions", "value": "-Dx"},
         "guardrails", "not on the allowlist"),
        ({"op": "replace_edge", "from_id": "raw", "to_id": "clean", "new_from_id": "nowhere"},
         "compile", "nowhere"),
        ({"op": "set_module_config_key", "module_id": "raw", "key": "path", "value": "data/../../../../../../etc/passwd"},
         "effect", "/etc/passwd"),
        (query("SELECT TRANSFORM(id) USING 'sh -c \"touch MARKER\"' FROM raw"), "effect", "script transform"),
        ({"op": "set_module_config_key", "module_id": "out", "key": "table", "value": "prod.users"},
         "effect", "new table 'prod.users'"),
        ({"op": "replace_module_config", "module_id": "out", "config": {"table": "prod.users"}},
         "effect", "new table 'prod.users'"),
        ({"op": "set_engine_config", "engine": "spark", "key": "spark.driver.memory", "value": "100000g"},
         "effect", "outside 1..32g"),
    ],
    ids=["guardrails", "compile", "effect-path", "effect-sql", "effect-egress-table", "effect-table", "effect-conf"],
)
def test_each_gate_rejection_exits_1(project, operation, gate, words):
    result = preview(str(patch_file(project, operation)), "--blueprint", "pv.yml")
    assert result.exit_code == 1, result.output
    assert f"REJECT  {gate}:" in result.output and words in result.output
    assert not (project / "MARKER").exists()


@pytest.mark.spark
def test_sandbox_rejection_exits_1(spark, project):
    # Division by zero fails only when rows flow: every static gate passes, the sandbox does not.
    path = patch_file(project, query("SELECT id, amount / qty AS amount FROM raw"))
    result = preview(str(path), "--blueprint", "pv.yml", "--sandbox")
    assert result.exit_code == 1, result.output
    assert "PASS    effect" in result.output and "REJECT  sandbox:" in result.output
    assert "DIVIDE_BY_ZERO" in result.output
    assert not (project / "out").exists()


@pytest.mark.spark
def test_sandbox_pass_exits_0(spark, project):
    path = patch_file(project, query("SELECT id, amount + 1 AS amount FROM raw"))
    result = preview(str(path), "--blueprint", "pv.yml", "--sandbox")
    assert result.exit_code == 0, result.output
    assert "PASS    sandbox" in result.output and not (project / "out").exists()


def test_bad_input_exits_2(project):
    (project / "broken.json").write_text("{not json")
    result = preview("broken.json", "--blueprint", "pv.yml")
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = preview("missing.json", "--blueprint", "pv.yml")
    assert result.exit_code == 2 and "cannot read the patch file" in result.output
    no_rationale = project / "norationale.json"
    no_rationale.write_text(json.dumps({"patch_id": "x", "operations": [query("SELECT id FROM raw")]}))
    result = preview(str(no_rationale), "--blueprint", "pv.yml")
    assert result.exit_code == 2 and "field 'rationale'" in result.output
    result = preview(str(patch_file(project, {"op": "drop_everything"})), "--blueprint", "pv.yml")
    assert result.exit_code == 2 and "field 'operations.0'" in result.output
    result = preview(str(patch_file(project, {"op": "set_module_config_key", "module_id": "clean", "key": "q"})),
                     "--blueprint", "pv.yml")  # fmt: skip
    assert result.exit_code == 2 and "value" in result.output
    (project / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = preview("deep.json", "--blueprint", "pv.yml")
    assert result.exit_code == 2 and "nested too deeply" in result.output
    (project / "list.json").write_text("[]")
    assert preview("list.json", "--blueprint", "pv.yml").exit_code == 2
    result = preview(str(patch_file(project, query("SELECT id FROM raw"))), "--blueprint", "nope.yml")
    assert result.exit_code == 2 and "Blueprint file not found" in result.output


def test_peer_schema_ops_alias_and_extra_keys(project):
    body = {"patch_id": "peer-1", "rationale": "r", "ops": [query("SELECT id FROM raw")],
            "examples": ["kept in misc"], "root_cause": None, "category": "sql_column_not_found"}  # fmt: skip
    (project / "peer.json").write_text(json.dumps(body))
    result = preview("peer.json", "--blueprint", "pv.yml", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["patch_id"] == "peer-1"


def test_the_installed_command_exits_with_the_verdict(project):
    aqueduct = Path(sys.executable).parent / "aqueduct"
    path = patch_file(project, {"op": "replace_context_value", "key": "root", "value": "/etc"},
                      {"op": "set_module_config_key", "module_id": "raw", "key": "path", "value": "${ctx.root}/passwd"})  # fmt: skip
    done = subprocess.run([str(aqueduct), "patch", "preview", str(path), "--blueprint", "pv.yml"],
                          capture_output=True, text=True, cwd=project, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REJECT  effect:" in done.stdout and "/etc/passwd" in done.stdout
