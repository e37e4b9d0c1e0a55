"""The heal job in-process on the real SparkSession: Assert-triggered heals and the LLM path.

The LLM endpoint is the local scripted OpenAI-compatible server (the suite's one stand-in),
configured the way an operator would: in aqueduct.yml.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.healing import aqueduct_heal_job
from tests.support.scripted_llm import scripted_llm

# Request the suite's session so it is the one that starts the JVM, whatever the test order.
pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark"), pytest.mark.spark_kind("classic")]
# One session kind: what these tests check does not depend on it (Connect runs through
# Dagster are covered by test_materialize, test_module_types and test_warm_spark).

LLM_FIX = {
    "rationale": "only orders above 100 are publishable; filter them in clean_orders",
    "root_cause": "the quality rule needs MIN(amount) > 100 but the filter lets small orders through",
    "confidence": 0.85,
    "operations": [{"op": "replace_context_value", "key": "min_amount", "value": 100}],
}


@pytest.fixture
def healing_env(demo_project, tmp_path, monkeypatch):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AQUEDUCT_PATCHES_DIR", str(tmp_path / "patches"))
    return demo_project


def _fail_run(project, replace: tuple[str, str]) -> tuple[dg.DagsterInstance, str]:
    path = project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace(*replace))
    instance = dg.DagsterInstance.ephemeral()
    result = build_definitions(project["blueprints"]).resolve_job_def("orders_daily").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not result.success
    return instance, result.run_id


def _heal(instance: dg.DagsterInstance, run_id: str) -> dict:
    result = aqueduct_heal_job.execute_in_process(
        run_config={"ops": {"heal": {"config": {"run_id": run_id}}}}, instance=instance
    )
    return result.output_for_node("heal")


def test_trigger_agent_assert_is_healed_by_the_llm_configured_in_aqueduct_yml(healing_env, tmp_path, monkeypatch):
    instance, run_id = _fail_run(
        healing_env,
        ("{type: sql, expr: \"MIN(amount) > 0\"}",
         "{type: sql, expr: \"MIN(amount) > 100\", on_fail: trigger_agent, error_type: LowAmounts}"),
    )  # fmt: skip
    with scripted_llm([LLM_FIX]) as llm:
        (tmp_path / "aqueduct.yml").write_text(
            f"agent:\n  provider: openai_compat\n  model: scripted\n  base_url: {llm.base_url}\n  api_key: unused\n"
        )
        monkeypatch.setenv("AQUEDUCT_CONFIG", str(tmp_path / "aqueduct.yml"))
        summary = _heal(instance, run_id)
    assert summary["status"] == "staged", summary
    assert "sandbox: pass" in " ".join(summary["gates"])
    prompt = llm.all_prompt_text()
    assert "MIN(amount) > 100" in prompt and "orders_quality" in prompt
    record = json.loads(open(summary["pending_path"]).read())
    assert record["failed_module"] == "orders_quality"
    assert "+  min_amount: 100" in record["diff"]


def test_abort_assert_failure_is_not_healed(healing_env):
    instance, run_id = _fail_run(healing_env, ("{type: min_rows, min: 1}", "{type: min_rows, min: 100000}"))
    summary = _heal(instance, run_id)
    assert summary == {"status": "skipped", "message": "no healable failure in the run"}


def test_spark_failure_without_llm_is_healed_by_rules(healing_env):
    instance, run_id = _fail_run(healing_env, ("SELECT order_id, customer_id,", "SELECT order_id, customer_idd,"))
    summary = _heal(instance, run_id)
    assert summary["status"] == "staged", summary
    gates = [g.split(":")[0] for g in summary["gates"]]
    assert gates == ["guardrails", "compile", "effect", "lineage", "sandbox", "contract"]
    # No run succeeded before this one: nothing to hold the output against, and it says so.
    assert "no last good run on record: skipped" in summary["gates"][-1]


def test_a_staged_patch_is_offered_as_a_partition_and_picking_it_applies_it(healing_env, monkeypatch):
    from aqueduct_dagster.dagster.healing import PENDING_PATCHES, approve_patch_job

    monkeypatch.setenv("AQUEDUCT_BLUEPRINTS_DIR", str(healing_env["blueprints"]))  # the root patches may edit

    instance, run_id = _fail_run(healing_env, ("SELECT order_id", "SELECT order_idd"))
    summary = _heal(instance, run_id)
    assert summary["status"] == "staged", summary
    assert instance.get_dynamic_partitions(PENDING_PATCHES.name) == [summary["patch_id"]]
    # What the launchpad does when the patch is picked: a run of that partition, no config.
    result = approve_patch_job.execute_in_process(instance=instance, partition_key=summary["patch_id"])
    assert result.output_for_node("approve_patch")["patch_id"] == summary["patch_id"]
    assert "order_idd" not in (healing_env["blueprints"] / "orders_daily.yml").read_text()
    assert instance.get_dynamic_partitions(PENDING_PATCHES.name) == []
