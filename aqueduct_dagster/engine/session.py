"""The SparkSession: classic (one JVM per process, one `newSession()` per run) or Spark Connect.

A master of `sc://host:port` gives Spark Connect sessions: the JVM is a server that outlives
runs (no cold start), and every run gets its own server-side session (its own session id),
so temp views and SQL conf never leak between concurrent runs. `managed` uses the project's
own server (`aqueduct spark up`) when it is healthy, else a classic in-process session.

Delta Lake and the JDBC drivers come from jars resolved once at set-up (`aqueduct jars
fetch`, see engine/jars.py) and handed to Spark through `spark.jars`; nothing is resolved
from Maven at run time. Small-data defaults (few shuffle partitions, a small Delta snapshot)
apply to local masters only and any of them can be overridden through `engine.spark.conf`.

Everything here is an argument (master, conf, state folder, jars folder): which master or
folder a run uses is decided once, by `aqueduct_dagster.settings`, never here. The process
environment is touched only for what pyspark and the JVM read from it (see `_use_connect_api`
and `_prepare_local_jvm`).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.engine.connect_server import managed_url
from aqueduct_dagster.engine.connect_url import (
    SparkConnectUnavailable,
    check_reachable,
    is_connect_url,
)
from aqueduct_dagster.engine.spark_conf import conf_text, engine_spark_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
#: The state folder of a caller that names none (relative to the working folder).
DEFAULT_STATE_DIR = Path(".aqueduct")
#: Master value meaning: the project's managed Spark Connect server, else classic local
#: with a warning (the author asked for the server).
MANAGED = "managed"
#: The default of every entry point (Settings): the managed server when one runs for the
#: state folder (warm: no JVM start), else classic local, said in one info line.
AUTO = "auto"



def is_connect(session: Any) -> bool:
    """Whether `session` is a Spark Connect session (not a classic, Py4J-backed one)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


def use_api_of(session: Any) -> None:
    """Point pyspark's process-wide API switch at `session`'s kind.

    `pyspark.sql.functions`, `Column` and type parsing dispatch on one environment flag
    (SPARK_CONNECT_MODE_ENABLED): set, they build Connect expressions, which a classic
    DataFrame cannot use, and the other way round. So a process works with one kind at a
    time; every session made here sets the flag to its own kind.
    """
    _use_connect_api(is_connect(session))


def _use_connect_api(connect: bool) -> None:
    # pyspark reads this variable itself: the flag has to live in the environment.
    if connect:
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    else:
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


# PySpark logs every captured query error again, as JSON on stderr; the engine already
# reports it structurally (condition, SQLSTATE, parameters) in the module failure.
for _noisy in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)


def create_base_session(
    *,
    master: str | None = None,
    conf: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
    jars_dir: Path | None = None,
    app_name: str = "aqueduct",
) -> SparkSession:
    """The process-wide base SparkSession, with Delta configured.

    `master` (default local[2]): `sc://host:port` gives a Spark Connect session (the server's
    JVM settings are its own); `managed` and `auto` the project's managed server of
    `state_dir` when it is healthy, else a classic local session. Classic: `conf` wins over every default set here,
    and when Spark already runs in this process its session is returned unchanged (no setting
    is applied to a session other runs share): give per-run settings to `run_session(base, conf)`.
    Callers pass what `Settings` resolved (`Settings.base_session` does).
    """
    state = Path(state_dir or DEFAULT_STATE_DIR).expanduser().resolve()
    master = master or DEFAULT_MASTER
    if master in (MANAGED, AUTO):
        master = _managed_master(state, asked=master == MANAGED)
    if is_connect_url(master):
        return _connect_base_session(master)

    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    _use_connect_api(False)
    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate()

    _prepare_local_jvm(master)
    settings = engine_spark_conf(master, state, conf or {}, jars_dir)

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    log.info("SparkSession ready: master=%s, state=%s", master, state)
    return session


