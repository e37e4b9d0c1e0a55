"""The sandbox replays a Blueprint through the runner of a real run: same rows, same verdicts.

One Blueprint with a Junction, a Channel, an Assert quarantining into a spillway, a Probe
feeding a Regulator and three Egress runs for real (a Dagster job, in process) and through
the gates' replay (`run_on_spark`, writes in scratch); every output must hold the same rows.
The Regulator's polling and skipping, and the caching of shared frames, must match
`run_manifest`'s.
"""

from __future__ import annotations

import dagster as dg
import pyarrow  # noqa: F401  (before deltalake: delta-rs aborts at exit otherwise)
import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.engine.runner import run_manifest
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.healing.gates import run_on_spark

# Request the suite's session so it is the one that starts the JVM, whatever the test order.
pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark"), pytest.mark.spark_kind("classic")]
# One session kind: what these tests check does not depend on it (Connect runs through
# Dagster are covered by test_materialize, test_module_types and test_warm_spark).

BLUEPRINT = """\
aqueduct: "1.0"
id: parity
name: Parity
modules:
  - {{id: raw, type: Ingress, config: {{format: csv, path: "{data}", header: true, options: {{inferSchema: "true"}}}}}}
  - id: split
    type: Junction
    config:
      mode: conditional
      branches:
        - {{id: eu, condition: "region = 'EU'"}}
        - {{id: rest, condition: _else_}}
  - id: priced
    type: Channel
    config: {{op: sql, query: "SELECT id, region, amount * 2 AS amount FROM split_rest"}}
  - id: quality
    type: Assert
    config:
      rules:
        - {{type: sql_row, expr: "amount > 0", on_fail: quarantine, error_type: BadAmount}}
  - id: volume
    type: Probe
    attach_to: priced
    config:
      signals:
        - {{type: threshold, id: enough_rows, expr: "COUNT(*) >= {min_rows}"}}
  - {{id: gate, type: Regulator, config: {regulator}}}
  - {{id: good, type: Egress, config: {{format: delta, path: "{out}/good", mode: overwrite}}}}
  - {{id: bad, type: Egress, config: {{format: parquet, path: "{out}/bad", mode: overwrite}}}}
  - {{id: eu_out, type: Egress, config: {{format: parquet, path: "{out}/eu_out", mode: overwrite}}}}
edges:
  - {{from: raw, to: split}}
  - {{from: split, to: priced, port: rest}}
  - {{from: split, to: eu_out, port: eu}}
  - {{from: priced, to: quality}}
  - {{from: quality, to: gate}}
  - {{from: volume, to: gate, port: signal}}
  - {{from: gate, to: good}}
  - {{from: quality, to: bad, port: spillway, error_types: [BadAmount]}}
"""

OPEN = "{on_block: skip}"


@pytest.fixture
def parity(tmp_path):
    """write(min_rows, regulator) -> (the Blueprint file, the folder its Egress write to)."""
    data = tmp_path / "orders.csv"
    data.write_text("id,region,amount\n1,EU,10\n2,US,-5\n3,EU,7\n4,APAC,3\n5,US,0\n6,US,8\n")
    folder = tmp_path / "blueprints"
    folder.mkdir()

    def write(min_rows: int = 1, regulator: str = OPEN):
        path = folder / "parity.yml"
        out = tmp_path / "out"
        path.write_text(BLUEPRINT.format(data=data, out=out, min_rows=min_rows, regulator=regulator))
        return path, out

    return write


def rows(session, fmt: str, path) -> tuple[list[str], list[tuple]]:
    """Columns and sorted rows; a spillway's `_aq_error_ts` (when the run wrote it) left out."""
    frame = session.read.format(fmt).load(str(path))
    kept = [c for c in frame.columns if c != "_aq_error_ts"]
    return frame.columns, sorted(tuple(r) for r in frame.select(*kept).collect())


def test_the_sandbox_writes_what_a_dagster_run_publishes(spark, parity, tmp_path, monkeypatch):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    blueprint, out = parity()
    real = build_definitions(blueprint.parent).resolve_job_def("parity").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert real.success

    session = run_session(spark)
    manifest = compile_text(blueprint.read_text(), source_path=str(blueprint))
    replay = run_on_spark(session, manifest, sample_rows=None, scratch=tmp_path / "scratch")

    assert {egress.id for egress, _ in replay.written} == {"good", "bad", "eu_out"}
    for egress, target in replay.written:
        config = target.spec.config
        assert config.path == str(tmp_path / "scratch" / egress.id)
        assert rows(session, config.format, config.path) == rows(session, config.format, out / egress.id)
    # What both wrote is what the Blueprint says, not merely the same mistake twice.
    assert [r[0] for r in rows(session, "delta", out / "good")[1]] == [4, 6]
    assert [(r[0], r[2]) for r in rows(session, "parquet", out / "bad")[1]] == [(2, -10), (5, 0)]
    assert [r[0] for r in rows(session, "parquet", out / "eu_out")[1]] == [1, 3]
    # raw feeds both branches, priced the Assert, the Probe and both sides of the quarantine:
    # each is computed once in the replay, as in a run.
    assert replay.result.cached == ["raw.main", "priced.main"]
    assert replay.result.assertions["quality"].quarantined == 2


@pytest.mark.parametrize(
    ("regulator", "min_rows"),
    [
        # Closed, on_block skip: the gated Egress is skipped, the others still write.
        (OPEN, 100),
        # Closed with a timeout: the Probe is re-evaluated from its sources until the
        # timeout, then the gate opens by its fallback.
        ("{on_block: abort, timeout_seconds: 1, poll_seconds: 0.2}", 100),
    ],
    ids=["closed-skip", "timeout-repoll"],
)
def test_the_regulator_decides_in_the_sandbox_as_in_a_run(spark, parity, tmp_path, regulator, min_rows):
    blueprint, out = parity(min_rows, regulator)
    manifest = compile_text(blueprint.read_text(), source_path=str(blueprint))
    session = run_session(spark)
    run = run_manifest(session, manifest)
    replay = run_on_spark(session, manifest, sample_rows=None, scratch=tmp_path / "scratch")

    assert replay.result.skipped == run.skipped and replay.result.blocked == run.blocked
    assert list(replay.result.modules) == list(run.modules)
    assert replay.result.cached == run.cached == ["raw.main", "priced.main"]
    decisions = [r.modules["gate"].metadata["decision"] for r in (run, replay.result)]
    for decision in decisions:
        assert decision["open"] == decision["timed_out"], decision
        if decision["timed_out"]:
            assert decision["evaluations"] >= 2, "the Probe was re-evaluated while waiting"
    assert [d["open"] for d in decisions] == [regulator != OPEN] * 2
    written = {egress.id: target.spec.config for egress, target in replay.written}
    expected = {"good", "bad", "eu_out"} if regulator != OPEN else {"bad", "eu_out"}
    assert set(written) == expected
    assert (out / "good").exists() == ("good" in written) == (run.skipped == [])
    for egress_id, config in written.items():
        assert rows(session, config.format, config.path) == rows(session, config.format, out / egress_id)
