"""The LLM diagnoser through the real `instructor` + `openai` clients.

The endpoint is a local scripted OpenAI-compatible server (tests/support/scripted_llm.py):
the only stand-in in this suite. Everything else (instructor's validation loop, the HTTP
client, our guardrails and budget) is real.
"""

from __future__ import annotations

from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.config import AgentBudget, AgentConnection
from aqueduct_dagster.engine.errors import SparkErrorInfo
from aqueduct_dagster.healing.agent import LLMDiagnoser, build_prompt
from aqueduct_dagster.healing.diagnoser import StopReason
from aqueduct_dagster.healing.failure import ColumnInfo, FailurePackage
from tests.support.scripted_llm import scripted_llm

SECRET = "pg-password-9f8e7d6c"
DATA_LITERAL = "ACME Corp, 42 Main St"


def failure_package() -> FailurePackage:
    return FailurePackage(
        heal_id="heal-1",
        blueprint_id="orders_daily",
        blueprint_path="orders.yml",
        failed_module="clean_orders",
        module_type="Channel",
        error=SparkErrorInfo(
            exception_class="pyspark.errors.exceptions.captured.AnalysisException",
            condition="UNRESOLVED_COLUMN.WITH_SUGGESTION",
            sqlstate="42703",
            parameters={"objectName": "`amount`", "proposal": "`order_amount`, `order_id`"},
            message="[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column ... `amount` cannot be resolved.",
        ),
        signature="UNRESOLVED_COLUMN.WITH_SUGGESTION:clean_orders:abc",
        module_raw={"id": "clean_orders", "type": "Channel",
                    "config": {"op": "sql", "query": "SELECT order_id, amount FROM raw_orders WHERE amount > 0"}},
        module_compiled={},
        upstream_schemas={"raw_orders": [ColumnInfo(name="order_id", type="int"), ColumnInfo(name="order_amount", type="double")]},
    )


def good_patch(**extra):
    return {
        "rationale": "amount was renamed to order_amount upstream",
        "root_cause": "schema drift: amount -> order_amount",
        "confidence": 0.9,
        "operations": [{"op": "set_module_config_key", "module_id": "clean_orders", "key": "query",
                        "value": "SELECT order_id, order_amount AS amount FROM raw_orders WHERE order_amount > 0"}],
        **extra,
    }


def diagnoser(llm, *, budget: AgentBudget | None = None, policy: Agent | None = None) -> LLMDiagnoser:
    config = AgentConnection(provider="openai_compat", model="scripted-model", base_url=llm.base_url,
                             api_key="unused", timeout=30, budget=budget or AgentBudget())  # fmt: skip
    return LLMDiagnoser.from_config(config).for_policy(policy or Agent(approval="human"))


def test_valid_patch_is_returned_with_token_usage():
    with scripted_llm([good_patch()]) as llm:
        proposal = diagnoser(llm).propose(failure_package(), [])
    assert proposal.patch is not None
    assert proposal.patch.operations[0].value.startswith("SELECT order_id, order_amount")
    assert (proposal.input_tokens, proposal.output_tokens) == (900, 150)
    assert proposal.prompt_version == "aq-heal-v1"
    assert llm.requests[0]["model"] == "scripted-model"


def test_invalid_patchspec_is_corrected_in_the_same_conversation():
    invalid = {"rationale": "missing operations"}
    with scripted_llm([invalid, good_patch()]) as llm:
        proposal = diagnoser(llm).propose(failure_package(), [])
    assert proposal.patch is not None
    assert len(llm.requests) == 2
    second = llm.requests[1]["messages"]
    # instructor fed the validation error back, naming the field
    assert any("operations" in str(m.get("content")) and m["role"] == "user" for m in second[2:]) or any(
        "operations" in str(m.get("content")) for m in second[2:]
    )
    assert second[0] == llm.requests[0]["messages"][0]


