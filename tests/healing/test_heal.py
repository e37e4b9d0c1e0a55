"""The heal loop end to end without Spark: package -> diagnosers -> gates -> approval mode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.config import AgentBudget, AgentConnection
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.agent import LLMDiagnoser
from aqueduct_dagster.healing.failure import build_failure_package
from aqueduct_dagster.healing.heal import Healer, HealError, HealSettings, PatchQueue, RuleDiagnoser
from aqueduct_dagster.stores import DuckDBStore
from tests.support.scripted_llm import scripted_llm

SECRET = "s3cr3t-db-password-123"
BLUEPRINT = """\
aqueduct: "1.0"
id: orders
name: Orders
# approval mode is set per test
agent:
  approval: {approval}
  allow_defer: true
context:
  data_dir: /data
macros:
  valid: "amount > 0"
modules:
  - id: raw_orders
    type: Ingress
    config:
      format: jdbc
      path: ${{ctx.data_dir}}/orders.csv
      options: {{url: "jdbc:postgresql://db/app", password: "@aq.secret('PG_PASSWORD')"}}
  - id: clean_orders   # the module that breaks
    type: Channel
    config:
      op: sql
      query: |
        SELECT order_id, amount
        FROM raw_orders
        WHERE {{{{ macros.valid }}}}
  - id: orders_out
    type: Egress
    config: {{format: delta, path: "${{ctx.data_dir}}/out", mode: overwrite}}
edges:
  - {{from: raw_orders, to: clean_orders}}
  - {{from: clean_orders, to: orders_out}}