def _prepare_local_jvm(master: str) -> None:
    """What the JVM pyspark launches and its Python workers read from this process's environment."""
    if master.startswith("local"):
        # The machine's host name resolves oddly; a local driver must bind to loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def run_session(base: SparkSession, conf: Mapping[str, Any] | None = None) -> SparkSession:
    """A fresh session on the same JVM (or Connect server): its own temp views and SQL conf.

    It starts from the base session's SQL conf; `conf` (e.g. a Blueprint's
    `engine.spark.conf`) then applies to this run only. Keys that only act at JVM start
    cannot change here and are skipped with a warning.
    """
    use_api_of(base)
    session = _new_connect_session(connect_url_of(base)) if is_connect(base) else base.newSession()
    current = session.conf.getAll
    for key, value in base.conf.getAll.items():
        if current.get(key) != value:
            _try_set(session, key, value)
    current = session.conf.getAll
    for key, value in (conf or {}).items():
        text = conf_text(value)
        if current.get(str(key)) != text and not _try_set(session, str(key), text):
            log.warning(
                "Spark setting %s=%s only takes effect when the JVM starts; it is ignored "
                "for this run (it applies when set in engine.spark.conf before the first run)",
                key,
                text,
            )
    return session


def release_run_session(session: Any) -> None:
    """End a run's session: a Connect one is released on the server (its views, its cache).

    A classic run session holds nothing of its own beyond the JVM, which others share.
    """
    if not is_connect(session):
        return
    try:
        # The release call is retried for minutes against a dead server: ask the socket first.
        check_reachable(connect_url_of(session), timeout=1.0)
        session.stop()
    except Exception:  # noqa: BLE001 - best effort: the server may be gone already
        log.debug("could not release the Spark Connect session", exc_info=True)
        try:
            session.client.close()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------- Spark Connect

#: One base session per server URL and process (cheap, but each holds server-side state).
_CONNECT_BASES: dict[str, Any] = {}
#: The URL each Connect session was made for (pyspark keeps it only in private fields).
_CONNECT_URLS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _managed_master(state: Path, *, asked: bool) -> str:
    """The URL of the project's managed server when it answers, else the classic default:
    a warning when the server was `asked` for, an info line when it was only the default."""
    url, why = managed_url(state)
    if url is not None:
        return url
    log.log(
        logging.WARNING if asked else logging.INFO,
        "no healthy managed Spark Connect server (%s): using a classic in-process Spark "
        "session (%s) instead; `aqueduct spark up` keeps one warm",
        why,
        DEFAULT_MASTER,
    )
    return DEFAULT_MASTER


def _connect_base_session(url: str) -> Any:
    check_reachable(url)
    _use_connect_api(True)
    session = _CONNECT_BASES.get(url)
    if session is not None and not session.is_stopped and _answers(session):
        return session
    session = _new_connect_session(url)
    _CONNECT_BASES[url] = session
    log.info("Spark Connect session ready: %s", url)
    return session


def _new_connect_session(url: str) -> Any:
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    session = ConnectSession.builder.remote(url).create()
    _CONNECT_URLS[session] = url
    atexit.unregister(_close_connect_clients)
    atexit.register(_close_connect_clients)  # after the client's own hook: runs before it
    return session


def _answers(session: Any) -> bool:
    """A cached session still valid on its server (a restarted server forgets sessions)."""
    try:
        session.conf.get("spark.sql.shuffle.partitions")
    except Exception:  # noqa: BLE001 - any failure means: make a new one
        return False
    return True


def _close_connect_clients() -> None:
    """At exit: release our Connect sessions on live servers, and close every channel.

    Left alone, each pyspark client's own exit hook sends clean-up calls, which it retries
    for minutes when the server is gone, and a session's `__del__` closes its gRPC channel
    after grpc's threads have stopped and waits forever: the process would not exit. This
    hook is re-registered after every session we make, so it runs before theirs (atexit
    runs last-registered first); a closed client skips its own clean-up.
    """
    reachable: dict[str, bool] = {}
    for session, url in list(_CONNECT_URLS.items()):
        if url not in reachable:
            try:
                check_reachable(url, timeout=1.0)
                reachable[url] = True
            except SparkConnectUnavailable:
                reachable[url] = False
        try:
            if reachable[url] and not session.client.is_closed:
                session.client.release_session()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        try:
            session.client.close()
        except Exception:  # noqa: BLE001
            pass


def connect_url_of(session: Any) -> str:
    """The `sc://` URL a Connect session talks to."""
    url = _CONNECT_URLS.get(session)
    if url is None:
        url = session.client._builder.url.geturl()  # a session made outside this module
    return url


def _try_set(session: SparkSession, key: str, value: str) -> bool:
    try:
        session.conf.set(key, value)
    except Exception:  # noqa: BLE001 - static and core settings refuse changes after start
        return False
    return True


