"""Each gate's rejection, with the Spark gates on the real session."""

from __future__ import annotations

import dataclasses

import pyarrow  # noqa: F401  (before deltalake)
import pytest
from deltalake import DeltaTable

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.healing.failure import build_failure_package
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    ContractGate,
    EffectGate,
    FullRunGate,
    Gate,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
    run_on_spark,
)
from aqueduct_dagster.healing.patch import PatchSpec

BLUEPRINT = """\
aqueduct: "1.0"
id: gates
name: Gates
agent: {{approval: auto}}
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}/in.csv", header: true, options: {{inferSchema: "true"}}}}
  - id: clean
    type: Channel
    config:
      op: sql
      query: SELECT id, amount FROM raw
  - id: check
    type: Assert
    config:
      rules: [{{type: sql, expr: "MIN(amount) > 0"}}]
  - id: out
    type: Egress
    config: {{format: delta, path: "{data}/out", mode: overwrite}}
edges:
  - {{from: raw, to: clean}}
  - {{from: clean, to: check}}
  - {{from: check, to: out}}
"""


@pytest.fixture
def setup(tmp_path):
    (tmp_path / "in.csv").write_text("id,amount,qty\n1,10.5,1\n2,20.0,0\n3,7.25,2\n")
    text = BLUEPRINT.format(data=tmp_path)
    manifest = compile_text(text, source_path=str(tmp_path / "gates.yml"))
    package = build_failure_package(
        manifest=manifest, blueprint_text=text, failure=FailureRecord(module_id="clean", error={"condition": "SOMETHING", "message": "x"},
                              input_schemas={"raw": [["id", "int"], ["amount", "double"], ["qty", "int"]]}),
    )  # fmt: skip
    return text, package, tmp_path


def candidate(setup, *operations, confidence=0.9):
    text, package, _ = setup
    patch = PatchSpec(rationale="t", confidence=confidence, operations=list(operations))
    return Candidate(patch, package, text, Agent(approval="auto"))


def query(value: str) -> dict:
    return {"op": "set_module_config_key", "module_id": "clean", "key": "query", "value": value}


def test_guardrails_reject_a_disallowed_engine_key(setup):
    c = candidate(setup, {"op": "set_engine_config", "engine": "spark", "key": "spark.jars", "value": "/tmp/evil.jar"})
    result = GuardrailsGate().check(c)
    assert not result.passed and "'spark.jars' is not on the allowlist" in result.message


def test_compile_gate_rejects_a_patch_that_breaks_the_graph(setup):
    c = candidate(setup, {"op": "replace_edge", "from_id": "raw", "to_id": "clean", "new_from_id": "nowhere"})
    result = CompileGate().check(c)
    assert not result.passed and "does not compile" in result.message and "nowhere" in result.message


def test_lineage_gate_rejects_unknown_columns(setup):
    c = candidate(setup, query("SELECT id, amount, discount FROM raw"))
    results = run_gates(c, [CompileGate(), LineageGate()]).results
    assert [r.passed for r in results] == [True, False]
    assert "reads discount, which no input provides" in results[1].message


def test_a_gate_that_cannot_judge_a_patch_rejects_it_and_later_gates_do_not_run(setup):
    class Exploding(LineageGate):
        def check(self, candidate):
            raise RecursionError("maximum recursion depth exceeded")

    ran = []

    class Recording(Gate):
        name = "after"

        def check(self, candidate):
            ran.append(candidate)
            return self.ok()

    gates = [CompileGate(), Exploding(), Recording()]
    results = run_gates(candidate(setup, query("SELECT id, amount FROM raw")), gates).results
    assert [r.passed for r in results] == [True, False]
    assert results[1].gate == "lineage" and "could not judge the patch: RecursionError" in results[1].message
    assert ran == []


