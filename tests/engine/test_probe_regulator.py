"""Probe (every signal type against a hand computation, its Spark actions, never failing) and
Regulator (open, skip, abort, trigger_agent, timeout), then both inside `run_manifest` with a
Junction -> Funnel, an Assert quarantine and a typed spillway edge."""

from __future__ import annotations

import datetime as dt
import math
import statistics
import threading
import time

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.modules.regulator import evaluate_regulator, poll_regulator
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.results import ProbeSignals
from aqueduct_dagster.engine.runner import run_manifest
from aqueduct_dagster.engine.session import run_session

from .conftest import spark_jobs

AMOUNTS = [10.0, None, 30.0, 40.0, 50.0, None, 70.0, 80.0]
REGIONS = ["eu", "us", "eu", None, "apac", "us", "eu", "us"]
STAMPS = [
    dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 2, 11), dt.datetime(2024, 1, 3, 12),
    dt.datetime(2024, 1, 1), None, dt.datetime(2024, 1, 5, 9, 30), dt.datetime(2024, 1, 4),
    dt.datetime(2024, 1, 2),
]  # fmt: skip


@pytest.fixture
def counted(spark):
    """A run session without adaptive execution: one action is then exactly one Spark job."""
    return run_session(spark, {"spark.sql.adaptive.enabled": "false"})


@pytest.fixture
def sales(counted):
    """Eight sales in ONE partition (so a bounded `limit` is one job, and samples repeat)."""
    rows = list(zip(range(1, 9), REGIONS, AMOUNTS, STAMPS, strict=True))
    frame = counted.createDataFrame(
        rows, "id BIGINT, region STRING, amount DOUBLE, ts TIMESTAMP_NTZ"
    )
    return frame.coalesce(1)


SIGNALS = [
    {"type": "schema_snapshot"},
    {"type": "partition_stats"},
    {"type": "row_count_estimate", "id": "rows", "method": "spark_listener", "fraction": 1.0},
    {"type": "row_count_estimate", "id": "rows_sampled", "fraction": 0.5},
    {"type": "null_rates", "columns": ["amount", "region"], "fraction": 1.0},
    {"type": "sample_rows", "n": 3},
    {"type": "value_distribution", "columns": ["amount"], "fraction": 1.0,
     "percentiles": [0.25, 0.5, 0.75]},
    {"type": "value_distribution", "id": "numeric", "fraction": 1.0},
    {"type": "distinct_count", "id": "regions", "columns": ["region"], "fraction": 1.0},
    {"type": "distinct_count", "id": "regions_sampled", "columns": ["region"], "fraction": 0.5},
    {"type": "data_freshness", "column": "ts"},
    {"type": "threshold", "id": "has_rows", "expr": "COUNT(*) > 0"},
    {"type": "threshold", "id": "approval", "expr": "1 = 2"},
    {"type": "custom", "id": "median", "sql": "percentile(amount, 0.5)",
     "passed_when": "MAX(amount) < 1000"},
    {"type": "threshold", "id": "broken", "expr": "MAX(nope) > 0"},
    {"type": "row_count"},
]  # fmt: skip


def _probe(module, signals, **fields):
    return module("Probe", "probe", {"signals": signals}, inputs=("sales",), **fields)


def _percentile(values, p):
    """What percentile_approx returns on a few values: the smallest v with >= p of them <= v."""
    ordered = sorted(values)
    return ordered[max(math.ceil(p * len(ordered)) - 1, 0)]


