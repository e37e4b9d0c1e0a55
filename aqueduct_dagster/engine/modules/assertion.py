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

Custom rules (`type: custom`, `fn: quality.check_orders`) call a function of the Blueprint's
author, imported from the Blueprint's folder like a UDF (engine/user_code.py): `fn(df)`
returns `{"passed": bool, "message": str, "quarantine_df": rows to set aside}` (message and
rows optional). Each function runs once per evaluation; the Spark jobs it starts are its own.
With `on_fail: quarantine` its rows leave `main` after the column rules' rows (a row once,
under the first rule that takes it); counting them costs one more action.
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
from aqueduct_dagster.engine.user_code import UserCodeNotFound, blueprint_folder, load_reference

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

ROWS = "__aq_rows"
QUARANTINED = "__aq_quarantined"
SAMPLE_SEED = 17


@dataclass
class _Plan:
    """What one rule adds to the shared action(s), and how it judges the collected row."""

    columns: dict[str, Column]
    sampled: dict[str, Column]
    judge: Callable[[Row | None, Row | None], RuleResult]


def evaluate_assert(
    spark: SparkSession,
    module: CompiledModule,
    df: DataFrame,
    verdicts: Mapping[int, CustomVerdict] | None = None,
) -> AssertOutcome:
    """Evaluate every rule of an Assert module on `df`: at most two Spark actions (three
    with custom quarantine rules). `verdicts`: the custom rules' (see custom_verdicts), when
    the caller already has them.

    A rule that cannot be evaluated (a missing column, a bad expression) raises ModuleFailed.
    """
    try:
        return _evaluate(module, df, custom_verdicts(module, df) if verdicts is None else verdicts)
    except Exception as exc:  # noqa: BLE001 - reported like any module failure
        raise module_failure(module, exc) from exc


def _evaluate(
    module: CompiledModule, df: DataFrame, verdicts: Mapping[int, CustomVerdict]
) -> AssertOutcome:
    from pyspark.sql import functions as F

    config: AssertConfig = module.config
    plans = [_plan(index, rule, df, verdicts.get(index)) for index, rule in enumerate(config.rules)]

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
    quarantined = (row[QUARANTINED] or 0) if quarantine else None
    _, moves = _custom_moves(module, _kept(df, quarantine), verdicts)
    if moves:
        counts = _moved_counts(moves)
        actions += 1
        row = {**(row.asDict() if row is not None else {}), **counts}
        quarantined = (quarantined or 0) + sum(counts.values())
        if QUARANTINED in row:  # what spillway_rate judges: every quarantined row
            row[QUARANTINED] = quarantined
    results = [plan.judge(row, sample_row) for plan in plans]
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
    verdicts = custom_verdicts(module, frame)  # each custom rule's function runs once
    outcome = evaluate_assert(spark, module, frame, verdicts)
    passed, quarantined = split_quarantine(module, frame, verdicts)
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


def split_quarantine(
    module: CompiledModule, df: DataFrame, verdicts: Mapping[int, CustomVerdict] | None = None
) -> tuple[DataFrame, DataFrame | None]:
    """(rows no quarantine rule rejects, the rejected rows with `_aq_error_*` columns).

    Lazy (no Spark job of its own; a custom rule's function may run some, when `verdicts`
    are not given). Without quarantine rules: `(df, None)`, `df` itself.
    """
    if verdicts is None:
        verdicts = custom_verdicts(module, df, quarantine_only=True)
    rules = quarantine_rules(module.config)
    passed, quarantined = _split_by_columns(module, df, rules) if rules else (df, None)
    passed, moves = _custom_moves(module, passed, verdicts)
    for index, verdict, moved in moves:
        rule = module.config.rules[index]
        rows = with_error_columns(
            moved,
            module_id=module.id,
            rule=rule.name,
            error_type=rule.error_type or rule.type,
            message=verdict.message or f"rejected by {rule.fn}",
        )
        quarantined = rows if quarantined is None else quarantined.unionByName(rows)
    return passed, quarantined


def _split_by_columns(
    module: CompiledModule, df: DataFrame, rules: list[tuple[AssertRule, Column]]
) -> tuple[DataFrame, DataFrame]:
    from pyspark.sql import functions as F

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


def _kept(df: DataFrame, quarantine: list[tuple[AssertRule, Column]]) -> DataFrame:
    """The rows no column quarantine rule rejects (lazy)."""
    return df.filter(~_any(violation for _, violation in quarantine)) if quarantine else df


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


def _plan(index: int, rule: AssertRule, df: DataFrame, verdict: CustomVerdict | None) -> _Plan:
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

    key = f"__aq_r{index}"
    if _is_custom(rule):  # its function has already judged the frame
        return _custom(key, rule, verdict, result)
    return _PLANNERS[rule.type](key, rule, df, result)


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


# --------------------------------------------------------------------------- custom rules


@dataclass(frozen=True)
class CustomVerdict:
    """What a custom rule's function said about the frame."""

    passed: bool
    message: str
    quarantine: DataFrame | None


def custom_verdicts(
    module: CompiledModule, df: DataFrame, *, quarantine_only: bool = False
) -> dict[int, CustomVerdict]:
    """Rule index -> the verdict of its function on `df`, for each custom rule (or each one
    with `on_fail: quarantine`)."""
    folder = blueprint_folder(module.location.file if module.location else None)
    return {
        index: _run_custom(rule, df, folder)
        for index, rule in enumerate(module.config.rules)
        if _is_custom(rule) and (rule.action == "quarantine" or not quarantine_only)
    }