def test_non_select_sql_is_a_guardrail_violation_fed_back_to_the_model():
    drop = good_patch(operations=[{"op": "set_module_config_key", "module_id": "clean_orders",
                                   "key": "query", "value": "DROP TABLE raw_orders"}])  # fmt: skip
    with scripted_llm([drop, good_patch()]) as llm:
        proposal = diagnoser(llm).propose(failure_package(), [])
    assert proposal.patch is not None and "DROP" not in proposal.patch.operations[0].value
    correction = " ".join(str(m.get("content")) for m in llm.requests[1]["messages"][2:])
    assert "guardrail violation" in correction and "single SELECT" in correction


def test_gate_rejection_goes_back_into_the_conversation():
    package = failure_package()
    with scripted_llm([good_patch(), good_patch(confidence=0.8)]) as llm:
        agent = diagnoser(llm)
        agent.propose(package, [])
        agent.propose(package, ["The lineage gate rejected the patch: module 'clean_orders' reads amount"])
    last = llm.requests[1]["messages"]
    assert last[-1]["role"] == "user" and "lineage gate rejected" in last[-1]["content"]
    assert last[-2]["role"] == "assistant" and "order_amount" in last[-2]["content"]


def test_budget_stops_on_tokens():
    package = failure_package()
    with scripted_llm([good_patch(), good_patch()]) as llm:
        agent = diagnoser(llm, budget=AgentBudget(max_tokens_total=1000))
        first = agent.propose(package, [])
        second = agent.propose(package, ["The sandbox gate rejected the patch: boom"])
    assert first.patch is not None and first.stop is None
    assert second.patch is None and second.final and second.stop is StopReason.BUDGET
    assert second.reason == "budget: token limit of 1000 reached (1050 used)"
    assert len(llm.requests) == 1


def test_budget_stops_on_the_same_rejection_twice():
    package = failure_package()
    rejection = "The lineage gate rejected the patch: reads amount"
    with scripted_llm([good_patch(), good_patch(confidence=0.8), good_patch(confidence=0.7)]) as llm:
        agent = diagnoser(llm, budget=AgentBudget(max_reprompts=5, same_error_consecutive=2))
        agent.propose(package, [])
        agent.propose(package, [rejection])
        stopped = agent.propose(package, [rejection, rejection])
    assert stopped.patch is None and "the same rejection 2 times in a row" in stopped.reason


def test_defer_to_human_when_allowed():
    defer = {"rationale": "the source system is down", "confidence": 0.9, "operations": [
        {"op": "defer_to_human", "diagnosis": "upstream export missing", "defer_reason": "infrastructure"}]}  # fmt: skip
    with scripted_llm([defer]) as llm:
        proposal = diagnoser(llm, policy=Agent(approval="human", allow_defer=True)).propose(failure_package(), [])
    assert proposal.patch is not None and proposal.patch.deferred.defer_reason == "infrastructure"


def test_defer_is_a_violation_when_not_allowed():
    defer = {"rationale": "x", "confidence": 0.9, "operations": [
        {"op": "defer_to_human", "diagnosis": "x", "defer_reason": "other"}]}  # fmt: skip
    with scripted_llm([defer, good_patch()]) as llm:
        proposal = diagnoser(llm).propose(failure_package(), [])
    assert proposal.patch is not None and proposal.patch.deferred is None
    assert "defer_to_human is not allowed" in llm.all_prompt_text()


def test_prompt_is_compact_and_redacted():
    package = failure_package()
    messages = build_prompt(package, policy=Agent(approval="human"))
    text = "".join(m["content"] for m in messages)
    assert len(text) < 8000
    assert "UNRESOLVED_COLUMN.WITH_SUGGESTION" in text and "order_amount" in text
    assert SECRET not in text and DATA_LITERAL not in text


def test_unreachable_endpoint_is_reported_not_raised():
    config = AgentConnection(provider="openai_compat", model="m", base_url="http://127.0.0.1:9/v1", timeout=5)
    proposal = LLMDiagnoser.from_config(config).for_policy(Agent(approval="human")).propose(failure_package(), [])
    assert proposal.patch is None and proposal.reason.startswith("LLM call failed")
    assert proposal.stop is StopReason.CALL_FAILED