def test_every_signal_type_matches_a_hand_computation_in_three_actions(counted, module, sales):
    probe = _probe(module, SIGNALS, attach_to="sales")
    with spark_jobs(counted) as jobs:
        result = execute_module(counted, probe, {"sales": sales})
    # The full frame's aggregates share one agg, the 0.5 sample's another; sample_rows is a
    # bounded limit. Schema, partitions and the two broken signals run nothing.
    assert result.metadata["actions"] == 3 and len(jobs) == 3
    assert result.outputs == {}
    assert result.metadata["attach_to"] == "sales"
    signals = {s["id"]: s for s in result.metadata["signals"]}
    assert list(signals)[:2] == ["schema_snapshot", "partition_stats"]

    assert signals["schema_snapshot"]["value"] == {
        "id": "bigint", "region": "string", "amount": "double", "ts": "timestamp_ntz",
    }  # fmt: skip
    assert signals["partition_stats"]["value"] == {"num_partitions": 1}
    rows = signals["rows"]
    assert (rows["value"], rows["sampled"], rows["fraction"]) == (8, False, None)
    assert "spark_listener" in rows["note"] and rows["method"] == "sample"

    sample = sales.sample(fraction=0.5, seed=17).collect()  # the same seeded sample, by hand
    sampled = signals["rows_sampled"]
    assert (sampled["sampled"], sampled["fraction"]) == (True, 0.5)
    assert sampled["sample_count"] == len(sample)
    assert sampled["value"] == round(len(sample) / 0.5)
    assert signals["regions_sampled"]["value"] == {
        "region": len({r.region for r in sample if r.region is not None})
    }

    assert signals["null_rates"]["value"] == {"amount": 2 / 8, "region": 1 / 8}
    assert signals["sample_rows"]["value"] == [
        {"id": 1, "region": "eu", "amount": 10.0, "ts": "2024-01-01T10:00:00"},
        {"id": 2, "region": "us", "amount": None, "ts": "2024-01-02T11:00:00"},
        {"id": 3, "region": "eu", "amount": 30.0, "ts": "2024-01-03T12:00:00"},
    ]
    present = [a for a in AMOUNTS if a is not None]
    amount = signals["value_distribution"]["value"]["amount"]
    assert amount["min"] == 10.0 and amount["max"] == 80.0 and amount["count"] == 6
    assert amount["mean"] == pytest.approx(statistics.mean(present))
    assert amount["stddev"] == pytest.approx(statistics.stdev(present))
    assert amount["percentiles"] == {str(p): _percentile(present, p) for p in (0.25, 0.5, 0.75)}
    assert list(signals["numeric"]["value"]) == ["id", "amount"], "numeric columns by default"
    assert signals["regions"]["value"] == {"region": 3}
    assert signals["data_freshness"]["value"] == "2024-01-05T09:30:00"
    assert signals["data_freshness"]["sampled"] is False, "max() reads the whole frame"

    assert (signals["has_rows"]["value"], signals["has_rows"]["passed"]) == (True, True)
    assert (signals["approval"]["value"], signals["approval"]["passed"]) == (False, False)
    assert signals["median"]["value"] == statistics.median(present)
    assert signals["median"]["passed"] is True
    assert "passed" not in signals["null_rates"], "metrics carry no verdict"

    # A Probe never fails the run: broken signals say why, the others are unaffected.
    assert "UNRESOLVED_COLUMN" in signals["broken"]["error"] and "value" not in signals["broken"]
    assert "unknown signal type 'row_count'" in signals["row_count"]["error"]
    assert "did you mean 'row_count_estimate'" in signals["row_count"]["error"]


def p95_signal(frame, config):
    """A custom callable signal (module + entry form); runs on the driver, here no job."""
    return {
        "estimate": len(frame.columns),
        "passed": config["id"] == "columns",
        "metadata": {"x": 1},
    }


def test_custom_callable_signals_and_a_probe_without_aggregates_run_nothing(counted, module, sales):
    signals = [
        {"type": "custom", "id": "columns", "module": __name__, "entry": "p95_signal"},
        {"type": "custom", "id": "missing", "module": __name__, "entry": "no_such_function"},
        {"type": "schema_snapshot"},
    ]
    with spark_jobs(counted) as jobs:
        result = execute_module(counted, _probe(module, signals), {"sales": sales})
    assert jobs == [] and result.metadata["actions"] == 0
    columns, missing, _ = result.metadata["signals"]
    assert (columns["value"], columns["passed"], columns["details"]) == (4, True, {"x": 1})
    assert "no_such_function" in missing["error"]


def test_a_signal_failing_at_run_time_is_isolated_from_its_batch(counted, module, sales):
    signals = [
        {"type": "threshold", "id": "fine", "expr": "COUNT(*) = 8"},
        # Analyses fine, but casting 'eu' to INT fails while the agg runs (ANSI mode).
        {"type": "threshold", "id": "bad_cast", "expr": "MAX(CAST(region AS INT)) > 0"},
        {"type": "value_distribution", "id": "text", "columns": ["region"], "fraction": 1.0},
    ]
    result = execute_module(counted, _probe(module, signals), {"sales": sales})
    fine, bad_cast, text = result.metadata["signals"]
    assert fine["passed"] is True
    assert bad_cast["error"].startswith("[CAST_INVALID_INPUT]")
    assert "not numeric: region" in text["error"]
    assert result.metadata["actions"] == 3, "the failed batch, then each signal on its own"


# --------------------------------------------------------------------------- Regulator


def _regulator(module, on_block=None, **config):
    if on_block:
        config["on_block"] = on_block
    return module("Regulator", "gate", config, inputs=("data", ("probe", "signal", "probe_signal")))


PASSED = {"id": "ok", "type": "threshold", "passed": True}
FAILED = {"id": "approval", "type": "threshold", "passed": False}
METRIC = {"id": "rows", "type": "row_count_estimate", "value": 8}
ERRORED = {"id": "broken", "type": "threshold", "error": "[UNRESOLVED_COLUMN] nope"}


def test_evaluate_regulator_opens_only_when_every_verdict_passed(module):
    gate = _regulator(module)
    passive = evaluate_regulator(gate, None)
    assert passive.open and "passive" in passive.reason
    assert evaluate_regulator(gate, [PASSED, METRIC]).open
    nothing = evaluate_regulator(gate, [METRIC])
    assert nothing.open and "nothing gates" in nothing.reason
    closed = evaluate_regulator(gate, [PASSED, FAILED, METRIC, ERRORED])
    assert not closed.open and closed.on_block == "skip"
    assert closed.failed == ("approval",) and closed.gating == ("ok", "approval")
    assert closed.reason == ("signal(s) 'approval' did not pass; errored, so not gating: 'broken'")
    assert closed.errors == {"broken": "[UNRESOLVED_COLUMN] nope"}


def test_regulator_open_passes_the_frame_and_skip_returns_nothing(run_spark, module, people):
    opened = execute_module(
        run_spark, _regulator(module), {"data": people, "probe_signal": [PASSED]}
    )
    assert opened.main is people and opened.metadata["regulator"] == "open"
    passive = execute_module(run_spark, _regulator(module), {"data": people})
    assert passive.main is people

    skipped = execute_module(
        run_spark,
        _regulator(module, "skip"),
        {"data": people, "probe_signal": ProbeSignals("probe", [FAILED])},
    )
    assert skipped.outputs == {}
    assert skipped.metadata["regulator"] == "blocked" and skipped.metadata["skipped"] is True
    assert skipped.metadata["decision"]["failed"] == ["approval"]

    with pytest.raises(ModuleFailed) as wrong:
        execute_module(run_spark, _regulator(module), {"data": people, "probe_signal": people})
    assert wrong.value.error.condition == "AQ_REGULATOR_SIGNAL_INVALID"


