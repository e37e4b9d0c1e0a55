"""The SparkSession: classic (one JVM per process, one `newSession()` per run) or Spark Connect.

A master of `sc://host:port` gives Spark Connect sessions: the JVM is a server that outlives
runs (no cold start), and every run gets its own server-side session (its own session id),
so temp views and SQL conf never leak between concurrent runs. `managed` uses the project's
own server (`aqueduct spark up`) when it is healthy, else a classic in-process session.

Delta Lake and the JDBC drivers come from jars resolved once at set-up (`aqueduct jars
fetch`, see engine/jars.py) and handed to Spark through `spark.jars`; nothing is resolved
from Maven at run time. Small-data defaults (few shuffle partitions, a small Delta snapshot)
apply to local masters only and any of them can be overridden through `engine.spark.conf`.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.engine.jars import jars_dir
from aqueduct_dagster.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
#: Master value meaning: the project's managed Spark Connect server, else classic local.
MANAGED = "managed"
CONNECT_SCHEME = "sc://"
_CONNECT_DEFAULT_PORT = 15002

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

#: Defaults for local masters: tiny data on few cores. 200 shuffle partitions and a
#: 50-partition Delta snapshot turn a ten-row job into hundreds of empty tasks.
_LOCAL_DEFAULTS: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}


def default_state_dir() -> Path:
    """Where Spark keeps its warehouse and Derby files: env AQUEDUCT_STATE_DIR, else .aqueduct/."""
    return Path(os.environ.get("AQUEDUCT_STATE_DIR") or ".aqueduct").expanduser().resolve()


def resolve_master(engine: EngineBlock | None = None, master: str | None = None) -> str:
    """`master`, else the Blueprint's `engine.spark.master_url`, else env AQUEDUCT_SPARK_MASTER,
    else aqueduct.yml's `engine.spark.master_url`, else local[2]."""
    return (
        master
        or (engine.spark.master_url if engine is not None else None)
        or os.environ.get("AQUEDUCT_SPARK_MASTER")
        or _operator_spark().master_url
        or DEFAULT_MASTER
    )


def _operator_spark() -> Any:
    """aqueduct.yml's `engine.spark` block (master_url, conf): where an operator points runs
    at a cluster and sizes them."""
    from aqueduct_dagster.config import load_config

    return load_config().engine.spark


def is_connect_url(master: str | None) -> bool:
    return bool(master) and str(master).startswith(CONNECT_SCHEME)


def is_connect(session: Any) -> bool:
    """Whether `session` is a Spark Connect session (not a classic, Py4J-backed one)."""
    return type(session).__module__.startswith("pyspark.sql.connect")


class SparkConnectUnavailable(ConfigError):
    """The configured Spark Connect server does not answer."""

    transient = True


def use_api_of(session: Any) -> None:
    """Point pyspark's process-wide API switch at `session`'s kind.

    `pyspark.sql.functions`, `Column` and type parsing dispatch on one environment flag
    (SPARK_CONNECT_MODE_ENABLED): set, they build Connect expressions, which a classic
    DataFrame cannot use, and the other way round. So a process works with one kind at a
    time; every session made here sets the flag to its own kind.
    """
    _use_connect_api(is_connect(session))


def _use_connect_api(connect: bool) -> None:
    if connect:
        os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    else:
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


# PySpark logs every captured query error again, as JSON on stderr; the engine already
# reports it structurally (condition, SQLSTATE, parameters) in the module failure.
for _noisy in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)


def create_base_session(
    engine: EngineBlock | None = None,
    *,
    master: str | None = None,
    app_name: str = "aqueduct",
    state_dir: Path | None = None,
) -> SparkSession:
    """The process-wide base SparkSession, with Delta configured.

    The master is `master`, else `engine.spark.master_url`, else env AQUEDUCT_SPARK_MASTER,
    else local[2]. `sc://host:port` gives a Spark Connect session (the server's JVM settings
    are its own); `managed` the project's managed server when it is healthy, else a classic
    local session. Classic: `engine.spark.conf` wins over every default set here, and when
    Spark already runs in this process its session is returned unchanged (no setting is
    applied to a session other runs share): give per-run settings to `run_session(base, conf)`.
    """
    state = (state_dir or default_state_dir()).expanduser().resolve()
    master = resolve_master(engine, master)
    if master == MANAGED:
        master = _managed_master(state)
    if is_connect_url(master):
        return _connect_base_session(master)

    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    _use_connect_api(False)
    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate()

    spark_block = engine.spark if engine is not None else None
    if master.startswith("local"):
        # The machine's host name resolves oddly; a local driver must bind to loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The Blueprint's settings win over the operator's (aqueduct.yml) for the same key.
    user_conf = {**_operator_spark().conf, **(spark_block.conf if spark_block else {})}
    conf = engine_spark_conf(master, state, user_conf)

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    log.info("SparkSession ready: master=%s, state=%s", master, state)
    return session


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
        text = _conf_text(value)
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


