"""The SparkSession: one per process (the JVM), one `newSession()` per run.

Delta Lake and the JDBC drivers come from jars resolved once at set-up (`make jars` fills
`.jars/`) and handed to Spark through `spark.jars`; nothing is resolved from Maven at run
time. Small-data defaults (few shuffle partitions, a small Delta snapshot) apply to local
masters only and any of them can be overridden through `engine.spark.conf`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MASTER = "local[2]"

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


def jars_dir() -> Path:
    """The folder of JVM jars Spark gets via `spark.jars` (env AQUEDUCT_JARS_DIR, else .jars/)."""
    configured = os.environ.get("AQUEDUCT_JARS_DIR")
    folder = Path(configured).expanduser() if configured else REPO_ROOT / ".jars"
    if not folder.is_dir() or not any(folder.glob("*.jar")):
        source = "AQUEDUCT_JARS_DIR" if configured else "the default jars folder"
        raise ConfigError(
            f"no jars in {folder} ({source}); Spark needs the Delta Lake and JDBC jars",
            hint="run `make jars` once (it resolves them with Maven into .jars/), "
            "or point AQUEDUCT_JARS_DIR at a folder that holds them",
        )
    if not any(folder.glob("delta-spark_*.jar")):
        raise ConfigError(
            f"{folder} holds no delta-spark jar",
            hint="run `make jars` again; jvm/pom.xml lists the jars the engine needs",
        )
    return folder


def default_state_dir() -> Path:
    """Where Spark keeps its warehouse and Derby files: env AQUEDUCT_STATE_DIR, else .aqueduct/."""
    return Path(os.environ.get("AQUEDUCT_STATE_DIR") or ".aqueduct").expanduser().resolve()


def resolve_master(engine: EngineBlock | None = None, master: str | None = None) -> str:
    """`master`, else `engine.spark.master_url`, else env AQUEDUCT_SPARK_MASTER, else local[2]."""
    return (
        master
        or (engine.spark.master_url if engine is not None else None)
        or os.environ.get("AQUEDUCT_SPARK_MASTER")
        or DEFAULT_MASTER
    )


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
    """The process-wide SparkSession (getOrCreate), with Delta configured.

    The master is `master`, else `engine.spark.master_url`, else env AQUEDUCT_SPARK_MASTER,
    else local[2]. `engine.spark.conf` wins over every default set here. When Spark already
    runs in this process, its session is returned unchanged (no setting is applied to a
    session other runs share): give per-run settings to `run_session(base, conf)`.
    """
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    if SparkContext._active_spark_context is not None:
        return SparkSession.builder.getOrCreate()

    spark_block = engine.spark if engine is not None else None
    master = resolve_master(engine, master)
    local = master.startswith("local")
    if local:
        # The machine's host name resolves oddly; a local driver must bind to loopback.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    state = (state_dir or default_state_dir()).expanduser().resolve()
    (state / "warehouse").mkdir(parents=True, exist_ok=True)
    (state / "derby").mkdir(parents=True, exist_ok=True)

    conf: dict[str, str] = dict(_LOCAL_DEFAULTS) if local else {}
    conf["spark.sql.warehouse.dir"] = str(state / "warehouse")
    user = {str(k): _conf_text(v) for k, v in (spark_block.conf if spark_block else {}).items()}
    conf.update(user)

    # Jars, Delta and the Derby home are merged with the user's values, never replaced.
    jars = [str(p) for p in sorted(jars_dir().glob("*.jar"))]
    conf["spark.jars"] = _join(",", jars, user.get("spark.jars"))
    conf["spark.sql.extensions"] = _join(",", [_DELTA_EXTENSION], user.get("spark.sql.extensions"))
    conf.setdefault("spark.sql.catalog.spark_catalog", _DELTA_CATALOG)
    derby = f"-Dderby.system.home={state / 'derby'}"
    conf["spark.driver.extraJavaOptions"] = _join(
        " ", [derby], user.get("spark.driver.extraJavaOptions")
    )

    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    log.info("SparkSession ready: master=%s, state=%s", master, state)
    return session


def run_session(base: SparkSession, conf: Mapping[str, Any] | None = None) -> SparkSession:
    """A fresh session on the same JVM: its own temp views and SQL conf, shared cache.

    It starts from the base session's SQL conf; `conf` (e.g. a Blueprint's
    `engine.spark.conf`) then applies to this run only. Keys that only act at JVM start
    cannot change here and are skipped with a warning.
    """
    session = base.newSession()
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
