"""pytest plugin: every `*.aqtest.yml` under the collected paths becomes test items.

Enabled automatically once aqueduct-dagster is installed (entry point `pytest11`). The plugin
starts (or reuses) one SparkSession for the whole pytest session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_SPARK: Any = None


def _spark() -> Any:
    from aqueduct_dagster.engine.session import run_session, use_api_of
    from aqueduct_dagster.settings import current_settings

    global _SPARK
    if _SPARK is None or _stopped(_SPARK):
        _SPARK = run_session(current_settings().base_session(app_name="aqtest"))
    use_api_of(_SPARK)
    return _SPARK


def _stopped(session: Any) -> bool:
    """A session whose JVM was stopped (classic) or whose client was closed (Spark Connect)."""
    from aqueduct_dagster.engine.session import is_connect

    if is_connect(session):
        return bool(session.is_stopped)
    return session.sparkContext._jsc is None


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(".aqtest.yml"):
        return AqTestFileCollector.from_parent(parent, path=file_path)
    return None


class AqTestFileCollector(pytest.File):
    def collect(self):
        from aqueduct_dagster.testing.aqtest import load_aqtest

        for case in load_aqtest(self.path).tests:
            yield AqTestItem.from_parent(self, name=case.id, case=case)


class AqTestItem(pytest.Item):
    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        from aqueduct_dagster.blueprint import compile_blueprint
        from aqueduct_dagster.testing.aqtest import load_aqtest, run_case

        spec = load_aqtest(self.path)
        manifest = compile_blueprint(self.path.parent / spec.blueprint)
        result = run_case(self.case, manifest, _spark(), source=self.path)
        if not result.passed:
            raise AqTestFailed(result.failures)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, AqTestFailed):
            return "\n".join(f"{self.case.module}: {failure}" for failure in excinfo.value.failures)
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"aqtest {self.case.id} ({self.case.module})"


class AqTestFailed(Exception):
    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures
