"""`*.aqtest.yml`: unit tests for single modules against inline rows.

The blueprint is compiled first (macros, context and `@aq.*` functions resolved, as in a real
run), then the module under test runs on Spark with in-memory inputs built from the rows.
Assertions: `row_count`, `contains` (partial rows, order-free, null means IS NULL), `sql`
(first column of the first row of a query over the view `__output__` must be truthy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_blueprint
from aqueduct_dagster.blueprint.models import module_types_where
from aqueduct_dagster.errors import AqueductError, SourceLocation

#: The module types an aqtest runs alone on inline rows.
TESTABLE_TYPES = module_types_where(lambda model: model.testable_alone)
_TYPE_NAMES = {
    "long": "bigint", "int": "int", "integer": "int", "short": "smallint", "byte": "tinyint",
    "double": "double", "float": "float", "string": "string", "bool": "boolean", "boolean": "boolean",
    "timestamp": "timestamp", "date": "date", "binary": "binary", "decimal": "decimal(10,0)",
}  # fmt: skip


class AqTestError(AqueductError):
    """An aqtest file is invalid (names the file, the test and the fix)."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputFrame(Strict):
    schema_: dict[str, str] = Field(alias="schema")
    rows: list[list[Any]] = Field(default_factory=list)


class RowCount(Strict):
    type: Literal["row_count"]
    expected: int


class Contains(Strict):
    type: Literal["contains"]
    rows: list[dict[str, Any]]


class SqlAssertion(Strict):
    type: Literal["sql"]
    expr: str


class TestCase(Strict):
    id: str = "(unnamed)"
    module: str
    inputs: dict[str, InputFrame] = Field(default_factory=dict)
    branch: str | None = None
    assertions: list[RowCount | Contains | SqlAssertion] = Field(min_length=1)


class AqTestFile(Strict):
    aqueduct_test: str
    blueprint: str
    tests: list[TestCase] = Field(min_length=1)


@dataclass
class CaseResult:
    test_id: str
    module: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    rows: int | None = None


def load_aqtest(path: str | Path) -> AqTestFile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise AqTestError(f"cannot read the aqtest file: {error}", location=SourceLocation(str(path))) from None
    try:
        return AqTestFile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise AqTestError(f"{where}: {first['msg']}", location=SourceLocation(str(path)),
                          hint="see the aqtest format: aqueduct_test, blueprint, tests[id, module, inputs, assertions]") from None  # fmt: skip


def run_aqtest_file(path: str | Path, spark: Any, *, blueprint: str | Path | None = None,
                    context_overrides: Mapping[str, Any] | None = None) -> list[CaseResult]:  # fmt: skip
    """Run every case of one aqtest file; blueprint errors raise, assertion failures report."""
    path = Path(path)
    spec = load_aqtest(path)
    blueprint_path = Path(blueprint) if blueprint else (path.parent / spec.blueprint)
    manifest = compile_blueprint(blueprint_path, context_overrides=context_overrides)
    return [run_case(case, manifest, spark, source=path) for case in spec.tests]


def run_case(case: TestCase, manifest: Any, spark: Any, *, source: Path) -> CaseResult:
    from aqueduct_dagster.engine import execute_module

    if case.module not in manifest.modules:
        from difflib import get_close_matches

        close = get_close_matches(case.module, list(manifest.modules), n=1)
        raise AqTestError(
            f"test '{case.id}': no module '{case.module}' in blueprint '{manifest.blueprint_id}'",
            location=SourceLocation(str(source)), hint=f"did you mean '{close[0]}'?" if close else None,
        )  # fmt: skip
    from datetime import datetime

    from aqueduct_dagster.engine.udfs import register_udfs

    bound = bind_runtime(manifest, RunInfo(run_id="aqtest", started_at=datetime.now(UTC)))
    register_udfs(spark, bound)
    module = bound.module(case.module)
    if not module.testable_alone:
        raise AqTestError(
            f"test '{case.id}': module '{case.module}' is a {module.type}; aqtests run {', '.join(TESTABLE_TYPES)}",
            location=SourceLocation(str(source)),
        )  # fmt: skip
    frames = {}
    for module_input in module.inputs:
        given = case.inputs.get(module_input.source) or case.inputs.get(module_input.alias)
        if given is None:
            raise AqTestError(
                f"test '{case.id}': module '{case.module}' reads '{module_input.source}' but the test gives no rows for it",
                location=SourceLocation(str(source)), hint=f"add inputs.{module_input.source} with schema and rows",
            )  # fmt: skip
        frames[module_input.alias] = _frame(spark, given)
    result = execute_module(spark, module, frames)
    port = case.branch or ("main" if "main" in result.outputs else next(iter(result.outputs), "main"))
    output = result.outputs.get(port)
    if output is None:
        return CaseResult(case.id, case.module, False, [f"the module produced no '{port}' output"])
    failures = _check(spark, output, case.assertions)
    return CaseResult(case.id, case.module, not failures, failures, rows=output.count())


def _frame(spark: Any, given: InputFrame) -> Any:
    ddl = ", ".join(f"`{name}` {_TYPE_NAMES.get(kind.lower(), kind)}" for name, kind in given.schema_.items())
    return spark.createDataFrame([tuple(row) for row in given.rows], schema=ddl)


def _check(spark: Any, output: Any, assertions: Sequence[Any]) -> list[str]:
    failures: list[str] = []
    rows = [row.asDict() for row in output.collect()]
    for assertion in assertions:
        if isinstance(assertion, RowCount):
            if len(rows) != assertion.expected:
                failures.append(f"row_count: expected {assertion.expected}, got {len(rows)}")
        elif isinstance(assertion, Contains):
            for wanted in assertion.rows:
                if not any(_matches(row, wanted) for row in rows):
                    failures.append(f"contains: no output row matches {wanted} (output: {rows[:5]})")
        else:
            view = "__output__"
            session = output.sparkSession
            output.createOrReplaceTempView(view)
            try:
                value = session.sql(assertion.expr).first()
            except Exception as error:  # noqa: BLE001 - a bad query is a failed assertion
                failures.append(f"sql: {assertion.expr!r} failed: {str(error).splitlines()[0]}")
                continue
            finally:
                session.catalog.dropTempView(view)
            if value is None or not value[0]:
                failures.append(f"sql: {assertion.expr!r} is not true (got {None if value is None else value[0]!r})")
    return failures


def _matches(row: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key, expected in wanted.items():
        if key not in row:
            return False
        actual = row[key]
        if expected is None:
            if actual is not None:
                return False
        elif isinstance(expected, float) and isinstance(actual, (int, float)):
            if not math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif isinstance(expected, (bool, int)):
            if actual != expected:
                return False
        elif str(actual) != str(expected):  # dates, timestamps, decimals compare as text
            return False
    return True


def find_aqtests(root: str | Path) -> list[Path]:
    root = Path(root)
    return [root] if root.is_file() else sorted(root.rglob("*.aqtest.yml"))
