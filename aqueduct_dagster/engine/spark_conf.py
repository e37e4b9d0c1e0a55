"""The settings a Spark JVM starts with (the classic in-process one and the managed Connect
server's alike): small-data defaults, the warehouse, jars, Delta, Derby and a quiet log."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aqueduct_dagster.engine.jars import jars_dir

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


def engine_spark_conf(
    master: str, state: Path, user_conf: Mapping[str, Any], jars_folder: Path | None = None
) -> dict[str, str]:
    """The settings a JVM starts with: small-data defaults, warehouse, jars, Delta, Derby.

    Used for the classic in-process JVM and for the managed Spark Connect server alike.
    `jars_folder`: the configured jars folder (AQUEDUCT_JARS_DIR), else the default one.
    """
    (state / "warehouse").mkdir(parents=True, exist_ok=True)
    local = master.startswith("local")
    conf: dict[str, str] = dict(_LOCAL_DEFAULTS) if local else {}
    conf["spark.sql.warehouse.dir"] = str(state / "warehouse")
    user = {str(k): conf_text(v) for k, v in user_conf.items()}
    conf.update(user)

    # Jars, Delta and the Derby home are merged with the user's values, never replaced.
    jars = [str(p) for p in sorted(jars_dir(jars_folder).glob("*.jar"))]
    conf["spark.jars"] = _join(",", jars, user.get("spark.jars"))
    conf["spark.sql.extensions"] = _join(",", [_DELTA_EXTENSION], user.get("spark.sql.extensions"))
    conf.setdefault("spark.sql.catalog.spark_catalog", _DELTA_CATALOG)
    java_options = []
    if user.get("spark.sql.catalogImplementation", "").lower() != "hive":
        # Derby files stay in the state folder. A Blueprint that asks for the Hive catalog
        # gets Hive's embedded metastore where Spark keeps it (the working folder), shared with
        # any Spark program run there (a populate script), as Aqueduct runs it.
        (state / "derby").mkdir(parents=True, exist_ok=True)
        java_options.append(f"-Dderby.system.home={state / 'derby'}")
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


def conf_text(value: Any) -> str:
    """A Spark setting's value as Spark reads it (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _join(separator: str, ours: list[str], theirs: str | None) -> str:
    parts = list(ours)
    if theirs:
        parts += [p for p in theirs.split(separator) if p and p not in parts]
    return separator.join(parts)
