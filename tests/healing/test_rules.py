"""The offline rule engine: one test per rule, plus the honest 'no rule'."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import SparkErrorInfo
from aqueduct_dagster.healing.failure import ColumnInfo, FailurePackage
from aqueduct_dagster.healing.patch import apply_patch_text
from aqueduct_dagster.healing.rules import ENGINE_CONFIG_ALLOWLIST, diagnose_with_rules

QUERY = """SELECT
  event_id,
  user_id,
  CAST(event_ts AS timestamp) AS event_time,
  event_type
FROM events_raw
WHERE event_type <> 'event_ts'
"""


def package(condition=None, params=None, message="", *, module_type="Channel", config=None,
            macros=None, context=None, upstream=None, cause_chain=()) -> FailurePackage:  # fmt: skip
    config = config if config is not None else {"op": "sql", "query": QUERY}
    return FailurePackage(
        heal_id="h1",
        blueprint_id="bp",
        blueprint_path="bp.yml",
        failed_module="clean",
        module_type=module_type,
        error=SparkErrorInfo(condition=condition, message_parameters=params or {}, message=message, cause_chain=list(cause_chain)),
        signature="sig",
        module_raw={"id": "clean", "type": module_type, "config": config},
        module_compiled={},
        macros=macros or {},
        context=context or {},
        upstream_schemas={
            alias: [ColumnInfo(name=c, type="string") for c in cols] for alias, cols in (upstream or {}).items()
        },
    )


def ops(diagnosis):
    assert diagnosis.patch is not None, diagnosis.reason
    return [op.model_dump() for op in diagnosis.patch.operations]


def test_unresolved_column_picks_the_renamed_column_using_lineage():
    diagnosis = diagnose_with_rules(
        package(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            {"objectName": "`event_ts`", "proposal": "`event_id`, `event_time`, `user_id`, `event_type`"},
        )
    )
    assert diagnosis.rule == "unresolved_column"
    [op] = ops(diagnosis)
    assert op["key"] == "query"
    assert "CAST(event_time AS timestamp) AS event_time" in op["value"]
    # the string literal 'event_ts' is data, not a column: untouched
    assert "'event_ts'" in op["value"]
    assert diagnosis.patch.confidence >= 0.7


def test_unresolved_column_in_a_macro_is_fixed_in_the_macro():
    diagnosis = diagnose_with_rules(
        package(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            {"objectName": "`amount`", "proposal": "`order_amount`, `order_id`"},
            config={"op": "sql", "query": "SELECT * FROM raw WHERE {{ macros.valid }}"},
            macros={"valid": "amount > 0"},
        )
    )
    assert ops(diagnosis) == [{"op": "replace_macro", "name": "valid", "value": "order_amount > 0"}]


def test_unresolved_column_uses_upstream_schema_when_spark_gave_no_proposal():
    diagnosis = diagnose_with_rules(
        package(
            "UNRESOLVED_COLUMN.WITHOUT_SUGGESTION",
            {"objectName": "`amnt`"},
            config={"op": "filter", "condition": "amnt > 0"},
            upstream={"raw": ["order_id", "amount", "status"]},
        )
    )
    assert ops(diagnosis)[0]["value"] == "amount > 0"


def test_unresolved_column_too_close_to_call_is_no_rule():
    diagnosis = diagnose_with_rules(
        package(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            {"objectName": "`val`", "proposal": "`val1`, `val2`"},
            config={"op": "sql", "query": "SELECT val FROM t"},
        )
    )
    assert diagnosis.patch is None and "no rule" in diagnosis.reason


def test_path_not_found_picks_the_nearest_existing_file(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "orders.csv").write_text("a\n1\n")
    diagnosis = diagnose_with_rules(
        package(
            "PATH_NOT_FOUND",
            {"path": f"file:{tmp_path}/demo/ordrs.csv"},
            module_type="Ingress",
            config={"format": "csv", "path": "${ctx.data_dir}/demo/ordrs.csv"},
        )
    )
    assert ops(diagnosis) == [
        {"op": "set_module_config_key", "module_id": "clean", "key": "path", "value": "${ctx.data_dir}/demo/orders.csv"}
    ]


def test_path_not_found_inside_a_context_value_patches_the_context(tmp_path):
    (tmp_path / "landing").mkdir()
    (tmp_path / "landing" / "orders.csv").write_text("a\n")
    diagnosis = diagnose_with_rules(
        package(
            "PATH_NOT_FOUND",
            {"path": f"file:{tmp_path}/landng/orders.csv"},
            module_type="Ingress",
            config={"format": "csv", "path": "${ctx.in_dir}/orders.csv"},
            context={"in_dir": f"{tmp_path}/landng"},
        )
    )
    assert ops(diagnosis) == [{"op": "replace_context_value", "key": "in_dir", "value": f"{tmp_path}/landing"}]


def test_csv_read_as_parquet_switches_the_format():
    diagnosis = diagnose_with_rules(
        package(
            "UNABLE_TO_INFER_SCHEMA",
            {"format": "Parquet"},
            module_type="Ingress",
            config={"format": "parquet", "path": "data/input/users.csv"},
        )
    )
    assert ops(diagnosis) == [
        {"op": "set_module_config_key", "module_id": "clean", "key": "format", "value": "csv"},
        {"op": "set_module_config_key", "module_id": "clean", "key": "header", "value": True},
    ]


def test_cast_invalid_input_becomes_try_cast():
    diagnosis = diagnose_with_rules(
        package("CAST_INVALID_INPUT", {"expression": "'<literal>'", "targetType": '"INT"'},
                config={"op": "sql", "query": "SELECT CAST(qty AS INT) AS qty, cast(x as int) FROM t"})
    )
    assert ops(diagnosis)[0]["value"] == "SELECT TRY_CAST(qty AS INT) AS qty, TRY_CAST(x as int) FROM t"


def test_divide_by_zero_becomes_try_divide():
    diagnosis = diagnose_with_rules(
        package("DIVIDE_BY_ZERO", {}, config={"op": "sql", "query": "SELECT revenue / orders AS aov, 'a/b' AS s FROM t"})
    )
    assert ops(diagnosis)[0]["value"] == "SELECT try_divide(revenue, orders) AS aov, 'a/b' AS s FROM t"


@pytest.mark.parametrize(
    "hint, expected_key, expected_value",
    [
        ({"amount": "int"}, "schema_hint.amount", "double"),
        ({"mode": "strict", "columns": [{"name": "amount", "type": "int"}, {"name": "id", "type": "long"}]},
         "schema_hint.columns", [{"name": "amount", "type": "double"}, {"name": "id", "type": "long"}]),
    ],
)
def test_schema_hint_mismatch_takes_the_actual_type(hint, expected_key, expected_value):
    diagnosis = diagnose_with_rules(
        package("AQ_SCHEMA_HINT_MISMATCH", {"column": "amount", "expected": "int", "actual": "double"},
                module_type="Ingress", config={"format": "csv", "path": "x.csv", "schema_hint": hint})
    )
    [op] = ops(diagnosis)
    assert (op["key"], op["value"]) == (expected_key, expected_value)


def test_ambiguous_reference_without_a_last_good_run_defers():
    # Spark lists the sides in plan order; which side the author meant only the last good
    # run can tell (tests/healing/test_drift.py qualifies from that evidence).
    diagnosis = diagnose_with_rules(
        package("AMBIGUOUS_REFERENCE", {"name": "`id`", "referenceNames": "[`o`.`id`, `c`.`id`]"},
                config={"op": "sql", "query": "SELECT id, c.name FROM orders o JOIN customers c ON o.cid = c.id"})
    )
    assert diagnosis.patch is None and "a person picks the side" in diagnosis.reason


@pytest.mark.parametrize(
    "message, key",
    [
        ("Total size of serialized results of 42 tasks (1024.0 MiB) is bigger than spark.driver.maxResultSize", "spark.driver.maxResultSize"),
        ("ExecutorLostFailure (executor 2 exited) Reason: Container killed by YARN for exceeding memory limits", "spark.sql.shuffle.partitions"),
        ("Could not execute broadcast in 300 secs.", "spark.sql.autoBroadcastJoinThreshold"),
    ],
)
def test_resource_failures_change_allowlisted_engine_config(message, key):
    diagnosis = diagnose_with_rules(package(None, {}, message))
    [op] = ops(diagnosis)
    assert op["op"] == "set_engine_config" and op["key"] == key
    assert op["key"] in ENGINE_CONFIG_ALLOWLIST


def test_unknown_failure_is_honestly_no_rule():
    diagnosis = diagnose_with_rules(package("DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE", {}, "sum(event_id) needs NUMERIC"))
    assert diagnosis.patch is None
    assert diagnosis.reason == "no rule for DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE in module 'clean'"


def test_rule_patch_applies_to_the_blueprint_text():
    text = 'aqueduct: "1.0"\nid: bp\nname: x\nmodules:\n  - id: clean\n    type: Channel\n    config:\n      op: sql\n      query: |\n' + "".join(
        f"        {line}\n" for line in QUERY.splitlines()
    )
    diagnosis = diagnose_with_rules(
        package("UNRESOLVED_COLUMN.WITH_SUGGESTION", {"objectName": "`event_ts`", "proposal": "`event_time`, `event_id`"})
    )
    patched = apply_patch_text(text, diagnosis.patch)
    assert "CAST(event_time AS timestamp)" in patched and "query: |" in patched


def test_renamed_column_keeps_the_output_name_for_downstream_modules():
    diagnosis = diagnose_with_rules(
        package(
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            {"objectName": "`amount`", "proposal": "`raw`.`order_amount`, `raw`.`order_id`"},
            config={"op": "sql", "query": "SELECT order_id, r.amount, status\nFROM raw r\nWHERE amount > 0\n"},
        )
    )
    assert ops(diagnosis)[0]["value"] == (
        "SELECT order_id, r.order_amount AS amount, status\nFROM raw r\nWHERE order_amount > 0\n"
    )


def test_a_typo_in_the_module_is_renamed_plainly_when_downstream_reads_the_right_name():
    from aqueduct_dagster.healing.failure import NeighbourModule

    pkg = package(
        "UNRESOLVED_COLUMN.WITH_SUGGESTION",
        {"objectName": "`customer_idd`", "proposal": "`customer_id`, `order_id`"},
        config={"op": "sql", "query": "SELECT order_id, customer_idd FROM raw"},
    )
    pkg.neighbourhood = [NeighbourModule(id="check", type="Assert", role="downstream",
                                         config={"rules": [{"type": "not_null", "column": "customer_id"}]})]  # fmt: skip
    assert ops(diagnose_with_rules(pkg))[0]["value"] == "SELECT order_id, customer_id FROM raw"


SUM_QUERY = "SELECT user_id, SUM(event_id) AS total, sum(e.`event_id`) AS t2, max(event_id) AS m FROM events_raw e GROUP BY user_id"


def test_string_given_to_a_numeric_function_is_cast_to_double():
    # Spark's own parameters, quotes included (recorded from PySpark 4.2).
    diagnosis = diagnose_with_rules(
        package("DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
                {"sqlExpr": '"sum(event_id)"', "paramIndex": "first", "inputSql": '"event_id"',
                 "inputType": '"STRING"', "requiredType": '("NUMERIC" or "INTERVAL DAY TO SECOND" or "INTERVAL")'},
                config={"op": "sql", "query": SUM_QUERY})  # fmt: skip
    )
    assert diagnosis.rule == "string_where_numeric_expected"
    assert ops(diagnosis)[0]["value"] == (
        "SELECT user_id, SUM(CAST(event_id AS DOUBLE)) AS total, sum(CAST(e.`event_id` AS DOUBLE)) AS t2, "
        "max(event_id) AS m FROM events_raw e GROUP BY user_id"
    )
    assert "string" in diagnosis.patch.root_cause


def test_string_where_numeric_expected_reads_the_rendered_message_too():
    message = ('[DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE] Cannot resolve "avg(amount)" due to data type mismatch: '
               'The first parameter requires the ("NUMERIC" or "ANSI INTERVAL") type, however "amount" has the type "STRING".')  # fmt: skip
    diagnosis = diagnose_with_rules(package("DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE", {}, message,
                                            config={"op": "sql", "query": "SELECT avg( amount ) FROM t"}))  # fmt: skip
    assert ops(diagnosis)[0]["value"] == "SELECT avg( CAST(amount AS DOUBLE) ) FROM t"


@pytest.mark.parametrize(
    "params",
    [
        {"sqlExpr": '"upper(array(1, 2))"', "inputSql": '"array(1, 2)"', "inputType": '"ARRAY<INT>"', "requiredType": '"STRING"'},
        {"sqlExpr": '"sum((a || b))"', "inputSql": '"(a || b)"', "inputType": '"STRING"', "requiredType": '"NUMERIC"'},
    ],
)
def test_string_where_numeric_expected_leaves_other_mismatches_alone(params):
    diagnosis = diagnose_with_rules(package("DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE", params,
                                            config={"op": "sql", "query": "SELECT sum(a || b), upper(array(1,2)) FROM t"}))  # fmt: skip
    assert diagnosis.patch is None


DELTA_CHANGED = "Cannot write data as the source schema has changed because the DataFrame schema has been changed"


def test_delta_schema_change_turns_on_merge_schema_for_a_person_to_approve():
    diagnosis = diagnose_with_rules(
        package("INCONSISTENT_BEHAVIOR_CROSS_VERSION", {}, DELTA_CHANGED, module_type="Ingress",
                config={"format": "delta", "path": "data/orders", "options": {"mergeSchema": False}})  # fmt: skip
    )
    assert ops(diagnosis) == [
        {"op": "set_module_config_key", "module_id": "clean", "key": "options.mergeSchema", "value": True}
    ]
    assert diagnosis.patch.confidence < 0.7  # below the default threshold: escalated to a person


@pytest.mark.parametrize(
    "config",
    [
        {"format": "parquet", "path": "data/orders"},
        {"format": "delta", "path": "data/orders", "options": {"mergeSchema": "true"}},
    ],
)
def test_delta_schema_change_needs_a_delta_module_without_merge_schema(config):
    assert diagnose_with_rules(package(None, {}, DELTA_CHANGED, module_type="Egress", config=config)).patch is None
