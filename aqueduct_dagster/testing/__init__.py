"""Testing helpers for Blueprint authors: aqtests and the pytest plugin."""

from aqueduct_dagster.testing.aqtest import (
    AqTestError,
    CaseResult,
    find_aqtests,
    load_aqtest,
    run_aqtest_file,
)

__all__ = ["AqTestError", "CaseResult", "find_aqtests", "load_aqtest", "run_aqtest_file"]