def test_a_rule_too_deep_to_parse_is_rejected_instead_of_raising(setup):
    deep = "(" * 3000 + "amount > 0" + ")" * 3000
    c = candidate(setup, {"op": "set_module_config_key", "module_id": "check", "key": "rules",
                          "value": [{"type": "sql", "expr": deep}]})  # fmt: skip
    results = run_gates(c, [GuardrailsGate(), CompileGate(), EffectGate()]).results
    assert [r.gate for r in results] == ["guardrails", "compile", "effect"]
    assert not results[-1].passed and "too deeply nested / too large" in results[-1].message


def test_gates_hand_on_a_new_candidate_and_never_change_the_one_they_judged(setup):
    c = candidate(setup, query("SELECT id, amount * 2 AS amount FROM raw"))
    gated = run_gates(c, [CompileGate(), EffectGate(), LineageGate()])
    assert all(r.passed for r in gated.results), gated.results
    assert c.manifest is None and c.patched_text is None and c.effect_checked is None
    produced = gated.candidate
    assert "amount * 2" in produced.patched_text and produced.target.is_root
    assert produced.effect_checked is produced.manifest and produced.base_manifest is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        produced.effect_checked = None


def test_a_gate_that_needs_the_compiled_patch_rejects_clearly_before_the_compile_gate(setup):
    c = candidate(setup, query("SELECT id, amount FROM raw"))
    for gate in (EffectGate(), LineageGate(), FullRunGate(lambda: None)):
        [result] = run_gates(c, [gate]).results
        assert not result.passed
        assert (f"the {gate.name} gate could not judge the patch: GateOrderError: the {gate.name} gate judges "
                "the compiled patch, and the compile gate has not passed this candidate") in result.message  # fmt: skip


def with_contract(setup, rows_written: int) -> Candidate:
    """A good patch, judged against a last good run that published `rows_written` rows."""
    text, package, _ = setup
    contract = {"columns": [{"name": "id", "type": "int"}, {"name": "amount", "type": "double"}],
                "rows_written": rows_written}  # fmt: skip
    c = candidate(setup, query("SELECT id, amount * 2 AS amount FROM raw"))
    return dataclasses.replace(c, package=package.model_copy(update={"contracts": {"out": contract}}))


def test_the_sandbox_says_whether_its_sample_was_the_whole_input(spark, setup):
    # in.csv holds 3 rows: a sample of 10 reads them all, a sample of 2 does not.
    gates = [CompileGate(), EffectGate(), SandboxGate(lambda: run_session(spark), sample_rows=10)]
    whole = run_gates(with_contract(setup, rows_written=3), gates)
    assert all(r.passed for r in whole.results), whole.results
    assert whole.candidate.sandbox_whole_input is True
    assert whole.candidate.sandbox_outputs["out"].rows == 3
    gates[-1] = SandboxGate(lambda: run_session(spark), sample_rows=2)
    part = run_gates(with_contract(setup, rows_written=3), gates)
    assert all(r.passed for r in part.results), part.results
    assert part.candidate.sandbox_whole_input is False
    assert part.candidate.sandbox_outputs["out"].rows == 2


def test_the_contract_counts_rows_only_when_the_sandbox_read_the_whole_input(spark, setup):
    # The last good run published 20 rows; the patched pipeline publishes 3 of 3 input rows.
    def gates(sample_rows):
        return [CompileGate(), EffectGate(), SandboxGate(lambda: run_session(spark), sample_rows=sample_rows),
                ContractGate()]  # fmt: skip

    whole = run_gates(with_contract(setup, rows_written=20), gates(10)).results
    assert [r.gate for r in whole] == ["compile", "effect", "sandbox", "contract"] and not whole[-1].passed
    assert "'out': 3 rows against 20 in the last good run" in whole[-1].message
    sampled = run_gates(with_contract(setup, rows_written=20), gates(2)).results
    assert sampled[-1].gate == "contract" and sampled[-1].passed, sampled[-1].message


