"""aqtests: the runner, the CLI, the pytest plugin, and the gallery's aqtests."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main
from aqueduct_dagster.testing import AqTestError, run_aqtest_file
from tests.support.shared import require_shared, shared_path

# Request the suite's session so it is the one that starts the JVM, whatever the test order.
pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark")]
REPO = Path(__file__).resolve().parents[2]
GALLERY_AQTESTS = shared_path("aqueduct-gallery", "aqtests")
#: Collected even without the shared folder, so the test can say so (and fail in CI).
GALLERY_AQTEST_NAMES = sorted(p.name for p in GALLERY_AQTESTS.iterdir() if p.is_dir()) if GALLERY_AQTESTS.is_dir() else ["<missing>"]

pytest_plugins = ["pytester"]


def test_our_aqtests_pass_with_macros_compiled_first(spark):
    results = run_aqtest_file(REPO / "gallery" / "orders_daily.aqtest.yml", spark)
    assert [(r.test_id, r.passed, r.failures) for r in results] == [
        ("drops_invalid_orders", True, []),
        ("quality_gate_keeps_rows", True, []),
    ]


def test_failures_say_what_was_expected(spark, tmp_path):
    text = (REPO / "gallery" / "orders_daily.aqtest.yml").read_text()
    text = text.replace("blueprint: ../blueprints/orders_daily.yml", f"blueprint: {REPO}/blueprints/orders_daily.yml")
    text = text.replace("{type: row_count, expected: 1}", "{type: row_count, expected: 3}")
    text = text.replace("[{order_id: 1, amount: 25.0, status: placed}]", "[{order_id: 2}]")
    (tmp_path / "t.aqtest.yml").write_text(text)
    first = run_aqtest_file(tmp_path / "t.aqtest.yml", spark)[0]
    assert not first.passed
    assert first.failures[0] == "row_count: expected 3, got 1"
    assert first.failures[1].startswith("contains: no output row matches {'order_id': 2}")


def test_unknown_module_and_missing_input_are_clear_errors(spark, tmp_path):
    path = tmp_path / "bad.aqtest.yml"
    path.write_text(
        f"aqueduct_test: '1.0'\nblueprint: {REPO}/blueprints/orders_daily.yml\n"
        "tests:\n  - id: x\n    module: clean_ordres\n    assertions: [{type: row_count, expected: 0}]\n"
    )
    with pytest.raises(AqTestError, match=r"(?s)no module 'clean_ordres'.*did you mean 'clean_orders'"):
        run_aqtest_file(path, spark)
    path.write_text(path.read_text().replace("clean_ordres", "clean_orders"))
    with pytest.raises(AqTestError, match="reads 'raw_orders' but the test gives no rows for it"):
        run_aqtest_file(path, spark)


def test_cli_reports_and_exits(spark):
    result = CliRunner().invoke(main, ["test", str(REPO / "gallery" / "orders_daily.aqtest.yml")])
    assert result.exit_code == 0, result.output
    assert "2 passed, 0 failed" in result.output


def test_pytest_plugin_collects_aqtest_files(spark, pytester):
    pytester.makefile(".aqtest.yml", orders=(REPO / "gallery" / "orders_daily.aqtest.yml").read_text().replace(
        "blueprint: ../blueprints/orders_daily.yml", f"blueprint: {REPO}/blueprints/orders_daily.yml"))
    outcome = pytester.runpytest("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=2)


@pytest.mark.parametrize("name", GALLERY_AQTEST_NAMES)
def test_gallery_aqtests(spark, name):
    require_shared(GALLERY_AQTESTS)
    results = run_aqtest_file(GALLERY_AQTESTS / name / "blueprint.aqtest.yml", spark)
    failures = {r.test_id: r.failures for r in results if not r.passed}
    assert not failures, failures
