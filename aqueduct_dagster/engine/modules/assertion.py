"""Assert: data-quality rules on the flowing frame.

Every aggregate rule of one Assert is folded into ONE Spark action (a single `agg`); sampled
null rates share one more action on one sample. `schema_match` reads only the schema.
Failed rules with `on_fail: abort` or `trigger_agent` block the run; `warn`, `quarantine`
and `webhook` are reported and let the data through (the action is kept in each RuleResult;
dagster/webhooks.py posts the webhook, the engine never makes network calls).

Quarantine: the row-level rules (`not_null`, `sql_row`, `freshness` judged per row: older than
`max_age_hours`, or no timestamp) with `on_fail: quarantine` take their
violating rows out of `main` and put them on the `spillway` port with `_aq_error_*` columns, a
row breaking several such rules once, under the first it breaks. Both frames are lazy
filters; the counts (per rule, and rows quarantined in all, which `spillway_rate` judges)
come from the same single `agg`. Without quarantine rules `main` is the input frame itself.
On other rule types `quarantine` has no rows to move and acts like `warn`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import AssertConfig, AssertRule
from aqueduct_dagster.engine.errors import ConditionError, module_failure
from aqueduct_dagster.engine.modules.common import single_input
from aqueduct_dagster.engine.modules.spillway import with_error_columns
from aqueduct_dagster.engine.results import AssertOutcome, ModuleResult, RuleResult
from aqueduct_dagster.engine.types import spark_type_name

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

ROWS = "__aq_rows"
QUARANTINED = "__aq_quarantined"
SAMPLE_SEED = 17

#: Required config keys per rule type.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "min_rows": ("min",),
    "max_rows": ("max",),
    "not_null": ("column",),
    "null_rate": ("column", "max"),
    "schema_match": ("expected",),
    "freshness": ("column", "max_age_hours"),
    "sql": ("expr",),
    "sql_row": ("expr",),
    "spillway_rate": ("max",),
}


@dataclass
class _Plan:
    """What one rule adds to the shared action(s), and how it judges the collected row."""

    columns: dict[str, Column]
    sampled: dict[str, Column]
    judge: Callable[[Row | None, Row | None], RuleResult]


def evaluate_assert(spark: SparkSession, module: CompiledModule, df: DataFrame) -> AssertOutcome:
    """Evaluate every rule of an Assert module on `df`: at most two Spark actions.

    A rule that cannot be evaluated (a missing column, a bad expression) raises ModuleFailed.
    """
    try:
        return _evaluate(module, df)
    except Exception as exc:  # noqa: BLE001 - reported like any module failure
        raise module_failure(module, exc) from exc


def _evaluate(module: CompiledModule, df: DataFrame) -> AssertOutcome:
    from pyspark.sql import functions as F

    config: AssertConfig = module.config
    plans = [_plan(index, rule, df) for index, rule in enumerate(config.rules)]

    main = {alias: column for plan in plans for alias, column in plan.columns.items()}
    sampled = {alias: column for plan in plans for alias, column in plan.sampled.items()}
    quarantine = quarantine_rules(config)
    if quarantine or QUARANTINED in main:
        main[QUARANTINED] = _count_of(_any(violation for _, violation in quarantine))
    actions = 0
    row = sample_row = None
    if main:
        row = df.agg(*[column.alias(alias) for alias, column in main.items()]).collect()[0]
        actions += 1
    if sampled:
        fraction = max(r.fraction for r in config.rules if _is_sampled(r))
        sample = df.sample(fraction=fraction, seed=SAMPLE_SEED)
        sample_row = sample.agg(
            F.count(F.lit(1)).alias(ROWS), *[c.alias(a) for a, c in sampled.items()]
        ).collect()[0]
        actions += 1
    results = [plan.judge(row, sample_row) for plan in plans]
    quarantined = (row[QUARANTINED] or 0) if quarantine else None
    return AssertOutcome(
        module_id=module.id, results=results, actions=actions, quarantined=quarantined
    )


def execute_assertion(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    """The Assert module: evaluate the rules; `main` carries the frame on (less its
    quarantined rows), `spillway` the quarantined rows when there are quarantine rules.

    A blocking outcome is returned, not raised: the runner (or the Dagster check) decides.
    """
    frame = single_input(module, inputs)
    outcome = evaluate_assert(spark, module, frame)
    passed, quarantined = split_quarantine(module, frame)
    metadata: dict[str, Any] = {
        "passed": outcome.passed,
        "blocking": outcome.blocking,
        "failed_rules": [r.name for r in outcome.failed],
        "actions": outcome.actions,
    }
    outputs = {"main": passed}
    if quarantined is not None:
        outputs["spillway"] = quarantined
        metadata["quarantined"] = outcome.quarantined
    return ModuleResult(outputs=outputs, metadata=metadata, assertion=outcome)


def split_quarantine(module: CompiledModule, df: DataFrame) -> tuple[DataFrame, DataFrame | None]:
    """(rows no quarantine rule rejects, the rejected rows with `_aq_error_*` columns).

    Lazy (no Spark job). Without quarantine rules: `(df, None)`, `df` itself.
    """
    from pyspark.sql import functions as F

    rules = quarantine_rules(module.config)
    if not rules:
        return df, None
    rejected = _any(violation for _, violation in rules)

    def first_broken(value_of: Callable[[AssertRule], str]) -> Column:
        # The first quarantine rule a row breaks names it (rules in declaration order).
        column = F.when(rules[0][1], F.lit(value_of(rules[0][0])))
        for rule, violation in rules[1:]:
            column = column.when(violation, F.lit(value_of(rule)))
        return column

    quarantined = with_error_columns(
        df.filter(rejected),
        module_id=module.id,
        rule=first_broken(lambda rule: rule.name),
        error_type=first_broken(lambda rule: rule.error_type or rule.type),
        message=first_broken(_violation_message),
    )
    return df.filter(~rejected), quarantined


def quarantine_rules(config: AssertConfig) -> list[tuple[AssertRule, Column]]:
    """The rules that quarantine rows, each with its (never null) 'row breaks it' column."""
    return [
        (rule, violation)
        for rule in config.rules
        if rule.action == "quarantine" and (violation := _violation(rule)) is not None
    ]


def _violation(rule: AssertRule) -> Column | None:
    from pyspark.sql import functions as F

    if rule.type == "not_null" and rule.column:
        return F.col(rule.column).isNull()
    if rule.type == "sql_row" and rule.expr:
        # Rows where the predicate is false or null break the rule.
        return ~F.coalesce(F.expr(rule.expr), F.lit(False))
    if rule.type == "freshness" and rule.column and rule.max_age_hours is not None:
        # Per row: its own timestamp against the limit; a missing or unreadable one is stale.
        age_micros = F.unix_micros(F.current_timestamp()) - F.unix_micros(
            F.col(rule.column).try_cast("timestamp")
        )
        return F.coalesce(age_micros > F.lit(rule.max_age_hours * 3_600_000_000), F.lit(True))
    return None


def _violation_message(rule: AssertRule) -> str:
    if rule.type == "not_null":
        return f"'{rule.column}' is null"
    if rule.type == "freshness":
        return f"'{rule.column}' is older than {rule.max_age_hours} h (or missing)"
    return f"row breaks `{rule.expr}`"


def _any(columns: Iterable[Column]) -> Column:
    from pyspark.sql import functions as F

    result = F.lit(False)
    for column in columns:
        result = result | column
    return result


def _count_of(condition: Column) -> Column:
    from pyspark.sql import functions as F

    return F.sum(F.when(condition, 1).otherwise(0))


# --------------------------------------------------------------------------- rule plans

Judge = Callable[[bool, Any, Any, str], RuleResult]


def _plan(index: int, rule: AssertRule, df: DataFrame) -> _Plan:
    planner = _PLANNERS.get(rule.type)
    if planner is None:
        raise ConditionError(
            "AQ_ASSERT_RULE_UNSUPPORTED",
            f"rule '{rule.name}': type '{rule.type}' is not evaluated by the Spark engine yet",
            {"rule": rule.name, "type": rule.type},
            hint=f"use one of: {', '.join(_PLANNERS)}",
        )
    missing = [key for key in _REQUIRED[rule.type] if getattr(rule, key) is None]
    if missing:
        raise ConditionError(
            "AQ_ASSERT_RULE_INVALID",
            f"rule '{rule.name}' ({rule.type}) needs {', '.join(missing)}",
            {"rule": rule.name, "type": rule.type, "missing": ", ".join(missing)},
            hint=f"set {' and '.join(missing)} on the rule",
        )

    def result(passed: bool, observed: Any, expected: Any, message: str) -> RuleResult:
        return RuleResult(
            name=rule.name,
            type=rule.type,
            passed=passed,
            action=rule.action,
            observed=observed,
            expected=expected,
            message=message,
            error_type=rule.error_type,
        )

    return planner(f"__aq_r{index}", rule, df, result)


def _row_count() -> dict[str, Column]:
    from pyspark.sql import functions as F

    return {ROWS: F.count(F.lit(1))}


def _null_count(column: str) -> Column:
    from pyspark.sql import functions as F

    return F.sum(F.when(F.col(column).isNull(), 1).otherwise(0))


def _min_rows(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    def judge(row, _):
        count, ok = row[ROWS], row[ROWS] >= rule.min
        verdict = "at least" if ok else "expected at least"
        return result(ok, count, {"min": rule.min}, f"{count} rows, {verdict} {rule.min}")

    return _Plan(_row_count(), {}, judge)


def _max_rows(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    limit = _limit(rule.max)

    def judge(row, _):
        count, ok = row[ROWS], row[ROWS] <= rule.max
        verdict = "at most" if ok else "expected at most"
        return result(ok, count, {"max": limit}, f"{count} rows, {verdict} {limit}")

    return _Plan(_row_count(), {}, judge)


def _not_null(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    def judge(row, _):
        count, total = row[key] or 0, row[ROWS]
        message = f"{count} of {total} rows have a null '{rule.column}', expected none"
        observed = {"nulls": count, "rows": total}
        if rule.action == "quarantine":
            observed["quarantined"] = count
            message += f" ({count} quarantined)" if count else ""
        return result(count == 0, observed, {"nulls": 0}, message)

    return _Plan({**_row_count(), key: _null_count(rule.column)}, {}, judge)


def _null_rate(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    sampled = _is_sampled(rule)

    def judge(row, sample_row):
        source = sample_row if sampled else row
        count, total = source[key] or 0, source[ROWS]
        rate = count / total if total else 0.0
        ok = rate <= rule.max
        where = f" in a {rule.fraction:.0%} sample" if sampled else ""
        verdict = "within" if ok else "expected at most"
        message = f"null rate of '{rule.column}' is {rate:.4g} ({count}/{total}{where}), "
        observed = {"rate": rate, "nulls": count, "rows": total, "sampled": sampled}
        return result(ok, observed, {"max": rule.max}, message + f"{verdict} {rule.max}")

    if sampled:  # the sample's own row count is added by evaluate_assert
        return _Plan({}, {key: _null_count(rule.column)}, judge)
    return _Plan({**_row_count(), key: _null_count(rule.column)}, {}, judge)


def _schema_match(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    # Decided now, from the schema alone: no Spark job.
    actual = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    expected = {str(k): str(v) for k, v in (rule.expected or {}).items()}
    problems: list[str] = []
    observed: dict[str, str | None] = {}
    for column, type_name in expected.items():
        wanted = spark_type_name(type_name)
        found = observed[column] = actual.get(column)
        if found is None:
            problems.append(f"'{column}' is missing")
        elif found.lower() != wanted:
            problems.append(f"'{column}' is {found}, expected {wanted}")
    message = "; ".join(problems) if problems else f"all {len(expected)} columns match"
    verdict = result(not problems, observed, expected, message)
    return _Plan({}, {}, lambda _row, _sample: verdict)


def _freshness(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    from pyspark.sql import functions as F

    newest = F.max(F.col(rule.column))
    age_hours = (
        F.unix_micros(F.current_timestamp()) - F.unix_micros(newest.cast("timestamp"))
    ) / F.lit(3_600_000_000.0)
    expected = {"max_age_hours": rule.max_age_hours}

    def judge(row, _):
        value, hours = row[f"{key}_newest"], row[f"{key}_age"]
        if hours is None:
            message = f"'{rule.column}' has no values, so freshness cannot be shown"
            return result(False, {"newest": None, "age_hours": None}, expected, message)
        ok = hours <= rule.max_age_hours
        verdict = "within" if ok else "expected at most"
        message = f"newest '{rule.column}' ({value}) is {hours:.2f} h old, {verdict} "
        observed = {"newest": value, "age_hours": round(hours, 3)}
        return result(ok, observed, expected, message + f"{rule.max_age_hours} h")

    columns = {f"{key}_newest": newest.cast("string"), f"{key}_age": age_hours}
    return _Plan(columns, {}, judge)


def _sql(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    from pyspark.sql import functions as F

    def judge(row, _):
        value = _plain(row[key])
        return result(value is True, value, True, f"`{rule.expr}` is {value}, expected true")

    return _Plan({key: F.expr(rule.expr)}, {}, judge)


def _sql_row(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    from pyspark.sql import functions as F

    # Rows where the predicate is false or null are violations.
    broken = F.sum(F.when(F.coalesce(F.expr(rule.expr), F.lit(False)), 0).otherwise(1))

    def judge(row, _):
        count, total = row[key] or 0, row[ROWS]
        pass_rate = 1.0 - count / total if total else 1.0
        observed = {"violations": count, "rows": total, "pass_rate": pass_rate}
        head = f"{count} of {total} rows break `{rule.expr}`"
        if rule.action == "quarantine":
            observed["quarantined"] = count
            head += f" ({count} quarantined)" if count else ""
        if rule.min_pass_rate is None:
            return result(count == 0, observed, {"violations": 0}, f"{head}, expected none")
        ok = pass_rate >= rule.min_pass_rate
        verdict = "at least" if ok else "expected at least"
        message = f"{head}: pass rate {pass_rate:.4g}, {verdict} {rule.min_pass_rate}"
        return result(ok, observed, {"min_pass_rate": rule.min_pass_rate}, message)

    return _Plan({**_row_count(), key: broken}, {}, judge)


def _spillway_rate(key: str, rule: AssertRule, df: DataFrame, result: Judge) -> _Plan:
    # The quarantined-rows count is added to the shared agg by _evaluate (0 without
    # quarantine rules): asking for the column here makes sure it is there.
    from pyspark.sql import functions as F

    def judge(row, _):
        count, total = row[QUARANTINED] or 0, row[ROWS]
        rate = count / total if total else 0.0
        ok = rate <= rule.max
        verdict = "within" if ok else "expected at most"
        message = f"{count} of {total} rows quarantined (rate {rate:.4g}), {verdict} {rule.max}"
        observed = {"quarantined": count, "rows": total, "rate": rate}
        return result(ok, observed, {"max": rule.max}, message)

    return _Plan({**_row_count(), QUARANTINED: F.lit(0)}, {}, judge)


#: Rule type -> planner; the rule types the Spark engine evaluates.
_PLANNERS: dict[str, Callable[[str, AssertRule, DataFrame, Judge], _Plan]] = {
    "min_rows": _min_rows,
    "max_rows": _max_rows,
    "not_null": _not_null,
    "null_rate": _null_rate,
    "schema_match": _schema_match,
    "freshness": _freshness,
    "sql": _sql,
    "sql_row": _sql_row,
    "spillway_rate": _spillway_rate,
}


def _is_sampled(rule: AssertRule) -> bool:
    return rule.type == "null_rate" and rule.fraction is not None and 0 < rule.fraction < 1


def _plain(value: Any) -> Any:
    """A JSON-able form of a collected value."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _limit(value: float) -> float | int:
    """A row-count limit as written (`max: 10` arrives as 10.0)."""
    return int(value) if float(value).is_integer() else value
