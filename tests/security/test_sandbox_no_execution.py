"""Patch SQL that would run a process or call Java never executes, through the real gates.

The control test runs the same hostile manifest straight on Spark (no gates) and sees the
marker file appear: the attack is real, so its absence after the gates means something.
"""

from __future__ import annotations

import dataclasses

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    EffectGate,
    FullRunGate,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
    run_on_spark,
)
from aqueduct_dagster.healing.patch import PatchSpec

pytestmark = pytest.mark.spark

SECRET = "Zq7-sandbox-secret-93841"

BLUEPRINT = """\
aqueduct: "1.0"
id: sbx
name: Sandbox
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}/in.csv", header: true, options: {{inferSchema: "true"}}}}
  - id: clean
    type: Channel
    config:
      op: sql
      query: SELECT id, amount FROM raw
  - id: out
    type: Egress
    config: {{format: parquet, path: "{data}/out", mode: overwrite}}
edges:
  - {{from: raw, to: clean}}
  - {{from: clean, to: out}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.csv").write_text("id,amount\n1,10\n2,20\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AQ_SANDBOX_TEST_SECRET", SECRET)
    blueprint = tmp_path / "sbx.yml"
    blueprint.write_text(BLUEPRINT.format(data=data))
    return tmp_path, blueprint


def candidate(project, query: str) -> Candidate:
    _, blueprint = project
    patch = PatchSpec(rationale="t", confidence=0.9, operations=[
        {"op": "set_module_config_key", "module_id": "clean", "key": "query", "value": query}])  # fmt: skip
    return Candidate(patch, None, blueprint.read_text(), Agent(approval="auto"), blueprint_path=blueprint)


def all_gates(spark):
    return [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate(),
            SandboxGate(lambda: run_session(spark), sample_rows=10)]  # fmt: skip


def transform_query(marker) -> str:
    return f"SELECT TRANSFORM(id, amount) USING 'sh -c \"touch {marker}\"' AS (id, amount) FROM raw"


REFLECTION_QUERIES = [
    "SELECT id, java_method('java.lang.System', 'getenv', 'AQ_SANDBOX_TEST_SECRET') AS amount FROM raw",
    "SELECT id, CAST(reflect('java.lang.System', 'getenv', 'AQ_SANDBOX_TEST_SECRET') AS INT) AS amount FROM raw",
    "SELECT id, amount FROM raw WHERE assert_true(try_reflect('java.lang.System', 'getenv', "
    "'AQ_SANDBOX_TEST_SECRET') = 'x') IS NULL",
]


@pytest.mark.classic_only("the control runs the script on the test's own driver")
def test_control_the_transform_really_runs_without_the_gates(spark, project):
    tmp_path, _ = project
    marker = tmp_path / "CONTROL_MARKER"
    verdict, c = CompileGate().run(candidate(project, transform_query(marker)))
    assert verdict.passed
    try:
        run_on_spark(run_session(spark), c.manifest, sample_rows=None, scratch=tmp_path / "scratch")
    except Exception:  # noqa: BLE001 - only whether the process ran matters
        pass
    assert marker.exists(), "the attack does not work here: the tests below would prove nothing"


def test_transform_is_rejected_before_the_sandbox_and_never_runs(spark, project):
    tmp_path, _ = project
    marker = tmp_path / "MARKER"
    results = run_gates(candidate(project, transform_query(marker)), all_gates(spark)).results
    assert [r.gate for r in results] == ["guardrails", "compile", "effect"]
    assert not results[-1].passed and "script transform" in results[-1].message
    assert not marker.exists()


def test_the_sandbox_refuses_a_manifest_the_effect_gate_did_not_pass(spark, project):
    tmp_path, _ = project
    marker = tmp_path / "MARKER"
    c = candidate(project, transform_query(marker))
    results = run_gates(c, [CompileGate(), SandboxGate(lambda: run_session(spark), sample_rows=10)]).results
    assert [r.gate for r in results] == ["compile", "sandbox"]
    assert not results[-1].passed and "not executed" in results[-1].message
    assert not marker.exists()


def test_the_sandbox_rechecks_sql_even_when_told_it_was_checked(spark, project):
    tmp_path, _ = project
    marker = tmp_path / "MARKER"
    verdict, c = CompileGate().run(candidate(project, transform_query(marker)))
    assert verdict.passed
    c = dataclasses.replace(c, effect_checked=c.manifest)  # a caller that lies (or a bug) cannot get it executed
    result = SandboxGate(lambda: run_session(spark), sample_rows=10).check(c)
    assert not result.passed and "script transform" in result.message
    assert not marker.exists()


@pytest.mark.parametrize("query", REFLECTION_QUERIES, ids=["java_method", "reflect-cast", "try_reflect"])
def test_reflection_never_runs_and_the_secret_is_in_no_message(spark, project, query):
    c = candidate(project, query)
    results = run_gates(c, all_gates(spark)).results
    assert not results[-1].passed and results[-1].gate == "effect", results
    assert any(name in results[-1].message for name in ("reflect()", "java_method()", "assert_true()"))
    assert all(SECRET not in r.message for r in results)
    # and the sandbox on its own refuses too, before Spark sees the query
    verdict, lone = CompileGate().run(candidate(project, query))
    assert verdict.passed
    result = SandboxGate(lambda: run_session(spark), sample_rows=10).check(lone)
    assert not result.passed and SECRET not in result.message


def test_a_good_patch_still_passes_the_sandbox_and_writes_only_scratch(spark, project):
    tmp_path, _ = project
    results = run_gates(candidate(project, "SELECT id, amount * 2 AS amount FROM raw"), all_gates(spark)).results
    assert [r.gate for r in results] == ["guardrails", "compile", "effect", "lineage", "sandbox"]
    assert all(r.passed for r in results), results
    assert not (tmp_path / "data" / "out").exists()


def test_sandbox_writes_no_catalog_table_and_no_outside_checkpoint(spark, project):
    tmp_path, blueprint = project
    # The Blueprint itself registers a table and names a checkpoint location: trusted, but
    # the sandbox replays it with every location pointed into its scratch folder.
    text = blueprint.read_text().replace(
        'config: {format: parquet, path: "' + str(tmp_path / "data") + '/out", mode: overwrite}',
        'config: {format: parquet, path: "' + str(tmp_path / "data") + '/out", mode: overwrite, '
        'register_as_table: sbx_registered_out, options: {checkpointLocation: "' + str(tmp_path / "ckpt") + '"}}',
    )
    assert "sbx_registered_out" in text
    blueprint.write_text(text)
    manifest = compile_text(text, source_path=str(blueprint))
    c = dataclasses.replace(candidate(project, "SELECT id, amount + 1 AS amount FROM raw"), blueprint_text=text)
    results = run_gates(c, all_gates(spark)).results
    assert all(r.passed for r in results), results
    assert manifest.modules["out"].spec.config.register_as_table == "sbx_registered_out"
    session = run_session(spark)
    assert not session.catalog.tableExists("sbx_registered_out")
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "data" / "out").exists()


def test_the_full_run_refuses_an_unchecked_manifest_before_starting_spark(spark, project):
    tmp_path, _ = project
    marker = tmp_path / "MARKER"
    started = []
    c = candidate(project, transform_query(marker))
    results = run_gates(c, [CompileGate(), FullRunGate(lambda: started.append(1) or run_session(spark))]).results
    assert not results[-1].passed and "script transform" in results[-1].message
    assert not started and not marker.exists()


def test_a_sandbox_failure_on_a_data_value_names_the_module_but_not_the_value(spark, project):
    """ANSI CAST of a data value fails in the replay: the rejection that goes back to the
    diagnoser and into the store keeps the module and the condition, never the value."""
    tmp_path, _ = project
    (tmp_path / "data" / "in.csv").write_text("id,amount\n1,10\n2,QX-77341-ZZ\n")
    c = candidate(project, "SELECT id, CAST(amount AS INT) AS amount FROM raw")
    spark.conf.set("spark.sql.ansi.enabled", "true")
    results = run_gates(c, all_gates(spark)).results

    rejected = results[-1]
    assert rejected.gate == "sandbox" and not rejected.passed, results
    assert "QX-77341-ZZ" not in rejected.message
    # The value surfaces lazily at the Egress (blaming the Channel is issue 12's work).
    assert "CAST_INVALID_INPUT" in rejected.message and "module 'out'" in rejected.message