def test_sandbox_rejects_a_runtime_failure_and_leaves_the_session_usable(spark, setup):
    # Division by zero only fails when rows flow: analysis passes, the sampled replay does not.
    c = candidate(setup, query("SELECT id, amount / qty AS amount FROM raw"))
    session = run_session(spark)
    gates = [CompileGate(), EffectGate(), LineageGate(), SandboxGate(lambda: session, sample_rows=10)]
    results = run_gates(c, gates).results
    assert [r.gate for r in results] == ["compile", "effect", "lineage", "sandbox"]
    assert not results[-1].passed and "DIVIDE_BY_ZERO" in results[-1].message
    assert session.range(3).count() == 3
    assert not (setup[2] / "out").exists()  # the sandbox never wrote the real output


def test_sandbox_passes_a_good_patch_without_touching_real_outputs(spark, setup):
    c = candidate(setup, query("SELECT id, amount * 2 AS amount FROM raw"))
    results = run_gates(c, [CompileGate(), SandboxGate(lambda: run_session(spark), sample_rows=2)]).results
    assert all(r.passed for r in results), results
    assert not (setup[2] / "out").exists()


def test_full_run_publishes_only_when_everything_succeeds(spark, setup):
    out = setup[2] / "out"
    failing = candidate(setup, query("SELECT id, amount - 100 AS amount FROM raw"))  # the Assert fails
    results = run_gates(failing, [CompileGate(), FullRunGate(lambda: run_session(spark))]).results
    assert not results[-1].passed and "nothing was published" in results[-1].message
    assert "module 'check': Assert failed: sql (abort): `MIN(amount) > 0` is False" in results[-1].message
    assert not out.exists()
    good = candidate(setup, query("SELECT id, amount + 1 AS amount FROM raw"))
    results = run_gates(good, [CompileGate(), FullRunGate(lambda: run_session(spark))]).results
    assert results[-1].passed, results[-1].message
    table = DeltaTable(str(out)).to_pyarrow_table()
    assert sorted(table.column("amount").to_pylist()) == [8.25, 11.5, 21.0]


def test_sandbox_follows_ports_and_quarantine(spark, tmp_path):
    (tmp_path / "in.csv").write_text("id,region,amount\n1,EU,10\n2,US,-1\n3,EU,4\n")
    text = f"""\
aqueduct: "1.0"
id: ports
name: Ports
modules:
  - {{id: raw, type: Ingress, config: {{format: csv, path: "{tmp_path}/in.csv", header: true, options: {{inferSchema: "true"}}}}}}
  - id: split
    type: Junction
    config: {{mode: conditional, branches: [{{id: eu, condition: "region = 'EU'"}}, {{id: other, condition: _else_}}]}}
  - id: q
    type: Assert
    config: {{rules: [{{type: sql_row, expr: "amount > 0", on_fail: quarantine}}]}}
  - {{id: out, type: Egress, config: {{format: parquet, path: "{tmp_path}/out", mode: overwrite}}}}
  - {{id: bad, type: Egress, config: {{format: parquet, path: "{tmp_path}/bad", mode: overwrite}}}}
edges:
  - {{from: raw, to: split}}
  - {{from: split, to: q, port: other}}
  - {{from: q, to: out}}
  - {{from: q, to: bad, port: spillway}}
"""
    manifest = compile_text(text, source_path=str(tmp_path / "p.yml"))
    session = run_session(spark)
    run = run_on_spark(session, manifest, sample_rows=None, scratch=tmp_path / "scratch")
    written = {real.id: target.spec.config.path for real, target in run.written}
    assert set(written) == {"out", "bad"} and run.result.assertions["q"].quarantined == 1
    assert written["out"] == str(tmp_path / "scratch" / "out")
    assert session.read.parquet(written["out"]).count() == 0  # US row -1 was quarantined
    assert [r.id for r in session.read.parquet(written["bad"]).collect()] == [2]