"""

RENAMED = {
    "exception_class": "pyspark.errors.exceptions.captured.AnalysisException",
    "condition": "UNRESOLVED_COLUMN.WITH_SUGGESTION",
    "sqlstate": "42703",
    "message_parameters": {"objectName": "`amount`", "proposal": "`order_id`, `order_amount`"},
    "message": f"[UNRESOLVED_COLUMN.WITH_SUGGESTION] `amount` cannot be resolved. value 'ACME Corp' pw={SECRET}",
}
SCHEMAS = {"raw_orders": [["order_id", "int"], ["order_amount", "double"]]}


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PG_PASSWORD", SECRET)

    def make(approval="human", error=RENAMED, diagnosers=None):
        path = tmp_path / "orders.yml"
        path.write_text(BLUEPRINT.format(approval=approval))
        manifest = compile_text(path.read_text(), source_path=str(path))
        package = build_failure_package(
            manifest=manifest, blueprint_text=path.read_text(), failure=FailureRecord(module_id="clean_orders", error=error, input_schemas=SCHEMAS), run_id="run-1",
        )  # fmt: skip
        store = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")
        settings = HealSettings(
            store=store, patches_dir=tmp_path / "patches", revisions_dir=tmp_path / "state" / "revisions",
            diagnosers=diagnosers or [RuleDiagnoser()],
        )  # fmt: skip
        return path, manifest, package, settings

    return make


def test_human_mode_stages_a_rule_patch_then_approval_writes_a_revision(project):
    path, manifest, package, settings = project("human")
    outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "staged", outcome.message
    assert outcome.pending_path.parent.name == "pending" and outcome.pending_path.exists()
    assert "-  valid: \"amount > 0\"" in outcome.diff and "+  valid: \"order_amount > 0\"" in outcome.diff
    assert [r.gate for r in outcome.gate_results] == ["guardrails", "compile", "effect", "lineage"]
    before = path.read_text()
    queue = PatchQueue(settings.patches_dir, settings.revisions_dir, settings.store)
    revision = queue.apply(outcome.patch.patch_id)
    assert revision.number == 1 and path.read_text() != before
    assert 'valid: "order_amount > 0"' in path.read_text()
    assert "# the module that breaks" in path.read_text()  # comments survive
    assert (settings.patches_dir / "applied" / outcome.pending_path.name).exists()
    assert settings.store.patches("orders")[0]["status"] == "applied"


def test_a_pending_patch_for_the_same_failure_suppresses_a_new_heal(project):
    path, manifest, package, settings = project("human")
    first = Healer(settings).heal(package, path, manifest.agent)
    again = build_failure_package(manifest=manifest, blueprint_text=path.read_text(), failure=FailureRecord(module_id="clean_orders", error=RENAMED, input_schemas=SCHEMAS),
                                  run_id="run-2")  # fmt: skip
    second = Healer(settings).heal(again, path, manifest.agent)
    assert second.status == "suppressed" and first.patch.patch_id in second.message


def test_rate_limit_caps_heals_per_blueprint_per_hour(project):
    path, manifest, package, settings = project("human")
    settings.max_heals_per_hour = 1
    Healer(settings).heal(package, path, manifest.agent)
    PatchQueue(settings.patches_dir, settings.revisions_dir, settings.store).reject(
        settings.store.patches("orders")[0]["patch_id"], "not now"
    )
    other = build_failure_package(manifest=manifest, blueprint_text=path.read_text(), failure=FailureRecord(module_id="clean_orders", error=RENAMED, input_schemas=SCHEMAS),
                                  run_id="run-3")  # fmt: skip
    assert Healer(settings).heal(other, path, manifest.agent).status == "rate_limited"


def test_disabled_and_never_heal(project):
    path, manifest, package, settings = project("disabled")
    assert Healer(settings).heal(package, path, manifest.agent).status == "disabled"
    path, manifest, package, settings = project("human")
    policy = manifest.agent.model_copy(
        update={"guardrails": manifest.agent.guardrails.model_copy(update={"never_heal_errors": ["UNRESOLVED_COLUMN"]})}
    )
    assert Healer(settings).heal(package, path, policy).status == "skipped"


def test_forbidden_op_is_rejected_by_guardrails(project):
    path, manifest, package, settings = project("human")
    policy = manifest.agent.model_copy(
        update={"guardrails": manifest.agent.guardrails.model_copy(update={"forbidden_ops": ["replace_macro"]})}
    )
    outcome = Healer(settings).heal(package, path, policy)
    assert outcome.status == "no_fix"
    assert "rejected by guardrails: operation 'replace_macro' is forbidden" in outcome.message
    assert settings.store.turns(package.heal_id)[0]["rejected_by"] == "guardrails"


def test_low_confidence_escalates_to_a_person(project):
    path, manifest, package, settings = project("human")
    policy = manifest.agent.model_copy(update={"confidence_threshold": 0.99})
    outcome = Healer(settings).heal(package, path, policy)
    assert outcome.status == "escalated" and "below the threshold 0.99" in outcome.message
    assert outcome.pending_path.exists()


def test_ci_mode_commits_a_branch_with_a_pr_description(project, tmp_path):
    path, manifest, package, settings = project("ci")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "orders.yml"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True)
    outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "branch", outcome.message
    shown = subprocess.run(["git", "-C", str(tmp_path), "show", f"{outcome.branch}:orders.yml"],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert 'valid: "order_amount > 0"' in shown
    assert 'valid: "amount > 0"' in path.read_text()  # the checkout is untouched
    description = Path(outcome.message.split("PR description ")[1]).read_text()
    assert "**Root cause:**" in description and "```diff" in description and "**Confidence:** 0." in description


def test_ci_mode_without_a_pull_request_still_heals_and_says_why(project, tmp_path, monkeypatch):
    """A token but no GitHub origin: the branch is committed, the heal is a success, and the
    outcome says why no pull request was opened (never showing the token)."""
    path, manifest, package, settings = project("ci")
    monkeypatch.setenv(settings.git_remote_token_env, "ghp_not_a_real_token_123")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "orders.yml"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True)
    outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "branch", outcome.message
    assert "pull request not opened" in outcome.message and "ghp_not_a_real_token_123" not in outcome.message
    subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--verify", outcome.branch], check=True, capture_output=True)


def test_llm_takes_over_when_no_rule_fits_and_nothing_secret_leaks(project, tmp_path):
    # A data exception (SQLSTATE class 22) quotes the offending value: it must not leak.
    error = dict(RENAMED, condition="NUMERIC_VALUE_OUT_OF_RANGE", sqlstate="22003", message_parameters={},
                 message=f"value 'ACME Corp' out of range for amount; connection pw={SECRET}")  # fmt: skip
    llm_patch = {"rationale": "cast amount", "confidence": 0.9, "root_cause": "amount is a string",
                 "operations": [
                     {"op": "set_module_config_key", "module_id": "clean_orders", "key": "query",
                      "value": "SELECT order_id, CAST(order_amount AS DOUBLE) AS amount\nFROM raw_orders\nWHERE {{ macros.valid }}\n"},
                     {"op": "replace_macro", "name": "valid", "value": "CAST(order_amount AS DOUBLE) > 0"}]}  # fmt: skip
    with scripted_llm([llm_patch]) as llm:
        agent = LLMDiagnoser.from_config(AgentConnection(provider="openai_compat", model="m", base_url=llm.base_url,
                                                         budget=AgentBudget()))  # fmt: skip
        path, manifest, package, settings = project("human", error=error, diagnosers=[RuleDiagnoser(), agent])
        outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "staged", outcome.message
    turns = settings.store.turns(package.heal_id)
    assert [t["diagnoser"] for t in turns] == ["rules", "llm"]
    assert turns[1]["input_tokens"] == 900 and turns[1]["prompt_version"] == "aq-heal-v1"
    prompts = llm.all_prompt_text()
    assert SECRET not in prompts and "ACME Corp" not in prompts and "<literal>" in prompts
    db = duckdb.connect(str(tmp_path / "state" / "aqueduct.duckdb"), read_only=True)
    for (table,) in db.execute("SELECT table_name FROM information_schema.tables").fetchall():
        dump = str(db.execute(f"SELECT * FROM {table}").fetchall())
        assert SECRET not in dump and "ACME Corp" not in dump, table


def test_llm_budget_stop_ends_the_heal_with_its_reason(project):
    error = dict(RENAMED, condition="SOMETHING_NEW", message_parameters={}, message="boom")
    bad = {"rationale": "x", "confidence": 0.9,
           "operations": [{"op": "replace_macro", "name": "valid", "value": "no_such_column > 0"}]}  # fmt: skip
    with scripted_llm([bad, bad, bad]) as llm:
        agent = LLMDiagnoser.from_config(AgentConnection(provider="openai_compat", model="m", base_url=llm.base_url,
                                                         budget=AgentBudget(max_reprompts=5)))  # fmt: skip
        path, manifest, package, settings = project("human", error=error, diagnosers=[agent])
        outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "no_fix"
    assert "rejected by lineage" in outcome.message and "budget:" in outcome.message
    assert len(llm.requests) == 2


def test_defer_is_reported(project):
    error = dict(RENAMED, condition="SOMETHING_NEW", message_parameters={}, message="boom")
    defer = {"rationale": "db down", "confidence": 0.9, "operations": [
        {"op": "defer_to_human", "diagnosis": "the source database is unreachable", "defer_reason": "infrastructure"}]}  # fmt: skip
    with scripted_llm([defer]) as llm:
        agent = LLMDiagnoser.from_config(AgentConnection(provider="openai_compat", model="m", base_url=llm.base_url))
        path, manifest, package, settings = project("human", error=error, diagnosers=[agent])
        outcome = Healer(settings).heal(package, path, manifest.agent)
    assert outcome.status == "deferred" and outcome.message == "the source database is unreachable"


def test_unknown_pending_patch_is_a_clear_error(project):
    path, manifest, package, settings = project("human")
    queue = PatchQueue(settings.patches_dir, settings.revisions_dir, settings.store)
    with pytest.raises(HealError, match="no pending patch 'nope'"):
        queue.apply("nope")
