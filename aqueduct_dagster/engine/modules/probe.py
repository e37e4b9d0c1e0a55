"""Probe: observability signals on the frame it is attached to. It never fails the run.

Every signal becomes one JSON-able entry::

    {"id", "type", "value", "sampled": bool, "fraction": float | None,
     "passed": bool        # threshold, and custom signals with `passed_when`
     "error": str          # instead of value/passed when the signal could not be computed
     ...}                  # a few type-specific facts (method, sample_count, n, note)

Spark actions, batched: all aggregate signals that read the same sample fraction share ONE
`agg` (so does the full frame: `data_freshness`, `threshold`, custom `sql`/`passed_when`, and
any signal with `fraction` >= 1 or <= 0); `sample_rows` signals share one bounded
`limit(n).collect()`; `schema_snapshot` and `partition_stats` read only the plan. So a Probe
runs (distinct fractions) + (1 if any full-frame aggregate) + (1 if any sample_rows) actions,
plus whatever a custom callable signal runs itself. `metadata["actions"]` says how many.

Samples are `df.sample(fraction, seed=17)`: repeatable, but still a full read of the input
(sampling drops rows after the scan).
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import ProbeConfig, ProbeSignal
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import ConditionError, extract_spark_error
from aqueduct_dagster.engine.modules.common import analysed, single_input
from aqueduct_dagster.engine.results import ModuleResult

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

log = logging.getLogger(__name__)

SAMPLE_SEED = 17
DEFAULT_FRACTION = 0.1
DEFAULT_SAMPLE_ROWS = 10
DEFAULT_PERCENTILES = (0.25, 0.5, 0.75)
#: The batch key of aggregates over the whole frame.
FULL = 1.0
ROWS = "__aq_rows"
#: Entry-point group of installable custom signals (`type: custom, plugin: <name>`).
PLUGIN_GROUP = "aqueduct.probe_signals"


def execute_probe(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    """The Probe module: no output frames, its signals in `metadata["signals"]`."""
    config: ProbeConfig = module.config
    try:
        frame = single_input(module, inputs)
    except ConditionError as error:  # even unwired, a Probe reports rather than fails
        signals = [
            _failed(_entry(signal, index, config.signals), error)
            for index, signal in enumerate(config.signals)
        ]
        return ModuleResult(outputs={}, metadata={"signals": signals, "actions": 0})
    signals, actions = probe_signals(module, frame)
    metadata: dict[str, Any] = {
        "signals": signals,
        "actions": actions,
        "attach_to": getattr(module.spec, "attach_to", None),
    }
    if config.report == "stdout":
        for entry in signals:
            log.info("Probe '%s' %s", module.id, _report_line(entry))
    return ModuleResult(outputs={}, metadata=metadata)


def probe_signals(module: CompiledModule, frame: DataFrame) -> tuple[list[dict[str, Any]], int]:
    """Compute every signal of a Probe on `frame`: (entries in config order, Spark actions).

    Never raises: a signal that fails is reported with `error` in its entry.
    """
    config: ProbeConfig = module.config
    plans: list[_Plan] = []
    for index, signal in enumerate(config.signals):
        entry = _entry(signal, index, config.signals)
        try:
            plans.append(_plan(signal, entry, frame, f"__aq_s{index}"))
        except Exception as exc:  # noqa: BLE001 - a Probe never fails the run
            plans.append(_Plan(_failed(entry, exc)))
    actions = _run_batches(frame, plans)
    actions += _run_sample_rows(frame, plans)
    for plan in plans:
        if plan.call is not None and "error" not in plan.entry:
            try:
                plan.call()
            except Exception as exc:  # noqa: BLE001
                _failed(plan.entry, exc)
    return [_plain(plan.entry) for plan in plans], actions


# --------------------------------------------------------------------------- plans


@dataclass
class _Plan:
    """One signal: its entry (filled in as results arrive) and what it needs computed."""

    entry: dict[str, Any]
    #: Batch key (a sample fraction, or FULL) -> aggregate columns this signal adds to it.
    batch: float | None = None
    columns: dict[str, Column] = field(default_factory=dict)
    judge: Callable[[Row], None] | None = None
    #: sample_rows: how many rows it wants; `take` fills the entry from the shared rows.
    rows_wanted: int | None = None
    take: Callable[[list[Row]], None] | None = None
    #: custom callables: run after the batches, on the driver.
    call: Callable[[], None] | None = None


def _entry(signal: ProbeSignal, index: int, signals: list[ProbeSignal]) -> dict[str, Any]:
    same_type = [s for s in signals if s.id is None and s.type == signal.type]
    default_id = signal.type if len(same_type) <= 1 else f"{signal.type}_{index + 1}"
    return {"id": signal.id or default_id, "type": signal.type, "sampled": False, "fraction": None}


def _failed(entry: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    info = extract_spark_error(exc)
    text = info.message or str(exc) or info.exception_class
    head = info.condition or info.exception_class
    entry["error"] = text if text.startswith(f"[{head}]") else f"[{head}] {text}"
    entry.pop("value", None)
    entry.pop("passed", None)
    return entry


def _fraction(signal: ProbeSignal) -> float:
    """The sample fraction a signal reads; FULL when it reads the whole frame."""
    fraction = DEFAULT_FRACTION if signal.fraction is None else float(signal.fraction)
    return FULL if fraction <= 0 or fraction >= 1 else fraction


def _in_batch(entry: dict[str, Any], fraction: float) -> float:
    entry["sampled"] = fraction != FULL
    entry["fraction"] = None if fraction == FULL else fraction
    return fraction


def _plan(signal: ProbeSignal, entry: dict[str, Any], frame: DataFrame, key: str) -> _Plan:
    planner = _PLANNERS.get(signal.type)
    if planner is None:
        raise ConditionError(
            "AQ_PROBE_SIGNAL_UNKNOWN",
            f"unknown signal type '{signal.type}'{did_you_mean(signal.type, _PLANNERS)}",
            {"type": signal.type},
            hint=f"use one of: {', '.join(_PLANNERS)}",
        )
    plan = planner(signal, entry, frame, key)
    if plan.columns:
        # Analyse this signal's aggregates alone (no Spark job), so that one bad expression
        # is reported on its own signal instead of sinking the whole batch.
        analysed(frame.agg(*[column.alias(alias) for alias, column in plan.columns.items()]))
    return plan


def _schema_snapshot(signal, entry, frame, key) -> _Plan:
    entry["value"] = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    return _Plan(entry)


def _partition_stats(signal, entry, frame, key) -> _Plan:
    from aqueduct_dagster.engine.session import is_connect

    if not is_connect(frame.sparkSession):
        # Planning the RDD's partitions lists the input files at most; it runs no Spark job.
        entry["value"] = {"num_partitions": frame.rdd.getNumPartitions()}
        return _Plan(entry)
    from pyspark.sql import functions as F

    # Spark Connect has no RDD API: the highest partition id seen, in the full-frame batch.
    entry["note"] = "Spark Connect: counted from the partitions that hold rows"
    column = f"{key}_partition"

    def judge(row: Row) -> None:
        last = row[column]
        entry["value"] = {"num_partitions": 0 if last is None else int(last) + 1}

    fraction = _in_batch(entry, FULL)
    return _Plan(entry, fraction, {column: F.max(F.spark_partition_id())}, judge)


def _row_count_estimate(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    method = signal.method or "sample"
    entry["method"] = "sample"
    if method == "spark_listener":
        entry["note"] = (
            "method spark_listener has no stage metrics to read in this engine: "
            "estimated from a sample instead"
        )
    fraction = _in_batch(entry, _fraction(signal))

    def judge(row: Row) -> None:
        count = row[ROWS]
        entry["sample_count"] = count
        entry["value"] = count if fraction == FULL else round(count / fraction)

    return _Plan(entry, fraction, {ROWS: F.count(F.lit(1))}, judge)


def _null_rates(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    columns = signal.columns or ([signal.column] if signal.column else frame.columns)
    fraction = _in_batch(entry, _fraction(signal))
    aggregates = {
        f"{key}_{i}": F.sum(F.when(F.col(_quoted(c)).isNull(), 1).otherwise(0))
        for i, c in enumerate(columns)
    }

    def judge(row: Row) -> None:
        total = row[ROWS]
        entry["sample_count"] = total
        entry["value"] = {
            c: (round((row[f"{key}_{i}"] or 0) / total, 6) if total else None)
            for i, c in enumerate(columns)
        }

    return _Plan(entry, fraction, {ROWS: F.count(F.lit(1)), **aggregates}, judge)


def _sample_rows(signal, entry, frame, key) -> _Plan:
    n = DEFAULT_SAMPLE_ROWS if signal.n is None else max(int(signal.n), 0)
    entry["n"] = n

    def take(rows: list[Row]) -> None:
        entry["value"] = [row.asDict(recursive=True) for row in rows[:n]]

    return _Plan(entry, rows_wanted=n, take=take)


def _numeric_columns(frame: DataFrame) -> list[str]:
    from pyspark.sql.types import NumericType

    return [f.name for f in frame.schema.fields if isinstance(f.dataType, NumericType)]


def _value_distribution(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    numeric = _numeric_columns(frame)
    columns = signal.columns or ([signal.column] if signal.column else numeric)
    other = [c for c in columns if c in frame.columns and c not in numeric]
    if other:
        # mean() of text would cast every value at run time and could sink the whole batch.
        raise ConditionError(
            "AQ_PROBE_COLUMN_NOT_NUMERIC",
            f"value_distribution needs numeric columns; not numeric: {', '.join(other)}",
            {"columns": ", ".join(other)},
            hint="list numeric columns only, or leave `columns` out to take them all",
        )
    percentiles = list(signal.percentiles or DEFAULT_PERCENTILES)
    fraction = _in_batch(entry, _fraction(signal))
    aggregates: dict[str, Column] = {}
    for i, name in enumerate(columns):
        column = F.col(_quoted(name))
        aggregates.update(
            {
                f"{key}_{i}_min": F.min(column),
                f"{key}_{i}_max": F.max(column),
                f"{key}_{i}_mean": F.avg(column),
                f"{key}_{i}_stddev": F.stddev_samp(column),
                f"{key}_{i}_count": F.count(column),
            }
        )
        if percentiles:
            aggregates[f"{key}_{i}_pct"] = F.percentile_approx(column, percentiles)

    def judge(row: Row) -> None:
        value: dict[str, Any] = {}
        for i, name in enumerate(columns):
            stats = {s: row[f"{key}_{i}_{s}"] for s in ("min", "max", "mean", "stddev", "count")}
            found = row[f"{key}_{i}_pct"] if percentiles else None
            stats["percentiles"] = {
                str(p): (found[j] if found is not None else None) for j, p in enumerate(percentiles)
            }
            value[name] = stats
        entry["value"] = value

    return _Plan(entry, fraction, aggregates, judge)


def _distinct_count(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    columns = signal.columns or ([signal.column] if signal.column else frame.columns)
    fraction = _in_batch(entry, _fraction(signal))
    aggregates = {
        f"{key}_{i}": F.approx_count_distinct(F.col(_quoted(c))) for i, c in enumerate(columns)
    }

    def judge(row: Row) -> None:
        entry["value"] = {c: row[f"{key}_{i}"] for i, c in enumerate(columns)}

    return _Plan(entry, fraction, aggregates, judge)


def _data_freshness(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    column = signal.column or (signal.columns[0] if signal.columns else None)
    if not column:
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            "signal data_freshness needs `column` (a timestamp or date column)",
            {"key": "column", "moduleType": "Probe"},
            hint="set column: <timestamp column> on the signal",
        )
    entry["column"] = column
    # max() of a sample can miss the newest row: full scan unless the signal allows sampling.
    fraction = _in_batch(entry, _fraction(signal) if signal.allow_sample else FULL)

    def judge(row: Row) -> None:
        entry["value"] = row[key]

    return _Plan(entry, fraction, {key: F.max(F.col(_quoted(column)))}, judge)


def _threshold(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    expr = signal.expr or signal.passed_when or signal.sql
    if not expr:
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            'signal threshold needs `expr`, an aggregate boolean (e.g. "COUNT(*) > 0")',
            {"key": "expr", "moduleType": "Probe"},
            hint='set expr: "MIN(amount) >= 0" (SQL over the whole frame)',
        )
    entry["expr"] = expr
    _in_batch(entry, FULL)

    def judge(row: Row) -> None:
        value = row[key]
        entry["value"] = value
        entry["passed"] = bool(value) if value is not None else False

    return _Plan(entry, FULL, {key: F.expr(expr)}, judge)


def _custom(signal, entry, frame, key) -> _Plan:
    from pyspark.sql import functions as F

    if signal.module or signal.plugin:
        return _custom_callable(signal, entry, frame)
    if not (signal.sql or signal.passed_when):
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            "a custom signal needs `sql` and/or `passed_when`, or `module` + `entry`, or `plugin`",
            {"key": "sql", "moduleType": "Probe"},
            hint='e.g. sql: "percentile(price, 0.99)", passed_when: "MAX(price) < 1000"',
        )
    _in_batch(entry, FULL)
    columns: dict[str, Column] = {}
    if signal.sql:
        entry["sql"] = signal.sql
        columns[f"{key}_value"] = F.expr(signal.sql)
    if signal.passed_when:
        entry["passed_when"] = signal.passed_when
        columns[f"{key}_passed"] = F.expr(signal.passed_when)

    def judge(row: Row) -> None:
        entry["value"] = row[f"{key}_value"] if signal.sql else None
        if signal.passed_when:
            verdict = row[f"{key}_passed"]
            entry["passed"] = bool(verdict) if verdict is not None else False

    return _Plan(entry, FULL, columns, judge)


def _custom_callable(signal: ProbeSignal, entry: dict[str, Any], frame: DataFrame) -> _Plan:
    """`module` + `entry` (importable), or `plugin` (entry point): fn(df, signal) -> dict."""
    if signal.plugin:
        from importlib.metadata import entry_points

        found = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == signal.plugin]
        if not found:
            raise ConditionError(
                "AQ_PROBE_PLUGIN_NOT_FOUND",
                f"no installed probe signal plugin '{signal.plugin}' "
                f"(entry-point group '{PLUGIN_GROUP}')",
                {"plugin": signal.plugin},
                hint="install the package that provides it, or use module: + entry:",
            )
        function = found[0].load()
        entry["plugin"] = signal.plugin
    else:
        if not signal.entry:
            raise ConditionError(
                "AQ_MISSING_CONFIG",
                "a custom signal with `module` needs `entry` (the function's name)",
                {"key": "entry", "moduleType": "Probe"},
                hint="e.g. module: myorg.probes, entry: p99_latency",
            )
        function = getattr(importlib.import_module(signal.module), signal.entry)
        entry["callable"] = f"{signal.module}.{signal.entry}"
    config = signal.model_dump(exclude_none=True)

    def call() -> None:
        result = function(frame, config)
        if not isinstance(result, Mapping):
            raise TypeError(f"custom signal returned {type(result).__name__}, expected a dict")
        entry["value"] = result.get("value", result.get("estimate"))
        if "passed" in result and result["passed"] is not None:
            entry["passed"] = bool(result["passed"])
        if result.get("metadata"):
            entry["details"] = result["metadata"]

    return _Plan(entry, call=call)


_PLANNERS: dict[str, Callable[[ProbeSignal, dict[str, Any], DataFrame, str], _Plan]] = {
    "schema_snapshot": _schema_snapshot,
    "row_count_estimate": _row_count_estimate,
    "null_rates": _null_rates,
    "sample_rows": _sample_rows,
    "value_distribution": _value_distribution,
    "distinct_count": _distinct_count,
    "data_freshness": _data_freshness,
    "partition_stats": _partition_stats,
    "threshold": _threshold,
    "custom": _custom,
}


# --------------------------------------------------------------------------- actions


def _run_batches(frame: DataFrame, plans: list[_Plan]) -> int:
    """One `agg` per batch key; returns the number of Spark actions run.

    A batch that fails while running (a cast that breaks on some row) is retried signal by
    signal, so that only the guilty signal reports the error.
    """
    batches: dict[float, list[_Plan]] = {}
    for plan in plans:
        if plan.batch is not None and plan.judge is not None and "error" not in plan.entry:
            batches.setdefault(plan.batch, []).append(plan)
    actions = 0
    for fraction, members in batches.items():
        source = frame if fraction == FULL else frame.sample(fraction=fraction, seed=SAMPLE_SEED)
        actions += 1
        try:
            row = _collect(source, members)
        except Exception as exc:  # noqa: BLE001 - a Probe never fails the run
            if len(members) == 1:
                _failed(members[0].entry, exc)
                continue
            for plan in members:
                actions += 1
                try:
                    _judge(plan, _collect(source, [plan]))
                except Exception as own:  # noqa: BLE001
                    _failed(plan.entry, own)
            continue
        for plan in members:
            _judge(plan, row)
    return actions


def _collect(source: DataFrame, members: list[_Plan]) -> Row:
    columns: dict[str, Column] = {}
    for plan in members:
        columns.update(plan.columns)
    return source.agg(*[column.alias(alias) for alias, column in columns.items()]).collect()[0]


def _judge(plan: _Plan, row: Row) -> None:
    try:
        assert plan.judge is not None
        plan.judge(row)
    except Exception as exc:  # noqa: BLE001
        _failed(plan.entry, exc)


def _run_sample_rows(frame: DataFrame, plans: list[_Plan]) -> int:
    wanting = [p for p in plans if p.take is not None and "error" not in p.entry]
    if not wanting:
        return 0
    n = max(p.rows_wanted or 0 for p in wanting)
    try:
        rows = frame.limit(n).collect() if n else []
    except Exception as exc:  # noqa: BLE001
        for plan in wanting:
            _failed(plan.entry, exc)
        return 1 if n else 0
    for plan in wanting:
        plan.take(rows)
    return 1 if n else 0


# --------------------------------------------------------------------------- helpers


def _quoted(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


def _plain(value: Any) -> Any:
    """A JSON-able copy of a collected value (dates as ISO text, NaN as None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "asDict"):
        return _plain(value.asDict(recursive=True))
    return value


def _report_line(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"{entry['id']} ({entry['type']}): error {entry['error']}"
    verdict = "" if "passed" not in entry else f" passed={entry['passed']}"
    return f"{entry['id']} ({entry['type']}):{verdict} {entry.get('value')!r}"
