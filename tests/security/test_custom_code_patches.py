"""A patch never adds or changes a reference to the author's Python code.

Custom Assert rules (`fn:`) and custom Ingress data sources (`class:`) run a function or a
class from the Blueprint's folder, like a UDF: code the Blueprint's author chose. A patch
that points one at other code (even code already in that folder), by any route (the rule
itself, a new module, a macro, a context value), is refused by the effect gate and never
executes. The control test runs such a patched manifest without the gates and sees the
marker appear: the attack is real, so its absence after the gates means something.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.config import AqueductConfig
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.healing.gates import (
    Candidate,
    CompileGate,
    EffectGate,
    GuardrailsGate,
    LineageGate,
    SandboxGate,
    run_gates,
    run_on_spark,
)
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.preview import static_verdict

BLUEPRINT = """\
aqueduct: "1.0"
id: custom_code
name: Custom code
context:
  reader: readers_sec.Countdown
macros:
  checker: "quality_sec.has_rows"
modules:
  - id: raw
    type: Ingress
    config: {format: csv, path: "data/in.csv", header: true, options: {inferSchema: "true"}}
  - id: gen
    type: Ingress
    config: {format: custom, class: "${ctx.reader}", options: {start: 3}}
  - id: joined
    type: Channel
    config:
      op: sql
      query: SELECT raw.id, raw.amount FROM raw JOIN gen ON raw.id = gen.n
  - id: check
    type: Assert
    config:
      rules:
        - {type: sql_row, expr: "amount > 0", on_fail: abort}
        - {type: custom, fn: "{{ macros.checker }}", on_fail: abort}
  - id: out
    type: Egress
    config: {format: parquet, path: data/out, mode: overwrite}
edges:
  - {from: raw, to: joined}
  - {from: gen, to: joined}
  - {from: joined, to: check}
  - {from: check, to: out}
"""

#: The author's quality module: `has_rows` is the rule; `wipe` is code of the same folder the
#: Blueprint never runs as a rule (it leaves a marker where it would do harm).
QUALITY = """
from pathlib import Path


def has_rows(df):
    return {"passed": df.count() > 0}


def wipe(df):
    Path(__file__).with_name("MARKER").write_text("ran")
    return {"passed": True}
"""

READERS = """
from pathlib import Path

from pyspark.sql.datasource import DataSource, DataSourceReader


class Countdown(DataSource):
    @classmethod
    def name(cls):
        return "countdown_sec"

    def schema(self):
        return "n INT"

    def reader(self, schema):
        return CountdownReader(self.options)


class CountdownReader(DataSourceReader):
    def __init__(self, options):
        self.start = int(options.get("start", 3))

    def read(self, partition):
        for n in range(self.start, 0, -1):
            yield (n,)


class Exfiltrate(Countdown):
    def reader(self, schema):
        Path(__file__).with_name("MARKER").write_text("ran")
        return CountdownReader(self.options)
"""

RULES = [{"type": "sql_row", "expr": "amount > 0", "on_fail": "abort"}]


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,amount\n1,10\n2,20\n3,5\n")
    (tmp_path / "quality_sec.py").write_text(QUALITY)
    (tmp_path / "readers_sec.py").write_text(READERS)
    blueprint = tmp_path / "bp.yml"
    # Absolute: the suite's Spark driver resolves relative paths against its own folder.
    blueprint.write_text(BLUEPRINT.replace("data/", f"{tmp_path}/data/"))
    monkeypatch.chdir(tmp_path)
    return blueprint


def patch_of(*operations) -> PatchSpec:
    return PatchSpec(rationale="test", confidence=0.9, operations=list(operations))


def verdict(blueprint: Path, *operations):
    return static_verdict(patch_of(*operations), blueprint, config=AqueductConfig())


def refused(results) -> str:
    last = results[-1]
    assert (last.gate, last.passed) == ("effect", False), results
    assert "loads new code" in last.message and "a person must" in last.message
    return last.message


def set_key(module_id: str, key: str, value) -> dict:
    return {"op": "set_module_config_key", "module_id": module_id, "key": key, "value": value}


def custom_rule(fn: str) -> dict:
    return {"type": "custom", "fn": fn, "on_fail": "abort"}


# --------------------------------------------------------------------------- custom Assert rules


def test_a_patch_may_not_add_a_custom_rule(project):
    rules = [*RULES, custom_rule("quality_sec.has_rows"), custom_rule("quality_sec.wipe")]
    message = refused(verdict(project, set_key("check", "rules", rules)))
    assert "module 'check' rules[2].fn" in message and "assert fn quality_sec.wipe" in message


def test_a_patch_may_not_repoint_a_custom_rule(project):
    message = refused(verdict(project, set_key("check", "rules", [*RULES, custom_rule("quality_sec.wipe")])))
    assert "assert fn quality_sec.wipe" in message
    # ...nor through the macro the rule is written with.
    macro = {"op": "replace_macro", "name": "checker", "value": "quality_sec.wipe"}
    assert "assert fn quality_sec.wipe" in refused(verdict(project, macro))


@pytest.mark.parametrize("fn", ["quality_sec.wipe", "quality_sec.has_rows"])
def test_a_patch_may_not_insert_an_assert_with_a_custom_rule(project, fn):
    """Not even with the Blueprint's own function: it would run on another frame."""
    insert = {
        "op": "insert_module",
        "module": {"id": "extra", "type": "Assert", "config": {"rules": [custom_rule(fn)]}},
        "edges_to_add": [{"from": "raw", "to": "extra"}],
    }
    assert f"assert fn {fn} in module 'extra'" in refused(verdict(project, insert))


