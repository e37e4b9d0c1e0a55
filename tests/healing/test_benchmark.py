"""The offline heal benchmark: scenario loading, the effect grader, assertions, the gallery run,
the LLM path (real instructor client, scripted endpoint), --execute on Spark, and the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aqueduct_dagster.cli.benchmark import benchmark_command
from aqueduct_dagster.config import AgentConnection
from aqueduct_dagster.healing.benchmark import (
    BlueprintState,
    Effect,
    ScenarioError,
    build_scenario_package,
    discover_scenarios,
    error_from_injection,
    grade_effect,
    load_scenario,
    not_executable_reason,
    plan_schemas,
    run_benchmark,
    run_scenario,
    sql_contains,
)
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.stores import DuckDBStore
from tests.support.scripted_llm import scripted_llm
from tests.support.shared import require_shared, shared_path

REPO = Path(__file__).resolve().parents[2]
GALLERY = shared_path("aqueduct-gallery", "aqscenarios")
#: Measured with the offline rules (15 of 19); a regression floor, not the expected result.
#: Scenario 14 tunes a DuckDB engine this project does not have: its rule patched a block no
#: engine reads, so it was removed rather than kept to score.
GALLERY_RULES_FLOOR = 15

BLUEPRINT = """\
aqueduct: "1.0"
id: shop
name: Shop
engine:
  spark:
    conf:
      spark.sql.shuffle.partitions: "10"
modules:
  - id: orders_raw
    type: Ingress
    config:
      format: csv
      path: data/orders.csv
      header: true
  - id: clean_orders
    type: Channel
    config:
      op: sql
      query: |
        SELECT order_id, amount_usd AS amount
        FROM orders_raw
edges:
  - from: orders_raw
    to: clean_orders
"""

RENAME_FAILURE = {
    "module": "clean_orders",
    "error_message": (
        "pyspark.errors.exceptions.captured.AnalysisException: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, "
        "variable, or function parameter with name `amount_usd` cannot be resolved. Did you mean one of the "
        "following? [`order_id`, `amount`]. SQLSTATE: 42703\n"
        "'Project [order_id#1, 'amount_usd AS amount#3]\n"
        "+- SubqueryAlias orders_raw\n"
        "   +- Relation [order_id#1,amount#2] csv\n"
    ),
}
OOM_FAILURE = {
    "module": "clean_orders",
    "error_message": "org.apache.spark.SparkException: Job aborted: ExecutorLostFailure. Container killed by YARN "
    "for exceeding memory limits.",
    "structured": {"error_class": "SPARK_EXECUTOR_OOM"},
}


def write_scenario(folder: Path, *, name: str = "s", blueprint: str = BLUEPRINT, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yml").write_text(blueprint)
    scenario = {"aqueduct_scenario": "1.0", "id": name, "blueprint": f"{name}.yml",
                "inject_failure": RENAME_FAILURE, **fields}  # fmt: skip
    path = folder / f"{name}.aqscenario.yml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False))
    return path


def run(tmp_path: Path, **fields):
    return run_scenario(load_scenario(write_scenario(tmp_path, **fields)))


def check(result, name):
    return next(c for c in result.checks if c.name == name)


# --------------------------------------------------------------------------- loading


def test_scenario_resolves_its_blueprint_and_builds_the_failure_package(tmp_path):
    loaded = load_scenario(write_scenario(tmp_path / "scenarios"))
    assert loaded.blueprint_path == tmp_path / "scenarios" / "s.yml"
    package = build_scenario_package(loaded)
    assert package.failed_module == "clean_orders" and package.module_type == "Channel"
    assert package.error.condition == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert package.error.sqlstate == "42703"
    assert package.error.message_parameters == {"objectName": "`amount_usd`", "proposal": "`order_id`, `amount`"}
    assert package.upstream_columns() == {"orders_raw": ["order_id", "amount"]}


def test_structured_fields_win_over_the_message():
    from aqueduct_dagster.healing.benchmark import InjectedFailure

    error = error_from_injection(InjectedFailure.model_validate({
        "module": "m",
        "error_message": "org.apache.spark.SparkException: [SOMETHING_ELSE] boom\nCaused by: java.io.IOException: disk",
        "structured": {"error_class": "SPARK_EXECUTOR_OOM", "sql_state": "53200", "object_name": "event_ts",
                       "suggested_columns": ["event_time", "event_id"],
                       "root_exception": {"type": "java.lang.OutOfMemoryError", "message": "heap"}},
    }))  # fmt: skip
    assert error.condition == "SPARK_EXECUTOR_OOM" and error.sqlstate == "53200"
    assert error.exception_class == "org.apache.spark.SparkException"
    assert error.message_parameters == {"objectName": "event_ts", "proposal": "`event_time`, `event_id`"}
    assert error.cause_chain == ["java.io.IOException: disk", "java.lang.OutOfMemoryError: heap"]


def test_plan_text_gives_the_schemas_of_joined_and_projected_inputs():
    plan = """\