def _is_custom(rule: AssertRule) -> bool:
    return rule.type == "custom"


def _run_custom(rule: AssertRule, df: DataFrame, folder: str | None) -> CustomVerdict:
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame

    facts = {"rule": rule.name, "fn": rule.fn}
    try:
        function = load_reference(rule.fn, folder)
    except UserCodeNotFound as error:
        raise ConditionError(
            "AQ_ASSERT_CUSTOM_FN", f"rule '{rule.name}': {error}", facts, hint=error.hint
        ) from None
    if not callable(function):
        raise ConditionError(
            "AQ_ASSERT_CUSTOM_FN", f"rule '{rule.name}': '{rule.fn}' is not a function", facts,
            hint="point fn at a function taking the DataFrame",
        )  # fmt: skip
    try:
        answer = function(df)
    except PySparkException:
        raise  # Spark's own error (a missing column...): classified like any other
    except Exception as error:  # noqa: BLE001 - the author's code: say whose it is
        raise ConditionError(
            "AQ_ASSERT_CUSTOM_FAILED",
            f"rule '{rule.name}': {rule.fn}(df) raised {type(error).__name__}: {error}",
            facts,
            hint=f"fix {rule.fn} (the Blueprint author's code: a heal never changes it)",
        ) from error
    quarantine = answer.get("quarantine_df") if isinstance(answer, Mapping) else None
    if (
        not isinstance(answer, Mapping)
        or not isinstance(answer.get("passed"), bool)
        or not (quarantine is None or isinstance(quarantine, DataFrame))
    ):
        raise ConditionError(
            "AQ_ASSERT_CUSTOM_RESULT",
            f"rule '{rule.name}': {rule.fn}(df) returned {_shape(answer)}",
            facts,
            hint="return {'passed': True/False, 'message': '...', 'quarantine_df': rows of df "
            "(optional, for on_fail: quarantine)}",
        )
    return CustomVerdict(answer["passed"], str(answer.get("message") or ""), quarantine)


def _shape(answer: Any) -> str:
    if not isinstance(answer, Mapping):
        return f"a {type(answer).__name__}, not a dict"
    if not isinstance(answer.get("passed"), bool):
        return f"a dict whose 'passed' is {answer.get('passed')!r}, not True or False"
    return f"a 'quarantine_df' that is a {type(answer['quarantine_df']).__name__}, not a DataFrame"


def _custom_moves(
    module: CompiledModule, kept: DataFrame, verdicts: Mapping[int, CustomVerdict]
) -> tuple[DataFrame, list[tuple[int, CustomVerdict, DataFrame]]]:
    """(what stays, [(rule index, verdict, rows it moves)]): each custom quarantine rule in
    order takes its rows still in `kept` (lazy). Rows the function returns that are not
    rows of the input (or were taken already) are never moved."""
    from pyspark.sql import functions as F

    moves = []
    for index, verdict in sorted(verdicts.items()):
        rule = module.config.rules[index]
        if rule.action != "quarantine":
            continue
        if verdict.quarantine is None:
            moves.append((index, verdict, kept.limit(0)))
            continue
        missing = [c for c in kept.columns if c not in verdict.quarantine.columns]
        if missing:
            raise ConditionError(
                "AQ_ASSERT_CUSTOM_RESULT",
                f"rule '{rule.name}': quarantine_df lacks the input's column(s) {', '.join(missing)}",
                {"rule": rule.name, "fn": rule.fn, "missing": ", ".join(missing)},
                hint="return rows of the input frame, e.g. df.filter(...)",
            )
        same_columns = verdict.quarantine.select(
            *[F.col("`" + c.replace("`", "``") + "`") for c in kept.columns]
        )
        moved = same_columns.intersectAll(kept)
        kept = kept.exceptAll(moved)
        moves.append((index, verdict, moved))
    return kept, moves


def _moved_counts(moves: list[tuple[int, CustomVerdict, DataFrame]]) -> dict[str, int]:
    """`__aq_r<index>_quarantined` -> rows each custom rule moves, in one Spark action."""
    from functools import reduce

    from pyspark.sql import functions as F

    tagged = [moved.select(F.lit(index).alias("rule")) for index, _, moved in moves]
    found = reduce(lambda a, b: a.unionByName(b), tagged).groupBy("rule").count().collect()
    counts = {row["rule"]: row["count"] for row in found}
    return {f"__aq_r{index}_quarantined": counts.get(index, 0) for index, _, _ in moves}


def _custom(key: str, rule: AssertRule, verdict: CustomVerdict, result: Judge) -> _Plan:
    def judge(row, _):
        observed: dict[str, Any] = {"passed": verdict.passed}
        message = verdict.message or f"{rule.fn}(df) says {'pass' if verdict.passed else 'fail'}"
        if rule.action == "quarantine":
            count = observed["quarantined"] = row[f"{key}_quarantined"]
            message += f" ({count} quarantined)" if count else ""
        return result(verdict.passed, observed, {"passed": True}, message)

    return _Plan({}, {}, judge)


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