def test_a_patch_that_keeps_the_custom_rule_as_written_passes(project):
    rules = [{"type": "sql_row", "expr": "amount >= 0", "on_fail": "abort"}, custom_rule("quality_sec.has_rows")]
    results = verdict(project, set_key("check", "rules", rules))
    assert all(r.passed for r in results), results


# --------------------------------------------------------------------------- custom Ingress sources


def test_a_patch_may_not_change_or_add_a_custom_data_source(project):
    message = refused(verdict(project, set_key("gen", "class", "readers_sec.Exfiltrate")))
    assert "class readers_sec.Exfiltrate" in message
    context = {"op": "replace_context_value", "key": "reader", "value": "readers_sec.Exfiltrate"}
    assert "class readers_sec.Exfiltrate" in refused(verdict(project, context))
    # An Ingress turned into a custom one is new code, even with the Blueprint's own class
    # and the same options (nothing new is read).
    turned = {"op": "replace_module_config", "module_id": "raw",
              "config": {"format": "custom", "class": "readers_sec.Countdown", "options": {"start": 3}}}  # fmt: skip
    assert "class readers_sec.Countdown in module 'raw'" in refused(verdict(project, turned))


# --------------------------------------------------------------------------- through the real gates


def candidate(blueprint: Path, *operations) -> Candidate:
    return Candidate(patch_of(*operations), None, blueprint.read_text(), Agent(approval="auto"),
                     blueprint_path=blueprint)  # fmt: skip


def all_gates(spark):
    return [GuardrailsGate(), CompileGate(), EffectGate(), LineageGate(),
            SandboxGate(lambda: run_session(spark), sample_rows=10)]  # fmt: skip


REPOINTED_RULE = set_key("check", "rules", [*RULES, custom_rule("quality_sec.wipe")])
REPOINTED_SOURCE = set_key("gen", "class", "readers_sec.Exfiltrate")


@pytest.mark.spark
@pytest.mark.classic_only("the control runs the author's code on the test's own driver")
@pytest.mark.parametrize("operation", [REPOINTED_RULE, REPOINTED_SOURCE], ids=["rule", "source"])
def test_control_the_repointed_code_really_runs_without_the_gates(spark, project, operation):
    verdict_, patched = CompileGate().run(candidate(project, operation))
    assert verdict_.passed
    run_on_spark(run_session(spark), patched.manifest, sample_rows=None, scratch=project.parent / "scratch")
    assert (project.parent / "MARKER").exists(), "the attack does not work here: the test below proves nothing"


@pytest.mark.spark
@pytest.mark.parametrize("operation", [REPOINTED_RULE, REPOINTED_SOURCE], ids=["rule", "source"])
def test_repointed_code_is_refused_before_the_sandbox_and_never_runs(spark, project, operation):
    results = run_gates(candidate(project, operation), all_gates(spark)).results
    assert [r.gate for r in results] == ["guardrails", "compile", "effect"]
    refused(results)
    assert not (project.parent / "MARKER").exists()


@pytest.mark.spark
def test_the_authors_custom_code_runs_in_the_sandbox_for_a_good_patch(spark, project):
    """The Blueprint's own rule and data source are trusted: the sandbox replays them."""
    operation = set_key("check", "rules", [{"type": "sql_row", "expr": "amount >= 0", "on_fail": "abort"},
                                           custom_rule("quality_sec.has_rows")])  # fmt: skip
    results = run_gates(candidate(project, operation), all_gates(spark)).results
    assert [r.gate for r in results] == ["guardrails", "compile", "effect", "lineage", "sandbox"]
    assert all(r.passed for r in results), results
    manifest = compile_text(project.read_text(), source_path=str(project))
    assert manifest.modules["check"].config.rules[1].fn == "quality_sec.has_rows"
    assert not (project.parent / "MARKER").exists()