def engine_spark_conf(master: str, state: Path, user_conf: Mapping[str, Any]) -> dict[str, str]:
    """The settings a JVM starts with: small-data defaults, warehouse, jars, Delta, Derby.

    Used for the classic in-process JVM and for the managed Spark Connect server alike.
    """
    (state / "warehouse").mkdir(parents=True, exist_ok=True)
    (state / "derby").mkdir(parents=True, exist_ok=True)
    local = master.startswith("local")
    conf: dict[str, str] = dict(_LOCAL_DEFAULTS) if local else {}
    conf["spark.sql.warehouse.dir"] = str(state / "warehouse")
    user = {str(k): _conf_text(v) for k, v in user_conf.items()}
    conf.update(user)

    # Jars, Delta and the Derby home are merged with the user's values, never replaced.
    jars = [str(p) for p in sorted(jars_dir().glob("*.jar"))]
    conf["spark.jars"] = _join(",", jars, user.get("spark.jars"))
    conf["spark.sql.extensions"] = _join(",", [_DELTA_EXTENSION], user.get("spark.sql.extensions"))
    conf.setdefault("spark.sql.catalog.spark_catalog", _DELTA_CATALOG)
    derby = f"-Dderby.system.home={state / 'derby'}"
    java_options = [derby]
    if "log4j2.configurationFile" not in user.get("spark.driver.extraJavaOptions", ""):
        java_options.append(f"-Dlog4j2.configurationFile={write_log_config(state).as_uri()}")
    conf["spark.driver.extraJavaOptions"] = _join(
        " ", java_options, user.get("spark.driver.extraJavaOptions")
    )
    return conf


#: Loggers that print a failed task's exception to the JVM's stderr, with the data value
#: that failed (`The value 'X' cannot be cast`): outside the Python process's Redactor, so
#: they are off. The failure still reaches the user, redacted, as the run's error.
_TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.util.Utils",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",
    "org.apache.spark.sql.execution.datasources.v2.DataWritingSparkTask",
)


def write_log_config(folder: Path, *, info_loggers: tuple[str, ...] = ()) -> Path:
    """The JVM's log4j2 configuration: warnings and errors to stderr, task failures off."""
    lines = [
        "rootLogger.level = warn",
        "rootLogger.appenderRef.stderr.ref = console",
        "appender.console.type = Console",
        "appender.console.name = console",
        "appender.console.target = SYSTEM_ERR",
        "appender.console.layout.type = PatternLayout",
        "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex",
    ]
    for number, name in enumerate(_TASK_FAILURE_LOGGERS):
        lines += [f"logger.quiet{number}.name = {name}", f"logger.quiet{number}.level = off"]
    for number, name in enumerate(info_loggers):
        lines += [f"logger.info{number}.name = {name}", f"logger.info{number}.level = info"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "log4j2.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- Spark Connect

#: One base session per server URL and process (cheap, but each holds server-side state).
_CONNECT_BASES: dict[str, Any] = {}
#: The URL each Connect session was made for (pyspark keeps it only in private fields).
_CONNECT_URLS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _managed_master(state: Path) -> str:
    """The URL of the project's managed server when it answers, else the classic default."""
    from aqueduct_dagster.engine.connect_server import managed_url

    url, why = managed_url(state)
    if url is not None:
        return url
    log.warning(
        "no healthy managed Spark Connect server (%s): using a classic in-process Spark "
        "session (%s) instead; `aqueduct spark up` starts the server",
        why,
        DEFAULT_MASTER,
    )
    return DEFAULT_MASTER


def connect_address(url: str) -> tuple[str, int]:
    """(host, port) of an `sc://host[:port][/;params]` URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.split(";", 1)[0])
    return parts.hostname or "localhost", parts.port or _CONNECT_DEFAULT_PORT


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at `url`: the Connect client itself retries for minutes."""
    host, port = connect_address(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise SparkConnectUnavailable(
            f"the Spark Connect server {url} does not answer ({error.strerror or error})",
            hint="start the project's server with `aqueduct spark up` (and set "
            "engine.spark.master_url: managed), or fix engine.spark.master_url / "
            "AQUEDUCT_SPARK_MASTER",
        ) from None


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


def _conf_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _join(separator: str, ours: list[str], theirs: str | None) -> str:
    parts = list(ours)
    if theirs:
        parts += [p for p in theirs.split(separator) if p and p not in parts]
    return separator.join(parts)
