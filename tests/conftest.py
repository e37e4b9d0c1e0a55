"""Suite-wide fixtures: ONE SparkSession for the whole test session.

Starting a JVM costs seconds and the machines have two cores shared with other suites, so
every Spark test reuses this session (tests that need isolated temp views or SQL conf take
`run_session(spark)`), keeps its data tiny and writes under `tmp_path`.
"""

from __future__ import annotations

import os
import sys

# Before anything can start a JVM: the host name resolves oddly, the driver binds to loopback.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL for the whole session (started on first use, stopped at the end)."""
    from tests.support.postgres import PostgresUnavailable, running_postgres

    context = running_postgres()
    try:
        server = context.__enter__()
    except PostgresUnavailable as reason:
        pytest.skip(str(reason))
    yield server
    context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """The suite's SparkSession (local[2], Delta configured, state under a temp folder)."""
    from aqueduct_dagster.engine.session import create_base_session

    session = create_base_session(
        app_name="aqueduct-tests",
        state_dir=tmp_path_factory.mktemp("spark-state"),
    )
    yield session
    session.stop()


def pytest_collection_modifyitems(config, items):
    """A `spark`-marked test must use the `spark` fixture.

    Whoever starts the JVM first fixes its static settings (jars, warehouse dir); if a test
    started it through some other path, later tests would see a session the suite did not
    configure, and results would depend on test order.
    """
    offenders = [item.nodeid for item in items if item.get_closest_marker("spark") and "spark" not in item.fixturenames]
    if offenders:
        raise pytest.UsageError(
            "spark-marked tests must request the `spark` fixture (or usefixtures('spark')):\n  "
            + "\n  ".join(offenders)
        )