@pytest.mark.parametrize(
    ("on_block", "condition"),
    [("abort", "AQ_REGULATOR_BLOCKED"), ("trigger_agent", "AQ_REGULATOR_TRIGGER_AGENT")],
)
def test_regulator_abort_and_trigger_agent_raise_their_condition(
    run_spark, module, people, on_block, condition
):
    with pytest.raises(ModuleFailed) as caught:
        execute_module(
            run_spark, _regulator(module, on_block), {"data": people, "probe_signal": [FAILED]}
        )
    failure = caught.value
    assert failure.module_id == "gate" and failure.error.condition == condition
    assert "Regulator 'gate' is closed: signal(s) 'approval' did not pass" in str(failure)
    assert failure.error.message_parameters["on_block"] == on_block
    assert not failure.transient


class _Clock:
    """A fake clock that `sleep` advances: polling tests take no real time."""

    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_timeout_polls_until_the_signal_passes(module):
    gate = _regulator(module, "abort", timeout_seconds=10, poll_seconds=2)
    answers = iter([[FAILED], [FAILED], [PASSED]])
    clock = _Clock()
    decision = poll_regulator(gate, [FAILED], lambda: next(answers), sleep=clock.sleep, clock=clock)
    assert decision.open and decision.evaluations == 4 and not decision.timed_out
    assert clock.sleeps == [2, 2, 2]


def test_timeout_opens_the_gate_after_a_bounded_number_of_polls(module):
    # Aqueduct documents the timeout as a fallback: no passing signal in time -> the gate opens.
    gate = _regulator(module, "skip", timeout_seconds=5, poll_seconds=2)
    clock = _Clock()
    calls = []
    decision = poll_regulator(
        gate, [FAILED], lambda: calls.append(1) or [FAILED], sleep=clock.sleep, clock=clock
    )
    assert decision.open and decision.timed_out
    assert clock.sleeps == [2, 2, 1], "the last wait stops at the timeout"
    assert decision.evaluations == 4 == len(calls) + 1
    assert decision.reason.endswith("opened by the timeout fallback after 5 s (4 evaluations)")

    no_recompute = poll_regulator(gate, [FAILED], None, sleep=clock.sleep, clock=clock)
    assert no_recompute.open and no_recompute.timed_out and no_recompute.evaluations == 1
    assert "nothing re-evaluates the signals" in no_recompute.reason

    no_timeout = poll_regulator(_regulator(module, "skip"), [FAILED], None, sleep=clock.sleep, clock=clock)
    assert not no_timeout.open and not no_timeout.timed_out


def test_regulator_polls_a_probe_signals_recompute_in_real_time(run_spark, module, people):
    gate = _regulator(module, "skip", timeout_seconds=0.3, poll_seconds=0.1)
    calls = []
    signals = ProbeSignals("probe", [FAILED], lambda: calls.append(1) or [FAILED])
    started = time.monotonic()
    result = execute_module(run_spark, gate, {"data": people, "probe_signal": signals})
    elapsed = time.monotonic() - started
    assert "main" in result.outputs and "skipped" not in result.metadata
    assert result.metadata["decision"]["timed_out"] and result.metadata["regulator"] == "open"
    assert 0.3 <= elapsed < 3 and 2 <= len(calls) <= 4


# --------------------------------------------------------------------------- run_manifest

PIPELINE = """
aqueduct: "1.0"
id: routed
name: Routed orders
modules:
  - {id: raw, type: Ingress, config: {table: orders}}
  - id: route
    type: Junction
    config:
      mode: conditional
      branches:
        - {id: active, condition: "status IN ('NEW', 'PENDING')"}
        - {id: other, condition: _else_}
  - id: merged
    type: Funnel
    config: {mode: union_all, inputs: [route.other, route.active]}
  - id: quality
    type: Assert
    config:
      rules:
        - {type: not_null, column: amount, on_fail: quarantine, error_type: MissingAmount}
        - {type: sql_row, expr: "amount >= 10", on_fail: quarantine}
  - id: approval
    type: Probe
    attach_to: raw
    config:
      signals:
        - {type: threshold, id: approved, expr: "1 = 2"}
        - {type: row_count_estimate, fraction: 1.0}
  - {id: gate, type: Regulator, config: {on_block: skip}}
  - {id: out, type: Egress, config: {format: parquet, path: "OUT/out", mode: overwrite}}
  - {id: missing, type: Egress, config: {format: parquet, path: "OUT/missing", mode: overwrite}}
edges:
  - {from: raw, to: route}
  - {from: merged, to: quality}
  - {from: quality, to: gate}
  - {from: approval, to: gate, port: signal}
  - {from: gate, to: out}
  - {from: quality, to: missing, port: spillway, error_types: [MissingAmount]}
"""


def test_run_manifest_routes_ports_spillway_types_and_skips_behind_a_closed_gate(
    run_spark, tmp_path
):
    run_spark.createDataFrame(
        [(1, "NEW", 5.0), (2, "PENDING", 12.5), (3, "CLOSED", None), (4, "RESOLVED", 45.0)],
        "order_id BIGINT, status STRING, amount DOUBLE",
    ).createOrReplaceTempView("orders")
    manifest = compile_text(PIPELINE.replace("OUT", str(tmp_path)))
    result = run_manifest(run_spark, manifest)

    assert result.skipped == ["out"] and not (tmp_path / "out").exists()
    assert result.blocked == {"gate": "signal(s) 'approved' did not pass"}
    assert result.modules["gate"].metadata["skipped"] is True
    assert "out" not in result.modules
    assert [s["value"] for s in result.signals["approval"]] == [False, 4]

    # Junction branches reach the Funnel by port, in config.inputs order.
    assert [r.order_id for r in result.output("merged").collect()] == [3, 4, 1, 2]
    assert result.modules["merged"].metadata["inputs"] == ["route_other", "route_active"]
    # Quarantine: the spillway edge only takes MissingAmount rows.
    assert result.assertions["quality"].quarantined == 2
    written = run_spark.read.parquet(str(tmp_path / "missing")).collect()
    assert [(r.order_id, r._aq_error_type) for r in written] == [(3, "MissingAmount")]
    # raw feeds the Probe and (through the Junction) the Funnel; merged feeds the Assert's
    # action and its two outputs' readers: each is computed once.
    assert result.cached == ["raw.main", "merged.main"]


def test_a_polling_gate_reevaluates_its_probe_on_fresh_source_data(run_spark, tmp_path):
    run_spark.createDataFrame(
        [(1, 12.5)], "order_id BIGINT, amount DOUBLE"
    ).createOrReplaceTempView("orders")
    run_spark.createDataFrame([], "ok INT").createOrReplaceTempView("approvals")
    manifest = compile_text(
        f"""
aqueduct: "1.0"
id: approved
name: Wait for approval
modules:
  - {{id: raw, type: Ingress, config: {{table: orders}}}}
  - {{id: approvals, type: Ingress, config: {{table: approvals}}}}
  - id: approval
    type: Probe
    attach_to: approvals
    config: {{signals: [{{type: threshold, expr: "COUNT(*) > 0"}}]}}
  - id: gate
    type: Regulator
    config: {{on_block: abort, timeout_seconds: 30, poll_seconds: 0.1}}
  - {{id: out, type: Egress, config: {{format: parquet, path: "{tmp_path}/out"}}}}
edges:
  - {{from: raw, to: gate}}
  - {{from: approval, to: gate, port: signal}}
  - {{from: gate, to: out}}
"""
    )
    approve = threading.Timer(
        0.3,
        lambda: run_spark.createDataFrame([(1,)], "ok INT").createOrReplaceTempView("approvals"),
    )
    approve.start()
    try:
        result = run_manifest(run_spark, manifest)
    finally:
        approve.cancel()
    decision = result.modules["gate"].metadata["decision"]
    assert decision["open"] and decision["evaluations"] > 1 and not decision["timed_out"]
    assert result.signals["approval"][0]["passed"] is False, "the first evaluation was closed"
    assert run_spark.read.parquet(str(tmp_path / "out")).count() == 1
