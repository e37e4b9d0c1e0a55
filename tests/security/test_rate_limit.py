"""The heal rate limit holds under concurrency, and a Blueprint cannot raise the operator's limit.

Six heal processes of one Blueprint start at the same moment (a spawn barrier) with a limit of
2: exactly two run, on DuckDB (its file lock admits one writer) and on PostgreSQL (an advisory
transaction lock per Blueprint orders the count-then-insert).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.failure import FailurePackage, build_failure_package
from aqueduct_dagster.healing.heal import Healer, HealSettings, Proposal
from aqueduct_dagster.stores import DuckDBStore, PostgresStore
from tests.security.test_apply_crash_safety import ORIGINAL

HEALS = 6
LIMIT = 2
ERROR = {"exception_class": "pyspark.errors.exceptions.captured.AnalysisException", "condition": "SOMETHING_NEW",
         "message": "boom"}  # fmt: skip


class NothingToPropose:
    """A diagnoser that finds no fix: the heal runs to the end without staging anything."""

    name = "nothing"
    max_rounds = 1

    def for_policy(self, policy) -> NothingToPropose:
        return self

    def propose(self, package: FailurePackage, feedback: Sequence[str]) -> Proposal:
        return Proposal(patch=None, reason="no idea", final=True)


def _open(backend: str, location: str):
    return DuckDBStore(location) if backend == "duckdb" else PostgresStore(location)


def _settings(root: Path, store, limit: int | None) -> HealSettings:
    return HealSettings(store=store, patches_dir=root / "patches", revisions_dir=root / "state" / "revisions",
                        diagnosers=[NothingToPropose()], max_heals_per_hour=limit)  # fmt: skip


def _heal_worker(root: str, backend: str, location: str, package_json: str, index: int, barrier) -> None:
    root_path = Path(root)
    package = FailurePackage.model_validate_json(package_json).model_copy(update={"heal_id": f"heal-{index}"})
    blueprint = root_path / "orders.yml"
    policy = _policy(blueprint, None)
    healer = Healer(_settings(root_path, _open(backend, location), LIMIT))
    barrier.wait(timeout=120)
    outcome = healer.heal(package, blueprint, policy)
    (root_path / f"outcome-{index}.json").write_text(json.dumps({"status": outcome.status}))


def _policy(blueprint: Path, limit: int | None):
    """The Blueprint's agent block with healing on (human approval) and its own hourly limit."""
    agent = compile_text(blueprint.read_text(), source_path=str(blueprint)).agent
    return agent.model_copy(update={"approval": "human", "max_heal_attempts_per_hour": limit})


def _package(blueprint: Path, run_id: str = "run-1") -> FailurePackage:
    text = blueprint.read_text()
    manifest = compile_text(text, source_path=str(blueprint))
    return build_failure_package(manifest=manifest, blueprint_text=text, run_id=run_id,
                                 failure=FailureRecord(module_id="step_0", error=ERROR, input_schemas={"raw": [["a", "int"]]}))  # fmt: skip


@pytest.fixture(params=["duckdb", "postgres"])
def target(request, tmp_path):
    if request.param == "duckdb":
        return "duckdb", str(tmp_path / "state" / "aqueduct.duckdb")
    return "postgres", request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def blueprint(tmp_path) -> Path:
    path = tmp_path / "orders.yml"
    path.write_bytes(ORIGINAL)
    return path


def test_six_simultaneous_heals_with_a_limit_of_two_run_exactly_two(tmp_path, blueprint, target):
    backend, location = target
    _open(backend, location).migrate()  # the schema exists before the race, as in a running deployment
    package_json = _package(blueprint).model_dump_json()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(HEALS)
    workers = [context.Process(target=_heal_worker, args=(str(tmp_path), backend, location, package_json, i, barrier))
               for i in range(HEALS)]  # fmt: skip
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
        assert worker.exitcode == 0
    statuses = sorted(json.loads((tmp_path / f"outcome-{i}.json").read_text())["status"] for i in range(HEALS))
    assert statuses == ["no_fix"] * LIMIT + ["rate_limited"] * (HEALS - LIMIT)
    attempts = _open(backend, location).heal_attempts("orders")
    assert len(attempts) == LIMIT and {a["outcome"] for a in attempts} == {"no_fix"}


@pytest.mark.parametrize(
    ("operator", "blueprint_limit", "runs"),
    [(2, 10, 2), (5, 1, 1), (None, 3, 3), (3, None, 3)],
    ids=["blueprint-cannot-raise", "blueprint-may-lower", "blueprint-only", "operator-only"],
)
def test_the_operator_limit_is_a_ceiling(tmp_path, blueprint, operator, blueprint_limit, runs):
    store = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")
    healer = Healer(_settings(tmp_path, store, operator))
    policy = _policy(blueprint, blueprint_limit)
    statuses = [healer.heal(_package(blueprint, f"run-{i}"), blueprint, policy).status for i in range(runs + 2)]
    assert statuses == ["no_fix"] * runs + ["rate_limited"] * 2
    assert "heals in the last hour for 'orders'" in healer.heal(_package(blueprint, "run-x"), blueprint, policy).message