'Join Inner, ('o.region_id = region_id#21)
:- SubqueryAlias o
:  +- SubqueryAlias stage_orders
:     +- Project [order_id#10, amount#12, order_ts#13 AS order_time#14]
:        +- SubqueryAlias raw_orders
:           +- Relation [order_id#10,amount#12,order_ts#13,region_id#15] csv
+- SubqueryAlias r
   +- SubqueryAlias regions_raw
      +- Relation [region_id#21,region_name#22] csv
"""
    assert plan_schemas(plan) == {
        "o": ["order_id", "amount", "order_time"],
        "stage_orders": ["order_id", "amount", "order_time"],
        "raw_orders": ["order_id", "amount", "order_ts", "region_id"],
        "r": ["region_id", "region_name"],
        "regions_raw": ["region_id", "region_name"],
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"asertions": []}, r"s\.aqscenario\.yml:\d+:\d+: asertions: unknown key\n  hint: did you mean 'assertions'\?"),
        ({"assertions": [{"patch_applies": "yes"}]}, r"s\.aqscenario\.yml:\d+:\d+: assertions: item 1 \(patch_applies\): Input should be a valid boolean, got .yes."),
        ({"blueprint": "missing.yml"}, r"blueprint: no file at .*missing\.yml"),
        ({"inject_failure": {**RENAME_FAILURE, "module": "clean_order"}}, r"no module 'clean_order'[\s\S]*did you mean 'clean_orders'"),
        ({"expected_patch": {"effect": {"config_contains": {"query": "x"}}}}, r"config_contains / config_not_contains need `module:`"),
        ({"expected_patch": {"effect": {}}}, r"an effect must state at least one of"),
    ],
)
def test_bad_scenarios_name_the_file_and_the_key(tmp_path, change, message):
    path = write_scenario(tmp_path)
    data = yaml.safe_load(path.read_text())
    data.update(change)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError, match=message) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)


def test_a_folder_without_scenarios_is_bad_input(tmp_path):
    with pytest.raises(ScenarioError, match="no \\*.aqscenario.yml files"):
        discover_scenarios(tmp_path)


# --------------------------------------------------------------------------- effect forms


def states(after_edit: dict | None = None, engine_after: dict | None = None):
    """Before/after states of BLUEPRINT; `after_edit` sets raw config keys of clean_orders."""
    from aqueduct_dagster.blueprint import compile_text

    before_text = BLUEPRINT
    data = yaml.safe_load(BLUEPRINT)
    for key, value in (after_edit or {}).items():
        data["modules"][1]["config"][key] = value
    data["engine"]["spark"]["conf"].update(engine_after or {})
    after_text = yaml.safe_dump(data, sort_keys=False)
    return (BlueprintState.of(before_text, compile_text(before_text)),
            BlueprintState.of(after_text, compile_text(after_text)))  # fmt: skip


def grade(effect: dict, **edits) -> list[str]:
    before, after = states(**edits)
    return grade_effect(Effect.model_validate(effect), before, after)


FIXED_QUERY = "select  ORDER_ID, amount as AMOUNT\nfrom orders_raw  /*+ BROADCAST(orders_raw) */"


@pytest.mark.parametrize(
    "contains, holds",
    [
        ({"query": "SELECT order_id, amount AS amount"}, True),  # keyword case, spacing, alias case
        ({"query": "amount_usd"}, False),
        ({"op": "sql"}, True),  # raw substring
        ({"op": "sq1"}, False),
        ({"num_partitions": 4}, True),  # typed equality
        ({"num_partitions": 40}, False),
        ({"num_partitions": True}, False),  # a bool is not a number
        ({"allow_missing_columns": True}, True),
        ({"allow_missing_columns": False}, False),
        ({"columns": {"amount_usd": "amount"}}, True),  # nested mappings
        ({"columns": {"amount_usd": "total"}}, False),
        ({"nope": ""}, False),  # a missing key never matches, not even ""
    ],
)
def test_config_contains(contains, holds):
    problems = grade({"module": "clean_orders", "config_contains": contains},
                     after_edit={"query": FIXED_QUERY, "num_partitions": 4, "allow_missing_columns": True,
                                 "columns": {"amount_usd": "amount"}})  # fmt: skip
    assert (not problems) == holds, problems


def test_config_not_contains_is_case_insensitive_and_a_missing_key_satisfies_it():
    effect = {"module": "clean_orders", "config_not_contains": {"query": "broadcast"}}
    assert grade(effect, after_edit={"query": FIXED_QUERY}) == ["clean_orders.query still contains 'broadcast'"]
    assert grade(effect, after_edit={"query": "SELECT order_id FROM orders_raw"}) == []
    assert grade({"module": "clean_orders", "config_not_contains": {"condition": "x"}}) == []


def test_backticks_compare_literally():
    assert sql_contains("SELECT id, `user` FROM t", "`user`")
    assert not sql_contains("SELECT id, user FROM t", "`user`")


def test_engine_config_compares_canonical_text():
    assert grade({"engine_config": {"spark": {"spark.sql.shuffle.partitions": 200}}},
                 engine_after={"spark.sql.shuffle.partitions": "200"}) == []  # fmt: skip
    [problem] = grade({"engine_config": {"spark": {"spark.sql.shuffle.partitions": 200}}},
                      engine_after={"spark.sql.shuffle.partitions": "1200"})  # fmt: skip
    assert "is '1200', expected '200'" in problem


def test_engine_config_changed_needs_a_real_change():
    effect = {"engine_config_changed": {"spark": ["spark.sql.shuffle.partitions"]}}
    assert grade(effect, engine_after={"spark.sql.shuffle.partitions": 400}) == []
    [inert] = grade(effect, engine_after={"spark.sql.shuffle.partitions": 10})  # "10" already
    assert "did not change (before '10', after '10')" in inert
    assert grade({"engine_config_changed": {"spark": ["spark.driver.memory"]}}) != []


def test_modules_contain_and_any_of():
    repartition = {"modules_contain": {"type": "Channel", "config_contains": {"op": "repartition"}}}
    assert grade(repartition) != []
    assert grade(repartition, after_edit={"op": "repartition"}) == []
    either = {"any_of": [{"engine_config_changed": {"spark": ["spark.sql.shuffle.partitions"]}}, repartition]}
    assert grade(either, engine_after={"spark.sql.shuffle.partitions": 400}) == []
    assert grade(either, after_edit={"op": "repartition"}) == []
    [none] = grade(either)
    assert none.startswith("none of any_of holds")


def test_a_module_the_patch_removed_fails_the_effect():
    before, _ = states()
    after = BlueprintState(modules={}, engine=before.engine)
    assert grade_effect(Effect(module="clean_orders"), before, after) == ["module 'clean_orders' is gone after the patch"]


# --------------------------------------------------------------------------- assertions and verdicts


def test_the_rules_heal_passes_effect_and_assertions(tmp_path):
    result = run(tmp_path, expected_patch={"effect": {"module": "clean_orders", "config_contains": {"query": "amount"}}},
                 assertions=[{"patch_is_valid": True}, {"patch_applies": True}, {"gate_status": {"lineage": "pass"}},
                             {"root_cause_contains": ["AMOUNT_USD"]}, {"max_attempts": 1}])  # fmt: skip
    assert result.passed and result.stop_reason == "ok", result.failures
    assert result.healer == "rules" and result.attempts == 1 and result.tokens == 0
    assert "amount AS amount" in result.patch["operations"][0]["value"]
    assert all(c.passed for c in result.checks)


def test_wrong_effect(tmp_path):
    result = run(tmp_path, expected_patch={"effect": {"module": "clean_orders", "config_contains": {"query": "total"}}})
    assert not result.passed and result.stop_reason == "wrong effect"
    assert "does not contain 'total'" in check(result, "effect").detail


def test_no_rule(tmp_path):
    failure = {"module": "clean_orders", "error_message": "java.lang.IllegalStateException: something odd"}
    result = run(tmp_path, inject_failure=failure, assertions=[{"patch_is_valid": True}])
    assert not result.passed and result.stop_reason == "no rule"
    assert "no rule for java.lang.IllegalStateException" in result.diagnosis
    assert run(tmp_path, inject_failure=failure, assertions=[{"patch_is_valid": False}]).passed


def test_guardrail_refusal_is_a_gate_rejection_and_can_be_the_expected_outcome(tmp_path):
    guarded = BLUEPRINT + "agent:\n  guardrails:\n    forbidden_ops: [set_module_config_key]\n"
    effect = {"effect": {"module": "clean_orders", "config_contains": {"query": "amount"}}}
    result = run(tmp_path, blueprint=guarded, expected_patch=effect)
    assert result.stop_reason == "gate rejected: guardrails"
    assert check(result, "effect").detail.startswith("not graded: refused (guardrail) by the guardrails gate")

    expected_refusal = run(tmp_path, blueprint=guarded, assertions=[
        {"patch_is_valid": True}, {"patch_applies": False}, {"patch_refused": "guardrail"}])  # fmt: skip
    assert expected_refusal.passed, expected_refusal.failures
    wrong_reason = run(tmp_path, blueprint=guarded, assertions=[{"patch_refused": "policy"}])
    assert wrong_reason.stop_reason == "assertion failed: patch_refused"


def test_gate_status_of_engine_config_writes(tmp_path):
    moved = run(tmp_path, inject_failure=OOM_FAILURE, assertions=[{"gate_status": {"engine_config": "pass"}}],
                expected_patch={"effect": {"engine_config_changed": {"spark": ["spark.sql.shuffle.partitions"]}}})  # fmt: skip
    assert moved.passed, moved.failures
    # The rule writes 800; a Blueprint that already says 800 makes the same write inert.
    tuned = BLUEPRINT.replace('"10"', '"800"')
    inert = run(tmp_path, blueprint=tuned, inject_failure=OOM_FAILURE,
                assertions=[{"gate_status": {"engine_config": "pass"}}])  # fmt: skip
    assert inert.stop_reason == "assertion failed: gate_status"
    assert "engine_config: fail (inert" in check(inert, "gate_status").detail
    refused = run(tmp_path, blueprint=tuned, inject_failure=OOM_FAILURE, assertions=[{"patch_refused": "inert"}])
    assert refused.passed, refused.failures


def test_scoring_assertions_are_recorded_but_never_flip_the_verdict(tmp_path):
    result = run(tmp_path, assertions=[{"patch_applies": True}, {"root_cause_contains": ["memory", "partitions"]},
                                       {"expected_category": "format_mismatch"}, {"min_confidence": 0.99}])  # fmt: skip
    assert result.passed
    scoring = {c.name: c for c in result.checks if not c.gating}
    assert set(scoring) == {"root_cause_contains", "expected_category", "min_confidence"}
    assert not any(c.passed for c in scoring.values())
    assert "none of ['memory', 'partitions']" in scoring["root_cause_contains"].detail


def test_an_unknown_assertion_fails_as_unsupported(tmp_path):
    result = run(tmp_path, assertions=[{"patch_applies": True}, {"patch_is_perfect": True}])
    assert not result.passed and result.stop_reason == "unsupported assertion patch_is_perfect"


def test_an_empty_expected_patch_without_patch_assertions_expects_no_patch(tmp_path):
    failure = {"module": "clean_orders", "error_message": "java.lang.IllegalStateException: something odd"}
    assert run(tmp_path, inject_failure=failure, expected_patch={}).passed
    healed = run(tmp_path, expected_patch={})
    assert not healed.passed and healed.stop_reason == "expected no patch"
    # With patch assertions, `{}` only means "no single effect to pin" (gallery scenario 05).
    assert run(tmp_path, expected_patch={}, assertions=[{"patch_applies": True}]).passed


def test_pre_2_3_expected_ops_are_graded_by_their_effect(tmp_path):
    ops = [{"op": "set_module_config_key", "module_id": "clean_orders", "key": "query", "value": "amount AS amount"}]
    assert run(tmp_path, expected_patch={"ops": ops}).passed
    wrong = [{"op": "set_engine_config", "engine": "spark", "key": "spark.sql.shuffle.partitions", "value": 200}]
    assert run(tmp_path, expected_patch={"operations": wrong}).stop_reason == "wrong effect"


def test_scenarios_that_need_a_cluster_are_not_executed(tmp_path):
    loaded = load_scenario(write_scenario(tmp_path, inject_failure=OOM_FAILURE))
    assert not_executable_reason(loaded) == "needs a cluster: container memory limits"
    result = run_scenario(loaded, execute=True, spark=None)  # never touches Spark
    assert result.passed and not result.execution.executed
    assert result.execution.reason == "not executable locally: needs a cluster: container memory limits"


def test_results_are_recorded_in_the_store(tmp_path):
    write_scenario(tmp_path / "suite", name="a")
    write_scenario(tmp_path / "suite", name="b", inject_failure=OOM_FAILURE)
    store = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")
    report = run_benchmark(tmp_path / "suite", healer="rules", store=store, run_id="run-1")
    rows = store.execute("SELECT run_id, scenario_id, healer, passed, attempts, stop_reason, details_json "
                         "FROM aq_benchmark_results ORDER BY scenario_id")  # fmt: skip
    assert [r[:6] for r in rows] == [("run-1", "a", "rules", True, 1, "ok"), ("run-1", "b", "rules", True, 1, "ok")]
    assert json.loads(rows[0][6])["patch"]["operations"][0]["key"] == "query"
    assert report.summary() == {"rules": {"passed": 2, "total": 2}}


# --------------------------------------------------------------------------- the gallery


def _effect_really_holds(effect: dict, original: dict, patched: dict) -> bool:
    """An independent, plainer reading of the effect forms the gallery uses."""
    modules = {m["id"]: m for m in patched["modules"]}

    def conf(document, engine):
        block = (document.get("engine") or {}).get(engine) or {}
        return {k: str(v) for k, v in (block.get("conf", {}) if engine == "spark" else block).items()}

    def has(value, want):
        if isinstance(want, dict):
            return isinstance(value, dict) and all(has(value.get(k), v) for k, v in want.items())
        if isinstance(want, str):
            squash = lambda s: "".join(str(s).lower().split())  # noqa: E731
            return value is not None and squash(want) in squash(value if isinstance(value, str) else json.dumps(value))
        return value == want

    checks = []
    if "module" in effect:
        config = modules[effect["module"]]["config"]
        checks.append(has(config, effect.get("config_contains") or {}))
        checks += [str(v).lower() not in str(config.get(k, "")).lower() for k, v in (effect.get("config_not_contains") or {}).items()]
    if "modules_contain" in effect:
        want = effect["modules_contain"]
        checks.append(any(m["type"] == want["type"] and has(m["config"], want.get("config_contains") or {}) for m in modules.values()))
    for engine, keys in (effect.get("engine_config_changed") or {}).items():
        checks += [conf(patched, engine).get(k) not in (None, conf(original, engine).get(k)) for k in keys]
    if "any_of" in effect:
        checks.append(any(_effect_really_holds(option, original, patched) for option in effect["any_of"]))
    return all(checks)


def test_gallery_with_the_offline_rules():
    require_shared(GALLERY)
    scenarios = discover_scenarios(GALLERY)
    report = run_benchmark(GALLERY, healer="rules")
    assert len(report.results) == len(scenarios) >= 19
    assert not [r.stop_reason for r in report.results if r.stop_reason.startswith("error")]
    passed = [r for r in report.results if r.passed]
    assert len(passed) >= GALLERY_RULES_FLOOR, report.table()
    for result in passed:
        loaded = load_scenario(result.path)
        patched_text = apply_patch_text(loaded.blueprint_text, PatchSpec.model_validate(result.patch))
        assert patched_text != loaded.blueprint_text, result.scenario_id
        effect = yaml.safe_load(Path(result.path).read_text())["expected_patch"].get("effect")
        if effect:
            assert _effect_really_holds(effect, yaml.safe_load(loaded.blueprint_text), yaml.safe_load(patched_text)), (
                result.scenario_id
            )
    for result in report.results:
        if not result.passed:
            assert result.stop_reason in ("no rule", "wrong effect") or result.stop_reason.startswith("gate rejected")


# --------------------------------------------------------------------------- the LLM path


def test_llm_healer_through_instructor_with_a_gate_rejection_fed_back(tmp_path):
    wrong = {"rationale": "rename", "root_cause": "amount_usd is gone", "confidence": 0.9,
             "operations": [{"op": "set_module_config_key", "module_id": "clean_orders", "key": "query",
                             "value": "SELECT order_id, total AS amount FROM orders_raw"}]}  # fmt: skip
    right = {**wrong, "operations": [{**wrong["operations"][0], "value": "SELECT order_id, amount FROM orders_raw"}]}
    path = write_scenario(tmp_path, expected_patch={"effect": {"module": "clean_orders", "config_contains": {"query": "amount"}}},
                          assertions=[{"patch_applies": True}, {"root_cause_contains": "amount_usd"}, {"max_attempts": 1}])  # fmt: skip
    with scripted_llm([wrong, right]) as llm:
        report = run_benchmark(path, healer="openai_compat/scripted-model",
                               connection=AgentConnection(base_url=llm.base_url, timeout=30))  # fmt: skip
    [result] = report.results
    assert result.passed, result.failures
    assert result.healer == "openai_compat/scripted-model"
    assert (result.attempts, result.input_tokens, result.output_tokens) == (2, 1800, 300)
    assert not check(result, "max_attempts").passed  # scoring: recorded, verdict unchanged
    assert llm.requests[0]["model"] == "scripted-model"
    assert "UNRESOLVED_COLUMN.WITH_SUGGESTION" in llm.requests[0]["messages"][1]["content"]
    assert "The lineage gate rejected the patch: module 'clean_orders' reads total" in llm.requests[1]["messages"][-1]["content"]


def test_a_malformed_model_name_is_bad_input(tmp_path):
    with pytest.raises(ScenarioError, match="'gpt' is not provider/name"):
        run_benchmark(write_scenario(tmp_path), healer="gpt")


# --------------------------------------------------------------------------- --execute on Spark


@pytest.mark.spark
def test_execute_runs_the_healed_pipeline_on_generated_data(tmp_path, spark):
    path = write_scenario(tmp_path, assertions=[{"patch_applies": True}])
    report = run_benchmark(path, healer="rules", execute=True, spark=spark)
    [result] = report.results
    assert result.passed and result.execution.executed, result.execution
    assert result.execution.passed and result.execution.reproduced  # the data reproduces the failure


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def suite(tmp_path):
    folder = tmp_path / "suite"
    write_scenario(folder, name="rename", assertions=[{"patch_applies": True}])
    failure = {"module": "clean_orders", "error_message": "java.lang.IllegalStateException: odd"}
    write_scenario(folder, name="odd", inject_failure=failure, assertions=[{"patch_applies": True}])
    return folder


def invoke(tmp_path, *args):
    env = {"AQUEDUCT_STATE_DIR": str(tmp_path / "state"), "AQUEDUCT_CONFIG": ""}
    with CliRunner().isolated_filesystem(temp_dir=tmp_path):
        return CliRunner().invoke(benchmark_command, [str(a) for a in args], env=env, catch_exceptions=False)


def test_cli_prints_a_table_records_the_run_and_reports_progress_on_stderr(tmp_path, suite):
    result = invoke(tmp_path, suite)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["scenario", "healer", "pass", "attempts", "tokens", "seconds", "stop", "reason"]
    assert lines[1].split()[:4] == ["odd", "rules", "FAIL", "1"] and lines[1].endswith("no rule")
    assert lines[2].split()[:4] == ["rename", "rules", "PASS", "1"] and lines[2].endswith("ok")
    assert "rules: 1/2 passed" in result.stdout
    assert "[1/2] rules odd: FAIL (no rule)" in result.stderr
    rows = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb").execute("SELECT COUNT(*) FROM aq_benchmark_results")
    assert rows == [(2,)]


def test_cli_json(tmp_path, suite):
    result = invoke(tmp_path, suite, "--json", "--no-store")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["summary"] == {"rules": {"passed": 1, "total": 2}}
    assert [(r["scenario_id"], r["passed"], r["stop_reason"]) for r in data["results"]] == [
        ("odd", False, "no rule"), ("rename", True, "ok")]  # fmt: skip
    assert not (tmp_path / "state" / "aqueduct.duckdb").exists()


def test_cli_fail_under(tmp_path, suite):
    assert invoke(tmp_path, suite, "--no-store", "--fail-under", "50").exit_code == 0
    result = invoke(tmp_path, suite, "--no-store", "--fail-under", "75")
    assert result.exit_code == 1 and "rules: 1/2 passed, under 75%" in result.stderr


def test_cli_bad_input_exits_2_with_a_clear_message(tmp_path, suite):
    missing = invoke(tmp_path, tmp_path / "nowhere")
    assert missing.exit_code == 2
    assert f"error: {tmp_path / 'nowhere'}: no scenario file or folder" in missing.stderr
    (suite / "odd.aqscenario.yml").write_text(textwrap.dedent("""\
        id: odd
        blueprint: odd.yml
        inject_failure: {module: clean_orders, error_mesage: boom}
    """))
    invalid = invoke(tmp_path, suite)
    assert invalid.exit_code == 2
    assert "odd.aqscenario.yml:3:" in invalid.stderr and "did you mean 'error_message'?" in invalid.stderr
    assert invoke(tmp_path, suite, "--model", "nonsense").exit_code == 2


def test_llm_answers_that_never_parse_are_patch_invalid(tmp_path):
    path = write_scenario(tmp_path, assertions=[{"patch_is_valid": True}])
    with scripted_llm(["{not json"] * 3) as llm:
        [result] = run_benchmark(path, healer="openai_compat/m", connection=AgentConnection(base_url=llm.base_url)).results
    assert result.stop_reason == "patch invalid" and result.attempts == 1
    assert result.tokens == 3 * 1050  # every retry inside instructor is paid for


def test_a_deferral_passes_only_where_the_scenario_allows_it(tmp_path):
    defer = {"rationale": "the export is broken upstream", "confidence": 0.8, "operations": [
        {"op": "defer_to_human", "diagnosis": "upstream export changed", "defer_reason": "upstream_schema_change"}]}  # fmt: skip
    blueprint = BLUEPRINT + "agent:\n  allow_defer: true\n"
    effect = {"effect": {"module": "clean_orders", "config_contains": {"query": "amount"}}}
    outcomes = {}
    for allowed in (True, False):
        path = write_scenario(tmp_path / str(allowed), blueprint=blueprint, expected_patch=effect,
                              assertions=[{"allow_defer": allowed}, {"patch_applies": True}])  # fmt: skip
        with scripted_llm([defer]) as llm:
            [outcomes[allowed]] = run_benchmark(path, healer="openai_compat/m",
                                                connection=AgentConnection(base_url=llm.base_url)).results  # fmt: skip
    assert outcomes[True].passed, outcomes[True].failures
    assert outcomes[False].stop_reason == "deferred"
