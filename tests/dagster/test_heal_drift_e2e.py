"""Realistic breakages healed as a user meets them, through Dagster on real Spark.

Each case (bench/heal_cases/) is run by the heal benchmark's own harness: a good run, the
upstream input changes, the run fails, the heal job stages a patch (human approval), the
patch is applied through the queue, the run goes again, and the published table is compared
with an answer pandas computes from the changed input files alone. Defer cases must stage
nothing. One case per drift class the rules decide from the last good run's evidence, and
the defer classes where that evidence does not decide.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from heal_cases import all_cases  # noqa: E402
from heal_e2e import CaseRunner  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.usefixtures("spark"),
              pytest.mark.spark_kind("classic")]  # fmt: skip

CASES = {case.name: case for case in all_cases()}


@pytest.fixture(autouse=True)
def _environment_restored():
    """The harness points AQUEDUCT_* and DAGSTER_HOME at each case's project, as a user's
    shell would; later tests must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
FIXED = [
    "csv_delimiter_change",  # one column named like the old header: read with the new sep
    "renamed_folder_with_decoy",  # the one folder with the old schema that is not older
    "ambiguous_after_join",  # the side that had the column in the last good run
    "retyped_int_to_string",  # every value casts back: the published type stays
]
# Nested renames, format from content, quoted and two-candidate renames: the same code
# paths on the unit level (tests/healing/test_drift.py); the benchmark runs them end to end.
DEFERRED = [
    "column_gone",  # nothing of its type replaces it
]


@pytest.mark.parametrize("name", FIXED)
def test_drift_is_healed_and_the_output_matches_an_independent_answer(name, tmp_path):
    result = CaseRunner(CASES[name], tmp_path).run()
    assert result.grade == "FIXED", f"{result.grade}: {result.note}\n{result.heal_message}\n{result.error}"
    assert result.heal_status == "staged"


@pytest.mark.parametrize("name", DEFERRED)
def test_undecided_drift_defers_and_shows_its_evidence(name, tmp_path):
    result = CaseRunner(CASES[name], tmp_path).run()
    assert result.grade == "DEFERRED-OK", f"{result.grade}: {result.note}\n{result.heal_message}"
    assert not result.unseen  # diagnosed and refused, not skipped by luck
    assert "last good run" in result.heal_message
