"""Every class of Blueprint mistake gives an error that says where, what, and the fix."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_blueprint, compile_text, parse_single_select
from aqueduct_dagster.errors import BlueprintError

HEAD = 'aqueduct: "1.0"\nid: t\nname: T\n'


def where(error: BlueprintError) -> tuple[int | None, int | None]:
    return error.location.line, error.location.column


def test_yaml_syntax_error_points_at_the_bad_line(compile_error, write_blueprint):
    error = compile_error(HEAD + "modules:\n  - id: a\n    type: Ingress\n   config: {}\n")
    assert str(error).startswith(f"{write_blueprint('x', name='blueprint.yml').parent}")
    assert where(error) == (7, 4)
    assert "invalid YAML" in error.message


def test_duplicate_yaml_key_is_an_error(compile_error):
    error = compile_error(HEAD + "modules:\n  - id: a\n    type: Ingress\n    id: b\n")
    assert where(error) == (7, 5)
    assert "duplicate key 'id'" in error.message and "line 5" in error.message


def test_top_level_must_be_a_mapping(compile_error):
    error = compile_error("- a\n- b\n")
    assert where(error) == (1, 1) and "mapping at the top level" in error.message


def test_unknown_module_type_suggests_the_closest(compile_error):
    error = compile_error(HEAD + "modules:\n  - id: a\n    type: Ingres\n")
    assert where(error) == (6, 11)
    assert error.module_id == "a"
    assert "unknown module type 'Ingres' (did you mean 'Ingress'?)" in error.message


def test_missing_id_and_type_are_named(compile_error):
    no_id = compile_error(HEAD + "modules:\n  - type: Ingress\n")
    no_type = compile_error(HEAD + "modules:\n  - id: x\n")
    assert "module has no 'id'" in no_id.message and where(no_id) == (5, 5)
    assert "module has no 'type'" in no_type.message and no_type.module_id == "x"


def test_unknown_config_key_suggests_the_closest(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Channel\n    config:\n      op: sql\n"
        "      querry: SELECT 1\n"
    )
    assert where(error) == (9, 7)
    assert error.module_id == "a"
    assert "unknown key 'querry' in 'config' (did you mean 'query'?)" in error.message
    assert "allowed keys" in error.hint


def test_config_key_at_module_level_says_to_move_it(compile_error):
    error = compile_error(HEAD + "modules:\n  - id: a\n    type: Channel\n    query: SELECT 1\n")
    assert "unknown key 'query' of a Channel" in error.message
    assert "move it under `config:`" in error.hint


def test_wrong_value_type_names_key_and_value(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Channel\n    config:\n      op: repartition\n"
        "      num_partitions: lots\n"
    )
    assert where(error) == (9, 23)
    assert error.module_id == "a"
    assert "config.num_partitions: Input should be a valid integer" in error.message
    assert "'lots'" in error.message


def test_several_validation_problems_are_listed_after_the_first(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Channel\n    config:\n      op: sqll\n"
        "  - type: Egress\n"
    )
    assert where(error) == (8, 11)
    assert "'sqll' is not allowed (did you mean 'sql'?)" in error.message
    assert "1 more problem" in error.message
    assert ":9:5: module has no 'id'" in error.message


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("{type: not_null, on_fail: warn}", "a `not_null` rule needs column (e.g. column: <column>)"),
        ("{type: null_rate, column: city}", "a `null_rate` rule needs max"),
        ("{type: min_rows}", "a `min_rows` rule needs min"),
        ("{type: freshness}", "a `freshness` rule needs column and max_age_hours"),
        ("{type: sql}", "a `sql` rule needs expr (e.g. expr: <SQL expression>)"),
        ("{type: custom}", "a `custom` rule needs fn (e.g. fn: quality.check_orders)"),
    ],
)
def test_an_assert_rule_without_the_keys_its_type_needs_fails_to_load(compile_error, rule, says):
    # Found when the Blueprint loads, with its line, not when a run reaches the Assert.
    error = compile_error(
        HEAD + "modules:\n  - id: quality\n    type: Assert\n    config:\n      rules:\n"
        "        - {type: min_rows, min: 1}\n"
        f"        - {rule}\n"
    )
    assert where(error)[0] == 10
    assert error.module_id == "quality"
    assert "config.rules.1" in error.message and says in error.message


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ("{format: custom}", "name it with `class: <module>.<DataSource subclass>`"),
        ("{format: csv, path: x.csv, class: readers.Countdown}", "`class` names a data source of your own"),
        ("{class: readers.Countdown}", "`class` names a data source of your own"),
    ],
)
def test_a_custom_data_source_needs_format_custom_and_its_class(compile_error, config, says):
    error = compile_error(HEAD + f"modules:\n  - id: source\n    type: Ingress\n    config: {config}\n")
    assert where(error)[0] == 7 and error.module_id == "source"
    assert says in error.message


def test_unsupported_format_version(compile_error):
    error = compile_error('aqueduct: "2.0"\nid: t\nname: T\nmodules: []\n')
    assert where(error) == (1, 11) and "aqueduct: '2.0'" in error.message


def test_duplicate_module_id_shows_both_lines(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Ingress\n  - id: a\n    type: Egress\n"
    )
    assert where(error) == (7, 9)
    assert "duplicate module id 'a' (lines 5 and 7)" in error.message


def test_dangling_edge_suggests_a_module(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: orders\n    type: Ingress\n  - id: out\n    type: Egress\n"
        "edges:\n  - from: order\n    to: out\n"
    )
    assert where(error) == (10, 11)
    assert "'order' is not a module of this Blueprint (did you mean 'orders'?)" in error.message


def test_cycle_is_printed(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Channel}\n  - {id: b, type: Channel}\n"
        "  - {id: c, type: Channel}\n"
        "edges:\n  - {from: a, to: b}\n  - {from: b, to: c}\n  - {from: c, to: a}\n"
    )
    assert "cycle: a -> b -> c -> a" in error.message
    assert error.module_id == "a" and where(error) == (5, 5)


def test_unknown_port_lists_valid_ports(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Ingress}\n  - {id: b, type: Egress}\n"
        "edges:\n  - {from: a, to: b, port: spilway}\n"
    )
    assert where(error) == (8, 28)
    assert "an Ingress has no port 'spilway' (did you mean 'spillway'?)" in error.message
    assert "'main', 'spillway'" in error.hint


def test_junction_port_must_be_a_branch(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Ingress}\n"
        "  - id: j\n    type: Junction\n    config: {branches: [{id: eu}, {id: us}]}\n"
        "  - {id: b, type: Egress}\n"
        "edges:\n  - {from: a, to: j}\n  - {from: j, to: b, port: ue}\n"
    )
    assert "a Junction has no port 'ue'" in error.message
    assert "'eu', 'spillway', 'us'" in error.hint


def test_unknown_macro_points_at_its_use(compile_error):
    error = compile_error(
        HEAD + "macros:\n  active: x = 1\nmodules:\n  - id: a\n    type: Channel\n"
        "    config:\n      op: sql\n      query: SELECT * FROM t WHERE {{ macros.actve }}\n"
    )
    assert where(error) == (11, 36)
    assert error.module_id == "a"
    assert "unknown macro 'macros.actve' (did you mean 'active'?)" in error.message


def test_macro_argument_typo(compile_error):
    error = compile_error(
        HEAD + "macros:\n  trunc: \"DATE_TRUNC('{{ period }}', {{ col }})\"\nmodules:\n"
        "  - id: a\n    type: Channel\n    config:\n      op: sql\n"
        "      query: SELECT {{ macros.trunc(perod='day', col=ts) }} FROM t\n"
    )
    assert "has no parameter 'perod' (did you mean 'period'?)" in error.message


def test_unknown_context_key_suggests_the_closest(compile_error):
    error = compile_error(
        HEAD + "context:\n  region: EU\nmodules:\n  - id: a\n    type: Ingress\n"
        "    config:\n      path: /in/${ctx.regoin}\n"
    )
    assert where(error) == (10, 17)
    assert error.module_id == "a"
    assert "unknown context key 'regoin'" in error.message
    assert "(did you mean 'region'?)" in error.message


def test_context_self_reference_is_reported(compile_error):
    error = compile_error(HEAD + "context:\n  a: ${ctx.b}\n  b: x${ctx.a}\nmodules: []\n")
    assert "refers to itself: ctx.a -> ctx.b -> ctx.a" in error.message


def test_missing_required_context_names_the_keys(compile_error):
    error = compile_error(
        HEAD + "required_context: [region, day, hour]\ncontext:\n  region: EU\nmodules: []\n"
    )
    assert "required context key(s) missing: 'day', 'hour'" in error.message
    assert where(error) == (4, 28)
    assert "--ctx day=..." in error.hint


def test_required_context_can_come_from_an_override(compile_yaml):
    text = HEAD + "required_context: [day]\nmodules: []\n"
    assert compile_yaml(text, context_overrides={"day": "2026-01-01"}).context == {
        "day": "2026-01-01"
    }


def test_unknown_profile_suggests_the_closest(compile_error):
    error = compile_error(HEAD + "context_profiles: {prod: {}}\nmodules: []\n", profile="prd")
    assert "unknown context profile 'prd' (did you mean 'prod'?)" in error.message


def test_missing_env_var_says_which_and_where(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Ingress\n    config:\n      path: ${DATA_ROOT}/x\n"
    )
    assert where(error) == (8, 13)
    assert error.module_id == "a"
    assert "config.path: environment variable 'DATA_ROOT' is not set" in error.message


def test_missing_secret_names_module_key_and_variable(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Ingress\n    config:\n      options:\n"
        "        password: \"@aq.secret('DB_PASS')\"\n"
    )
    assert error.module_id == "a"
    assert "config.options.password" in error.message
    assert "environment variable 'DB_PASS' is not set" in error.message


def test_unknown_aq_function_suggests_the_closest(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Ingress\n    config:\n"
        "      path: /in/@aq.date.todya()\n"
    )
    assert where(error) == (8, 17)
    assert "unknown function '@aq.date.todya' (did you mean '@aq.date.today'?)" in error.message


def test_bad_function_arguments(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - id: a\n    type: Ingress\n    config:\n"
        "      path: /in/@aq.date.offset(days='x')\n"
    )
    assert "'@aq.date.offset' takes one whole number of days" in error.message


def test_implicit_chain_refuses_a_junction(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Ingress}\n  - {id: j, type: Junction}\n"
    )
    assert error.module_id == "j"
    assert "no `edges:` given" in error.message and "is a Junction" in error.message
    assert "edges:" in error.hint


def test_sql_reading_an_unknown_table_suggests_an_input(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: orders, type: Ingress}\n  - id: c\n    type: Channel\n"
        "    config:\n      op: sql\n      query: SELECT * FROM order\n"
    )
    assert where(error) == (10, 28)
    assert error.module_id == "c"
    assert "reads table 'order', which is not an input" in error.message
    assert "(did you mean 'orders'?)" in error.message


def test_sql_that_does_not_parse_names_the_module(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: orders, type: Ingress}\n  - id: c\n    type: Channel\n"
        "    config:\n      op: sql\n      query: SELECT FROM WHERE (\n"
    )
    assert error.module_id == "c" and "SQL does not parse" in error.message


def test_probe_edge_must_go_to_a_regulator(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Ingress}\n  - {id: p, type: Probe, attach_to: a}\n"
        "  - {id: b, type: Egress}\nedges:\n  - {from: p, to: b}\n"
    )
    assert "a Probe emits signals, not data" in error.message


def test_arcade_with_a_missing_ref_file_says_which(compile_error):
    error = compile_error(HEAD + "modules:\n  - {id: sub, type: Arcade, ref: sub.yml}\nedges: []\n")
    assert error.module_id == "sub" and "Arcade file 'sub.yml' not found" in error.message


def test_enabled_must_read_as_a_boolean(compile_error):
    error = compile_error(HEAD + "modules:\n  - {id: a, type: Ingress, enabled: maybe}\n")
    assert "enabled: 'maybe' is neither true nor false" in error.message


def test_disabling_every_module_is_an_error(compile_error):
    error = compile_error(
        HEAD + "modules:\n  - {id: a, type: Ingress, enabled: false}\n  - {id: b, type: Egress}\n"
    )
    assert "every module is disabled" in error.message


def test_missing_file_is_a_blueprint_error(tmp_path):
    with pytest.raises(BlueprintError, match="not found"):
        compile_blueprint(tmp_path / "nope.yml")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP TABLE orders", "only a SELECT query is allowed here, found a DROP"),
        ("INSERT INTO t SELECT 1", "found a INSERT"),
        ("SELECT 1; SELECT 2", "exactly one SQL statement, found 2"),
        ("SELECT FROM (", "SQL does not parse"),
        ("   ", "SQL is empty"),
    ],
)
def test_parse_single_select_refuses_anything_but_one_select(sql, expected):
    with pytest.raises(BlueprintError) as caught:
        parse_single_select(sql)
    assert expected in caught.value.message


def test_parse_single_select_accepts_cte_and_union():
    assert parse_single_select("WITH r AS (SELECT 1 AS a) SELECT a FROM r").selects
    assert parse_single_select("SELECT a FROM x UNION ALL SELECT a FROM y") is not None


def test_errors_carry_no_stack_of_python_exceptions():
    with pytest.raises(BlueprintError) as caught:
        compile_text(HEAD + "modules:\n  - {id: a, type: Ingres}\n", source_path="bp.yml")
    assert caught.value.__cause__ is None
    assert str(caught.value).startswith("bp.yml:5:")
