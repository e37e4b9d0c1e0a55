"""Error extraction: real Spark failures, the transient classifier, signatures."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from aqueduct_dagster.engine.errors import (
    AssertionFailed,
    ConditionError,
    FailureRecord,
    ModuleFailed,
    SparkErrorInfo,
    extract_spark_error,
    is_transient,
    telling_index,
)
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.results import AssertOutcome, RuleResult
from aqueduct_dagster.engine.session import run_session

#: Real PySpark 4.2 exceptions, recorded in the shared folder beside the repository.
REFERENCE = next(
    (
        path
        for path in (
            Path(__file__).resolve().parents[3] / "shared/reference/spark-4.2-errors.jsonl",
            Path("/work/shared/reference/spark-4.2-errors.jsonl"),
        )
        if path.exists()
    ),
    Path("/work/shared/reference/spark-4.2-errors.jsonl"),
)


def _info(**overrides) -> SparkErrorInfo:
    fields = {
        "exception_class": "AnalysisException",
        "condition": "UNRESOLVED_COLUMN.WITH_SUGGESTION",
        "sqlstate": "42703",
        "message_parameters": {"objectName": "`nme`", "proposal": "`name`, `id`"},
        "message": "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column ... `nme` cannot be resolved.",
        "java_class": "org.apache.spark.sql.catalyst.ExtendedAnalysisException",
        "cause_chain": ["org.apache.spark.sql.catalyst.ExtendedAnalysisException: ..."],
        "transient": False,
    }
    fields.update(overrides)
    return SparkErrorInfo(**fields)


# --------------------------------------------------------------------------- no Spark needed


@pytest.mark.parametrize(
    ("fields", "transient"),
    [
        (
            {"exception_class": "Py4JNetworkError", "message": "Answer from Java side is empty"},
            True,
        ),
        (
            {
                "exception_class": "ConnectionRefusedError",
                "message": "[Errno 111] Connection refused",
            },
            True,
        ),
        ({"exception_class": "Py4JJavaError", "message": "Connection reset by peer"}, True),
        (
            {
                "exception_class": "Py4JJavaError",
                "cause_chain": ["org.apache.spark.shuffle.FetchFailedException: Failed to connect"],
            },
            True,
        ),
        (
            {
                "exception_class": "Py4JJavaError",
                "message": "ExecutorLostFailure (executor 3 exited) Reason: Executor heartbeat "
                "timed out after 120000 ms",
            },
            True,
        ),
        (
            {
                "exception_class": "Py4JJavaError",
                "message": "ExecutorLostFailure (executor 3 exited) Reason: Container killed by "
                "YARN for exceeding memory limits",
            },
            False,
        ),
        (
            {
                "exception_class": "Py4JJavaError",
                "java_class": "java.lang.OutOfMemoryError",
                "message": "Java heap space",
            },
            False,
        ),
        (
            {
                "exception_class": "AnalysisException",
                "condition": "PATH_NOT_FOUND",
                "sqlstate": "42K03",
                "message": "Path does not exist",
            },
            False,
        ),
        (
            {
                "exception_class": "NumberFormatException",
                "condition": "CAST_INVALID_INPUT",
                "sqlstate": "22018",
                "message": "cannot be cast",
            },
            False,
        ),
        ({"exception_class": "ValueError", "message": "bad value"}, False),
    ],
)
def test_transient_classifier(fields, transient):
    assert is_transient(**fields) is transient


def test_signature_keeps_condition_and_parameter_names_but_no_values():
    first = _info()
    second = _info(message_parameters={"objectName": "`amount`", "proposal": "`d`"})
    assert first.signature() == "UNRESOLVED_COLUMN.WITH_SUGGESTION[objectName,proposal]"
    assert first.signature() == second.signature()
    assert "nme" not in first.signature()
    other = _info(condition="PATH_NOT_FOUND", message_parameters={"path": "/x"})
    assert other.signature() != first.signature()


def test_signature_without_condition_uses_the_java_class():
    info = _info(
        condition=None,
        sqlstate=None,
        message_parameters={},
        java_class="java.lang.OutOfMemoryError",
    )
    assert info.signature() == "java.lang.OutOfMemoryError[]"


def test_error_info_round_trips_through_a_dict():
    info = _info(query_context=[{"fragment": "nme"}])
    data = json.loads(json.dumps(info.to_dict()))
    assert data["signature"] == info.signature()
    assert SparkErrorInfo.from_dict(data) == info


def test_failure_record_round_trips_through_json_as_the_same_type():
    record = FailureRecord(module_id="clean", error=_info(query_context=[{"fragment": "nme"}]),
                           message="boom", input_schemas={"raw": [("id", "int")]})  # fmt: skip
    back = FailureRecord.from_json(record.to_json())
    assert back == record and isinstance(back.error, SparkErrorInfo)
    assert FailureRecord.from_json(json.loads(record.to_json())) == record  # as Dagster's JSON metadata returns it
    assert back.input_schemas == {"raw": [["id", "int"]]}
    # Event logs written before the record kept the facts under "spark".
    legacy = {"module_id": "clean", "message": "boom", "spark": _info().to_dict(), "input_schemas": {}}
    assert FailureRecord.from_json(legacy).error == _info()


def test_one_signature_function_scoped_or_not():
    info = _info()
    assert info.signature() == "UNRESOLVED_COLUMN.WITH_SUGGESTION[objectName,proposal]"
    scoped = info.signature(blueprint_id="orders", module_id="clean")
    assert scoped.startswith("UNRESOLVED_COLUMN.WITH_SUGGESTION:clean:") and "nme" not in scoped
    assert scoped == FailureRecord(module_id="clean", error=info).signature("orders")
    assert scoped != info.signature(blueprint_id="other", module_id="clean")


def test_an_assert_trigger_is_a_record_too():
    record = FailureRecord.for_assert("quality", [{"name": "min_rows", "action": "trigger_agent", "message": "0 rows"}])
    assert (record.trigger, record.error.condition, record.error.message) == ("assert", "AQ_ASSERT_FAILED", "0 rows")
    assert FailureRecord.from_json(record.to_json()) == record


def test_telling_index_prefers_the_cause_of_a_wrapper_condition():
    assert telling_index(["FAILED_READ_FILE.NO_HINT", "MALFORMED_RECORD_IN_PARSING", None]) == 1
    assert telling_index(["CANNOT_MERGE_SCHEMAS", "CANNOT_MERGE_INCOMPATIBLE_DATA_TYPE"]) == 0
    assert telling_index(["TASK_WRITE_FAILED"]) == 0
    assert telling_index([None, None]) is None


def test_plain_python_and_condition_errors_are_extracted():
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as exc:
        info = extract_spark_error(exc)
    assert (info.exception_class, info.condition, info.transient) == ("ValueError", None, False)
    assert info.cause_chain == ["ValueError: outer", "KeyError: 'inner'"]

    ours = extract_spark_error(ConditionError("AQ_X", "went wrong", {"key": "path"}))
    assert (ours.condition, ours.message_parameters) == ("AQ_X", {"key": "path"})
    assert ours.message.startswith("[AQ_X] went wrong")


def test_module_failed_carries_the_error_and_its_transience():
    failure = ModuleFailed("clean", _info(), hint="check the column")
    assert "module 'clean'" in str(failure)
    assert "UNRESOLVED_COLUMN.WITH_SUGGESTION" in str(failure)
    assert "hint: check the column" in str(failure)
    assert failure.transient is False
    assert ModuleFailed("x", _info(transient=True)).transient is True
    data = failure.to_dict()
    assert data["spark_error"]["condition"] == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert data["spark_error"]["message_parameters"]["objectName"] == "`nme`"
    assert data["spark_error"]["signature"] == _info().signature()
    assert data["module_id"] == "clean"
    copy = pickle.loads(pickle.dumps(failure))
    assert (copy.module_id, copy.error, copy.hint) == ("clean", failure.error, failure.hint)


def test_assertion_failed_names_module_and_rules():
    rule = RuleResult(
        "min_rows", "min_rows", False, "abort", 0, {"min": 1}, "0 rows, expected at least 1"
    )
    error = AssertionFailed("quality", AssertOutcome("quality", [rule]))
    assert "module 'quality'" in str(error) and "min_rows" in str(error)
    assert error.transient is False
    assert error.to_dict()["outcome"]["blocking"] is True
    assert pickle.loads(pickle.dumps(error)).outcome.results[0].name == "min_rows"


def _reference_records() -> list[dict]:
    return [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]


def _record_to_info(record: dict) -> SparkErrorInfo:
    """The record as extract_spark_error would see it (the exceptions cannot be rebuilt)."""
    chain = record.get("java_chain") or []
    present = lambda v: None if v in (None, "<absent>") else v  # noqa: E731
    condition, sqlstate = present(record["getCondition"]), present(record["getSqlState"])
    parameters = present(record["getMessageParameters"]) or {}
    if condition is None and chain:
        index = telling_index([link.get("condition") for link in chain])
        if index is not None:
            condition, sqlstate = chain[index]["condition"], chain[index]["sql_state"]
    texts = [f"{link['java_class']}: {link['message_head']}" for link in chain]
    message = "\n".join(h for h in record["getMessage_head"] if h != "<absent>") or "\n".join(
        record["str_head"]
    )
    exception_class = record["py_exception_class"].rsplit(".", 1)[-1]
    java_class = chain[0]["java_class"] if chain else None
    return SparkErrorInfo(
        exception_class=exception_class,
        condition=condition,
        sqlstate=sqlstate,
        message_parameters=parameters,
        message=message,
        java_class=java_class,
        cause_chain=texts,
        transient=is_transient(
            exception_class=exception_class,
            condition=condition,
            sqlstate=sqlstate,
            message=message,
            cause_chain=texts,
            java_class=java_class,
        ),
    )


@pytest.mark.skipif(not REFERENCE.exists(), reason="the PySpark 4.2 error reference is not here")
def test_reference_errors_classify_and_sign_as_expected():
    infos = {record["case"]: _record_to_info(record) for record in _reference_records()}
    transient = sorted(case for case, info in infos.items() if info.transient)
    # Only the JVM dying under Python (a refused socket) is worth a retry.
    assert transient == ["java.lang.OutOfMemoryError (task, collect_list agg)"]
    assert infos["MALFORMED_RECORD_IN_PARSING (FAILFAST json)"].condition.startswith(
        "MALFORMED_RECORD_IN_PARSING"
    )
    for case, info in infos.items():
        for value in info.message_parameters.values():
            if len(value) > 3:
                assert value not in info.signature(), case
    by_signature: dict[str, set[str]] = {}
    for info in infos.values():
        by_signature.setdefault(info.signature(), set()).add(info.condition or "")
    # One signature never mixes two conditions.
    assert all(len(conditions) == 1 for conditions in by_signature.values())


# --------------------------------------------------------------------------- real Spark failures


def _unresolved_column(spark, people):
    people.select("nme").collect()


def _path_not_found(spark, tmp_path):
    # `.schema`: a Spark Connect frame is analysed only when asked (classic: already done).
    _ = spark.read.parquet(str(tmp_path / "missing")).schema


def _csv_read_as_parquet(spark, tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    _ = spark.read.parquet(str(path)).schema


def _cast_invalid_input(spark, _):
    spark.range(3).selectExpr("CAST(concat('x', id) AS INT) AS v").collect()


def _divide_by_zero(spark, _):
    spark.range(3).selectExpr("10 div (id - id) AS v").collect()


def _ambiguous_reference(spark, people):
    other = people.select("id", "name")
    people.alias("a").join(other.alias("b"), "name").select("id").collect()


@pytest.mark.parametrize(
    ("provoke", "condition", "sqlstate", "keys"),
    [
        (
            _unresolved_column,
            "UNRESOLVED_COLUMN.WITH_SUGGESTION",
            "42703",
            {"objectName", "proposal"},
        ),
        (_path_not_found, "PATH_NOT_FOUND", "42K03", {"path"}),
        (
            _cast_invalid_input,
            "CAST_INVALID_INPUT",
            "22018",
            {"expression", "sourceType", "targetType", "ansiConfig"},
        ),
        (_divide_by_zero, "DIVIDE_BY_ZERO", "22012", {"config"}),
        (_ambiguous_reference, "AMBIGUOUS_REFERENCE", "42704", {"name", "referenceNames"}),
    ],
)
def test_real_failures_are_extracted(
    run_spark, people, tmp_path, provoke, condition, sqlstate, keys
):
    argument = tmp_path if provoke in (_path_not_found, _csv_read_as_parquet) else people
    with pytest.raises(Exception) as caught:
        provoke(run_spark, argument)
    info = extract_spark_error(caught.value)
    assert (info.condition, info.sqlstate) == (condition, sqlstate)
    assert set(info.message_parameters) == keys
    assert info.transient is False
    assert info.java_class and info.java_class.startswith("org.apache.spark")
    assert info.cause_chain and info.cause_chain[0].startswith(info.java_class)
    assert condition in info.message


def test_unresolved_column_details(run_spark, people):
    with pytest.raises(Exception) as caught:
        _ = people.select("nme").schema
    info = extract_spark_error(caught.value)
    assert info.message_parameters["objectName"] == "`nme`"
    assert "`name`" in info.message_parameters["proposal"]
    assert info.signature() == "UNRESOLVED_COLUMN.WITH_SUGGESTION[objectName,proposal]"


@pytest.mark.classic_only(reason="a raw Py4JJavaError only exists with a JVM in this process")
def test_raw_py4j_error_is_read_through_the_java_cause_chain(run_spark, tmp_path):
    from py4j.protocol import Py4JJavaError

    with pytest.raises(Py4JJavaError) as caught:
        _csv_read_as_parquet(run_spark, tmp_path)
    info = extract_spark_error(caught.value)
    assert info.exception_class == "Py4JJavaError"
    assert info.condition.startswith("FAILED_READ_FILE")
    assert info.sqlstate is not None
    assert info.java_class == "org.apache.spark.SparkException"
    assert not info.message.startswith("An error occurred while calling")


def test_python_udf_failure_keeps_the_python_exception_class(run_spark):
    from pyspark.sql import functions as F

    @F.udf("int")
    def broken(value):
        return int("not-a-number")

    with pytest.raises(Exception) as caught:
        run_spark.range(1).select(broken("id")).collect()
    info = extract_spark_error(caught.value)
    assert info.condition == "PYTHON_EXCEPTION"
    assert info.signature() == "PYTHON_EXCEPTION:ValueError[msg,traceback]"
    assert "invalid literal" in info.message


def test_execute_module_wraps_spark_failures_with_module_and_hint(run_spark, people, module):
    channel = module(
        "Channel", "adults", {"op": "filter", "condition": "agee > 18"}, inputs=("people",)
    )
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, channel, {"people": people})
    failure = caught.value
    assert failure.module_id == "adults"
    assert failure.error.condition == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert "[UNRESOLVED_COLUMN.WITH_SUGGESTION]" in str(failure)
    assert "Spark suggests" in failure.hint and "`age`" in failure.hint
    assert failure.transient is False


def test_missing_view_hint_lists_the_inputs(run_spark, people, module):
    channel = module("Channel", "report", {"query": "SELECT * FROM peple"}, inputs=("people",))
    with pytest.raises(ModuleFailed) as caught:
        execute_module(run_spark, channel, {"people": people})
    assert caught.value.error.condition == "TABLE_OR_VIEW_NOT_FOUND"
    assert "people" in caught.value.hint


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_connect_errors_match_classic_ones(spark, request, tmp_path):
    """Real failures on both kinds give the same condition, SQLSTATE and parameters.

    Runs in the [classic] turn, against the session's Connect server too. Classic and Connect
    frames cannot be used in one process at the same moment (pyspark's API switch), so each
    side provokes its errors in turn.
    """
    from aqueduct_dagster.engine.session import create_base_session, use_api_of
    from tests.conftest import SPARK_MODES

    if "connect" not in SPARK_MODES:
        pytest.skip("AQUEDUCT_TEST_SPARK_MODES leaves Spark Connect out")
    server = request.getfixturevalue("connect_server")
    sessions = {"classic": run_session(spark)}

    def provoked(kind):
        session = sessions[kind]
        use_api_of(session)
        people = session.createDataFrame([(1, "ann")], "id BIGINT, name STRING")
        failures = {}
        for name, provoke in (
            ("unresolved", lambda: people.select("nme").schema),
            ("path", lambda: _path_not_found(session, tmp_path)),
            ("cast", lambda: _cast_invalid_input(session, None)),
            ("divide", lambda: _divide_by_zero(session, None)),
        ):
            with pytest.raises(Exception) as caught:
                provoke()
            failures[name] = extract_spark_error(caught.value)
        return failures

    try:
        on_classic = provoked("classic")
        sessions["connect"] = run_session(create_base_session(master=server.url))
        on_connect = provoked("connect")
    finally:
        use_api_of(spark)
    for name, expected in on_classic.items():
        got = on_connect[name]
        assert got.exception_class == expected.exception_class, name
        assert (got.condition, got.sqlstate) == (expected.condition, expected.sqlstate), name
        assert set(got.message_parameters) == set(expected.message_parameters), name
        if name != "cast":  # which bad row fails first is up to the tasks' timing
            assert got.message_parameters == expected.message_parameters, name
        assert got.signature() == expected.signature(), name
        assert got.java_class == expected.java_class, name
        assert got.transient is expected.transient is False
    unresolved = on_connect["unresolved"]
    assert unresolved.condition == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert unresolved.message_parameters["objectName"] == "`nme`"
    assert "`name`" in unresolved.message_parameters["proposal"]
