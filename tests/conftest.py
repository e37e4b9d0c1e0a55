"""Suite-wide fixtures: ONE SparkSession per session kind for the whole test session.

Starting a JVM costs seconds and the machines have two cores shared with other suites, so
every Spark test reuses this session (tests that need isolated temp views or SQL conf take
`run_session(spark)`), keeps its data tiny and writes under `tmp_path`.

Every Spark test runs twice: `[classic]` on an in-process JVM, `[connect]` on ONE managed
Spark Connect server started through the product code (`start_server`) for the whole
session. AQUEDUCT_TEST_SPARK_MODES=classic (or =connect) runs one kind only.
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


SPARK_MODES = [
    mode.strip()
    for mode in os.environ.get("AQUEDUCT_TEST_SPARK_MODES", "classic,connect").split(",")
    if mode.strip()
]


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """The session's managed Spark Connect server (free port, state under a temp folder)."""
    from aqueduct_dagster.engine.connect_server import start_server, stop_server

    state = tmp_path_factory.mktemp("connect-state")
    try:
        info = start_server(state, timeout=300)
    except BaseException:
        stop_server(state)
        raise
    yield info
    stop_server(state)


@pytest.fixture(scope="session", params=SPARK_MODES)
def spark(request, tmp_path_factory):
    """The suite's SparkSession: classic (local[2], Delta configured, state under a temp
    folder) or a Spark Connect session on the session's managed server."""
    from aqueduct_dagster.engine.session import create_base_session

    if request.param == "connect":
        server = request.getfixturevalue("connect_server")
        session = create_base_session(master=server.url)
        yield session
        session.stop()  # this client session only; the server stops with `connect_server`
        return
    session = create_base_session(
        app_name="aqueduct-tests",
        state_dir=tmp_path_factory.mktemp("spark-state"),
    )
    yield session
    session.stop()


@pytest.fixture(autouse=True)
def _spark_kind(request, monkeypatch):
    """Point everything a Spark test starts at its session's kind.

    pyspark's function namespace follows one process-wide switch (see `use_api_of`), and
    code that makes its own sessions (Dagster's SparkResource, heal gates, the CLI) reads
    AQUEDUCT_SPARK_MASTER: in `[connect]` tests it names the session's server.
    """
    if "spark" not in request.fixturenames:
        return
    from aqueduct_dagster.engine.session import connect_url_of, is_connect, use_api_of

    session = request.getfixturevalue("spark")
    marker = request.node.get_closest_marker("classic_only")
    if is_connect(session) and marker is not None:
        pytest.skip(f"classic only: {marker.kwargs.get('reason') or marker.args[0]}")
    use_api_of(session)
    if is_connect(session):
        monkeypatch.setenv("AQUEDUCT_SPARK_MASTER", connect_url_of(session))
    else:
        monkeypatch.delenv("AQUEDUCT_SPARK_MASTER", raising=False)


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
    # A test about one session kind (`spark_kind("connect")`) exists only in that kind's turn.
    other_turn = [
        item
        for item in items
        if (kind := item.get_closest_marker("spark_kind")) is not None
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("spark") not in (None, kind.args[0])
    ]
    if other_turn:
        config.hook.pytest_deselected(items=other_turn)
        items[:] = [item for item in items if item not in other_turn]
