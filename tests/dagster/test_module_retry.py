"""A module's `retry:` as its asset's Dagster RetryPolicy; only transient failures are retried."""

from __future__ import annotations

import dagster as dg

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.retry import effective_retry, merged_retry

BLUEPRINT = """\
aqueduct: "1.0"
id: retried
name: Retried
retry_policy:
  max_attempts: 3
  backoff: {{strategy: linear, base_seconds: {base}, max_seconds: 60, jitter: false}}
  on_exhaustion: abort
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}", header: true}}
{raw_retry}
  - id: once
    type: Channel
    config: {{query: "SELECT * FROM raw"}}
    retry: {{max_attempts: 1}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}", mode: overwrite}}
    retry:
      backoff: {{strategy: exponential}}
edges:
  - {{from: raw, to: once}}
  - {{from: once, to: out}}
"""


def _blueprint(tmp_path, *, base: int = 5, raw_retry: str = "", data: str | None = None) -> str:
    return BLUEPRINT.format(
        base=base,
        raw_retry=raw_retry,
        data=data or tmp_path / "orders.csv",
        out=tmp_path / "out",
    )


# --------------------------------------------------------------------------- the merge


def test_module_without_retry_inherits_the_blueprint_policy(tmp_path):
    manifest = compile_text(_blueprint(tmp_path))
    policy = effective_retry(manifest, manifest.module("raw"))

    assert policy == dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.LINEAR, jitter=None)


def test_module_fields_override_one_by_one(tmp_path):
    raw_retry = "    retry: {max_attempts: 5, deadline_seconds: 30, backoff: {jitter: true}}"
    manifest = compile_text(_blueprint(tmp_path, raw_retry=raw_retry))
    merged = merged_retry(manifest, manifest.module("raw"))

    assert merged.max_attempts == 5
    assert merged.deadline_seconds == 30
    assert merged.on_exhaustion == "abort"  # inherited
    # backoff: jitter from the module, the rest from the Blueprint.
    assert (merged.backoff.strategy, merged.backoff.base_seconds, merged.backoff.max_seconds) == (
        "linear", 5, 60,
    )  # fmt: skip
    assert merged.backoff.jitter is True
    assert effective_retry(manifest, manifest.module("raw")) == dg.RetryPolicy(
        max_retries=4, delay=5, backoff=dg.Backoff.LINEAR, jitter=dg.Jitter.PLUS_MINUS
    )


def test_on_failure_written_by_a_healer_overrides_retry(tmp_path):
    raw_retry = ("    retry: {max_attempts: 5}\n"
                 "    on_failure: {max_attempts: 2, backoff: {base_seconds: 1}, note: by healer}")  # fmt: skip
    manifest = compile_text(_blueprint(tmp_path, raw_retry=raw_retry))
    merged = merged_retry(manifest, manifest.module("raw"))

    assert merged.max_attempts == 2  # on_failure wins over retry, which wins over the Blueprint
    assert (merged.backoff.strategy, merged.backoff.base_seconds) == ("linear", 1)
    assert effective_retry(manifest, manifest.module("raw")) == dg.RetryPolicy(
        max_retries=1, delay=1, backoff=dg.Backoff.LINEAR, jitter=None
    )


def test_backoff_strategies(tmp_path):
    manifest = compile_text(_blueprint(tmp_path))
    # `out` sets only the strategy: delay and max_attempts still come from the Blueprint.
    assert effective_retry(manifest, manifest.module("out")) == dg.RetryPolicy(
        max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL
    )
    fixed = compile_text(_blueprint(tmp_path, raw_retry="    retry: {backoff: {strategy: fixed}}"))
    policy = effective_retry(fixed, fixed.module("raw"))
    assert (policy.backoff, policy.delay) == (None, 5)  # a constant delay


def test_one_attempt_means_no_policy(tmp_path):
    manifest = compile_text(_blueprint(tmp_path))
    assert effective_retry(manifest, manifest.module("once")) is None

    default = compile_text(_blueprint(tmp_path).replace("max_attempts: 3", "max_attempts: 1"))
    assert effective_retry(default, default.module("raw")) is None


def test_assets_carry_the_merged_policy(tmp_path):
    job = _definitions(tmp_path, _blueprint(tmp_path)).resolve_job_def("retried")
    policies = {op.name.split("__")[-1]: op.retry_policy for op in job.graph.node_defs}
    assert policies == {
        "raw": dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.LINEAR),
        "once": None,
        "out": dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
    }


# --------------------------------------------------------------------------- in-process runs


def _definitions(tmp_path, text: str) -> dg.Definitions:
    folder = tmp_path / "blueprints"
    folder.mkdir(exist_ok=True)
    (folder / "retried.yml").write_text(text)
    return build_definitions(folder)


_STEP_OUTCOMES = ("STEP_FAILURE", "STEP_UP_FOR_RETRY", "STEP_RESTARTED", "STEP_SUCCESS")


def _step_events(result: dg.ExecuteInProcessResult, step: str) -> list[str]:
    return [
        event.event_type_value
        for event in result.all_events
        if event.step_key
        and event.step_key.endswith(step)
        and event.event_type_value in _STEP_OUTCOMES
    ]


def _run(defs: dg.Definitions) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("retried")
    return job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def test_transient_failure_is_retried_and_succeeds(spark, tmp_path, monkeypatch):
    """The first read of `raw` loses its connection (a transient error by the engine's own
    classification); the retry reads the file and the run succeeds."""
    from aqueduct_dagster.engine import registry

    (tmp_path / "orders.csv").write_text("id,amount\n1,10\n2,20\n")
    real_ingress = registry.EXECUTORS["Ingress"]
    calls: list[str] = []

    def flaky_ingress(session, module, inputs):
        calls.append(module.id)
        if len(calls) == 1:
            raise ConnectionRefusedError("Connection refused: the source went away")
        return real_ingress(session, module, inputs)

    monkeypatch.setitem(registry.EXECUTORS, "Ingress", flaky_ingress)
    result = _run(_definitions(tmp_path, _blueprint(tmp_path, base=0)))

    assert result.success
    assert calls == ["raw", "raw"]
    assert _step_events(result, "raw") == ["STEP_UP_FOR_RETRY", "STEP_RESTARTED", "STEP_SUCCESS"]
    assert spark.read.parquet(str(tmp_path / "out")).count() == 2


def test_terminal_failure_is_not_retried(spark, tmp_path):
    """A missing file is terminal: one failure, no restart, whatever the policy allows."""
    text = _blueprint(tmp_path, base=0, data=str(tmp_path / "missing.csv"))
    result = _run(_definitions(tmp_path, text))

    assert not result.success
    assert _step_events(result, "raw") == ["STEP_FAILURE"]
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "PATH_NOT_FOUND" in failure.event_specific_data.error.message
