"""Egress: write a frame (the only place, besides Assert, where Spark runs a job).

A failed run never leaves a half-written target where a good one was:

* file formats, mode overwrite: the frame is written to a hidden staging sibling first,
  then swapped in (old -> backup, staging -> path, backup deleted). If the write fails,
  the old data is untouched and the staging folder is removed.
* Delta: every write is one transaction; a failed one leaves the previous version readable.
  `merge` upserts on `merge_key` (update all columns on a match, insert otherwise) and
  creates the table on the first run.

Metadata never holds revealed secrets. For Delta it holds the new table version and the
commit's operation metrics (rows written among them), read from the table history.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aqueduct_dagster.blueprint.models import EgressConfig
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.filesystem import HadoopPath, LocalPath, spark_location, spark_path
from aqueduct_dagster.engine.modules.common import (
    as_list,
    reader_options,
    schema_facts,
    single_input,
)
from aqueduct_dagster.engine.modules.depot import DEPOT, execute_depot_egress
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.session import is_connect

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, DataFrameWriter, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

log = logging.getLogger(__name__)

_SPARK_MODES = {
    "overwrite": "overwrite",
    "append": "append",
    # "error", not its alias "errorifexists": a Spark Connect writer only knows the former.
    "error": "error",
    "errorifexists": "error",
    "ignore": "ignore",
    "overwrite_partitions": "overwrite",
}
#: Config keys accepted by the schema but not acted on by this engine yet.
_NOT_IMPLEMENTED = ("maintenance", "on_new_columns", "watermark_key")


def execute_egress(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: EgressConfig = module.config
    frame = single_input(module, inputs)
    if (config.format or "").lower() == DEPOT:
        return execute_depot_egress(module, frame)
    if bool(config.path) == bool(config.table):
        raise ConditionError(
            "AQ_EGRESS_TARGET",
            "an Egress writes to exactly one of `path` and `table`",
            {"path": config.path, "table": config.table},
            hint="set config.path (a folder) or config.table (a catalog table)",
        )
    fmt = (config.format or ("delta" if config.table else "parquet")).lower()
    mode = config.mode or "error"
    if mode == "merge" and fmt != "delta":
        raise ConditionError(
            "AQ_EGRESS_MERGE_REQUIRES_DELTA",
            f"mode: merge needs format: delta (this Egress writes '{fmt}')",
            {"format": fmt, "mode": mode},
            hint="set format: delta, or use mode: overwrite / append",
        )
    if config.replace_where and (mode not in ("overwrite", "overwrite_partitions") or config.table and fmt != "delta"):
        raise ConditionError(
            "AQ_EGRESS_UNSUPPORTED",
            f"replace_where replaces the rows matching it: it needs mode overwrite or "
            f"overwrite_partitions{'' if fmt == 'delta' else ' and a path'} (this Egress: "
            f"mode {mode}{', table' if config.table else ''})",
            {"format": fmt, "key": "replace_where", "mode": mode},
            hint="set mode: overwrite_partitions, or drop replace_where",
        )

    written_frame = _shape(frame, config)
    metadata: dict[str, Any] = {
        "format": fmt,
        "mode": mode,
        "path": config.path,  # as written: secret tokens stay tokens
        "table": config.table,
        "partition_by": list(config.partition_by or []),
        "columns": schema_facts(frame),
    }
    unused = [key for key in _NOT_IMPLEMENTED if getattr(config, key) is not None]
    if unused:
        log.warning("Egress '%s': %s not applied by the Spark engine", module.id, ", ".join(unused))
        metadata["not_applied"] = unused

    options = reader_options(config.options)
    if fmt == "csv":
        options.setdefault("header", "true" if config.header in (None, True) else "false")
    if fmt == "delta":
        if config.merge_schema:
            options.setdefault("mergeSchema", "true")
        if config.overwrite_schema:
            options.setdefault("overwriteSchema", "true")
        if config.replace_where:
            options.setdefault("replaceWhere", config.replace_where)
    if mode == "overwrite_partitions" and config.partition_by:
        options["partitionOverwriteMode"] = "dynamic"

    target = (
        spark_location(spark, reveal_secrets(config.path))
        if config.path
        else reveal_secrets(config.table)
    )
    write = _write_delta if fmt == "delta" else _write_files
    metadata.update(write(spark, written_frame, config, fmt, mode, options, target))
    if config.register_as_table and config.path:
        metadata["registered_as"] = _register_table(spark, config.register_as_table, fmt, target)
    # Downstream readers get the frame as it came in, not its file layout.
    return ModuleResult(outputs={"main": frame}, metadata=metadata)


def _register_table(spark: SparkSession, name: str, fmt: str, location: str) -> str:
    """Point catalog table `name` at what was just written (later modules read it by name).

    Only catalog metadata changes: the table is external, dropping it never touches the data.
    """
    quoted = ".".join(f"`{part}`" for part in name.split("."))
    if not urlsplit(location).scheme and not os.path.isabs(location):
        # The write resolved a relative path against the working folder; a table LOCATION
        # would resolve it against the warehouse, where nothing was written.
        location = os.path.abspath(location)
    where = location.replace("'", "\\'")
    spark.sql(f"DROP TABLE IF EXISTS {quoted}")
    spark.sql(f"CREATE TABLE {quoted} USING {fmt} LOCATION '{where}'")
    return name


def _shape(frame: DataFrame, config: EgressConfig) -> DataFrame:
    """Apply `repartition` / `coalesce` (True means: by the partition columns / to one file)."""
    from pyspark.sql import functions as F

    keys = [F.col(c) for c in config.partition_by or []]
    if config.repartition is True:
        frame = frame.repartition(*keys) if keys else frame
    elif isinstance(config.repartition, int) and config.repartition > 0:
        frame = frame.repartition(config.repartition, *keys)
    if config.coalesce is True:
        frame = frame.coalesce(1)
    elif isinstance(config.coalesce, int) and config.coalesce > 0:
        frame = frame.coalesce(config.coalesce)
    return frame


def _writer(
    frame: DataFrame, fmt: str, mode: str, options: dict[str, str], config: EgressConfig
) -> DataFrameWriter:
    writer = frame.write.format(fmt).mode(mode).options(**options)
    if config.partition_by:
        writer = writer.partitionBy(*config.partition_by)
    return writer


# --------------------------------------------------------------------------- file formats


def _write_files(
    spark: SparkSession,
    frame: DataFrame,
    config: EgressConfig,
    fmt: str,
    mode: str,
    options: dict[str, str],
    target: str,
) -> dict[str, Any]:
    if config.table:
        existed = spark.catalog.tableExists(target)
        _writer(frame, fmt, _SPARK_MODES[mode], options, config).saveAsTable(target)
        return {"written": not (mode == "ignore" and existed)}
    path = spark_path(spark, target)
    existed = path.exists()
    if config.replace_where:
        frame = _replacing_where(spark, frame, path, fmt, options, config.replace_where)
        _overwrite_by_swap(spark, frame, path, fmt, options, config)
        return {"written": True, "target_uri": str(path), "replace_where": config.replace_where}
    dynamic = mode == "overwrite_partitions" and bool(config.partition_by)
    if mode in ("overwrite", "overwrite_partitions") and not dynamic:
        _overwrite_by_swap(spark, frame, path, fmt, options, config)
    else:
        # append/error/ignore keep Spark's own semantics; Spark's dynamic partition overwrite
        # stages its output and moves whole partitions at commit.
        _writer(frame, fmt, _SPARK_MODES[mode], options, config).save(target)
        if dynamic or mode == "append":
            spark.catalog.refreshByPath(str(path))
    return {"written": not (mode == "ignore" and existed), "target_uri": str(path)}


def _replacing_where(
    spark: SparkSession,
    frame: DataFrame,
    path: HadoopPath,
    fmt: str,
    options: dict[str, str],
    predicate: str,
) -> DataFrame:
    """What the target holds after replacing the rows matching `predicate` (as Delta's
    replaceWhere does): its current rows that do not match, plus the new rows that do.

    The old rows are read lazily; the overwrite writes to a staging sibling before the swap,
    so reading the target while writing is safe.
    """
    new_rows = frame.where(f"coalesce(({predicate}), false)")
    if not path.exists():
        return new_rows
    reader = spark.read.format(fmt).options(**options)
    if fmt in ("csv", "json"):
        reader = reader.schema(frame.schema)  # no inference pass over the old files
    kept = reader.load(str(path)).where(f"NOT coalesce(({predicate}), false)")
    return kept.unionByName(new_rows, allowMissingColumns=True)


def _overwrite_by_swap(
    spark: SparkSession,
    frame: DataFrame,
    path: HadoopPath,
    fmt: str,
    options: dict[str, str],
    config: EgressConfig,
) -> None:
    """Write to a staging sibling, then swap it in; the old data survives any failure."""
    token = uuid.uuid4().hex[:12]
    # A leading '_' keeps both folders out of Spark's listing of the parent folder.
    staging = path.sibling(f"_aq_staging_{path.name}_{token}")
    backup = path.sibling(f"_aq_backup_{path.name}_{token}")
    try:
        _writer(frame, fmt, "error", options, config).save(str(staging))
        if path.exists():
            if not path.rename_to(backup):
                raise _swap_failed(path, "could not move the old data aside")
            if not staging.rename_to(path):
                backup.rename_to(path)
                raise _swap_failed(path, "could not move the new data in; the old data is back")
            backup.delete()
        else:
            path.make_parent_dirs()
            if not staging.rename_to(path):
                raise _swap_failed(path, "could not move the new data in")
    finally:
        if staging.exists():
            staging.delete()
    # Frames that listed the old files must list again.
    spark.catalog.refreshByPath(str(path))


def _swap_failed(path: HadoopPath, what: str) -> ConditionError:
    return ConditionError(
        "AQ_EGRESS_SWAP_FAILED",
        f"overwrite of {path} failed: {what}",
        {"path": str(path)},
        hint="check permissions on the target's parent folder",
    )


# --------------------------------------------------------------------------- Delta


def _write_delta(
    spark: SparkSession,
    frame: DataFrame,
    config: EgressConfig,
    fmt: str,
    mode: str,
    options: dict[str, str],
    target: str,
) -> dict[str, Any]:
    by_name = bool(config.table)
    # Only merge and ignore act on whether the table is there; asking costs a Spark
    # command on a Connect server (a second one when there is no table), so others do not.
    exists = mode in ("merge", "ignore") and _delta_exists(spark, target, by_name)
    if mode == "merge" and exists:
        keys = as_list(config.merge_key)
        if not keys:
            raise ConditionError(
                "AQ_EGRESS_MERGE_KEY_MISSING",
                "mode: merge needs `merge_key` (a column or a list of columns)",
                {"key": "merge_key"},
                hint="set merge_key: [id] to the columns that identify a row",
            )
        # Null-safe: a row with a NULL key matches itself, so a re-run does not duplicate it.
        condition = " AND ".join(f"target.{_quoted(k)} <=> source.{_quoted(k)}" for k in keys)
        # SQL, not the DeltaTable API: it runs the same on a classic session and on a Spark
        # Connect server (which has Delta's SQL extension but not its Connect plugin).
        statement = (
            f"MERGE INTO {_delta_ref(target, by_name)} AS target USING __SOURCE__ AS source "
            f"ON {condition} WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
        )
        # `{source}` is pyspark's DataFrame placeholder; any other brace is text.
        statement = statement.replace("{", "{{").replace("}", "}}")
        spark.sql(statement.replace("__SOURCE__", "{source}"), source=frame)
    else:
        if mode == "merge" and not as_list(config.merge_key):
            raise ConditionError(
                "AQ_EGRESS_MERGE_KEY_MISSING",
                "mode: merge needs `merge_key` (a column or a list of columns)",
                {"key": "merge_key"},
                hint="set merge_key: [id] to the columns that identify a row",
            )
        spark_mode = "error" if mode == "merge" else _SPARK_MODES[mode]
        writer = _writer(frame, fmt, spark_mode, options, config)
        if by_name:
            writer.saveAsTable(target)
        else:
            writer.save(target)
    if mode == "ignore" and exists:
        version = _delta_commit(spark, target, by_name)["delta_version"]
        return {"written": False, "delta_version": version}
    return {"written": True, **_delta_commit(spark, target, by_name)}


def _delta_commit(spark: SparkSession, target: str, by_name: bool) -> dict[str, Any]:
    """Version and operation metrics of the table's last commit (reads the log, not the data)."""
    last = None
    if not is_connect(spark):
        from delta.tables import DeltaTable

        table = DeltaTable.forName(spark, target) if by_name else DeltaTable.forPath(spark, target)
        last = _last_commit_from_log(spark, table)
    elif (log_folder := _local_delta_log(spark, target, by_name)) is not None:
        last = _last_commit_from_local_log(log_folder)
    if last is None:  # the history reads the same facts, with a Spark job of its own
        history = spark.sql(f"DESCRIBE HISTORY {_delta_ref(target, by_name)} LIMIT 1")
        last = history.select("version", "operation", "operationMetrics").collect()[0]
    metrics = {k: _number(v) for k, v in (last["operationMetrics"] or {}).items()}
    facts: dict[str, Any] = {
        "delta_version": int(last["version"]),
        "delta_operation": last["operation"],
        "operation_metrics": metrics,
    }
    if "numOutputRows" in metrics:
        facts["rows_written"] = metrics["numOutputRows"]
    if last.get("profile") if isinstance(last, dict) else None:
        # What this commit added (all of it for an overwrite): kept with the run as evidence.
        facts["profile"] = last["profile"]
    return facts


def _local_delta_log(spark: SparkSession, target: str, by_name: bool) -> Path | None:
    """The `_delta_log` folder of a path table, when a Connect server on this machine writes
    it (the managed one does): its commits can then be read here, without a Spark command."""
    if by_name or urlsplit(target).scheme not in ("", "file"):
        return None
    try:
        location = spark_path(spark, target)
    except ConditionError:  # a remote server's filesystem
        return None
    return location.path / "_delta_log" if isinstance(location, LocalPath) else None


def _last_commit_from_local_log(log_folder: Path) -> dict[str, Any] | None:
    """The newest commit of a local `_delta_log`: the highest numbered `NNN.json`. None
    when the folder holds none, or a newer commit waits in `_staged_commits` (coordinated
    commits, not yet copied into the log): then history() is asked."""
    try:
        versions = [int(p.stem) for p in log_folder.glob("*.json") if p.stem.isdigit()]
        if not versions:
            return None
        version = max(versions)
        staged = [name.split(".", 1)[0] for name in _names(log_folder / "_staged_commits")]
        if any(prefix.isdigit() and int(prefix) > version for prefix in staged):
            return None
        text = (log_folder / f"{version:020d}.json").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return _commit_facts(version, text)


def _names(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir()] if folder.is_dir() else []


def _last_commit_from_log(spark: SparkSession, table: Any) -> dict[str, Any] | None:
    """The newest commit's version, operation and metrics, read from its `_delta_log` file
    on the driver. None when it cannot be read that way (then history() is used)."""
    try:
        log = table._jdt.deltaLog()
        # The snapshot this process's own write just installed: no listing, no Spark job.
        version = int(log.unsafeVolatileSnapshot().version())
        jvm = spark.sparkContext._jvm
        path_class = jvm.org.apache.hadoop.fs.Path
        commit = path_class(log.logPath(), f"{version:020d}.json")
        fs = commit.getFileSystem(spark._jsparkSession.sessionState().newHadoopConf())
        if fs.exists(path_class(log.logPath(), f"{version + 1:020d}.json")):
            return None  # someone committed since: let history() say which is newest
        stream = fs.open(commit)
        try:
            text = bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream)).decode("utf-8")
        finally:
            stream.close()
    except Exception:  # noqa: BLE001 - internal API or log layout not as expected
        return None
    return _commit_facts(version, text)


def _commit_facts(version: int, text: str) -> dict[str, Any] | None:
    """Version, operation, metrics and added-files profile of one commit file's text."""
    found = None
    adds = []
    for line in text.splitlines():
        if '"commitInfo"' in line:
            info = json.loads(line)["commitInfo"]
            found = {
                "version": version,
                "operation": info.get("operation"),
                "operationMetrics": info.get("operationMetrics") or {},
            }
        elif '"add"' in line:
            adds.append(json.loads(line).get("add") or {})
    if found is not None:
        found["profile"] = files_profile(adds)
    return found


def files_profile(adds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Rows, NULLs and min/max per column of the files one commit added, summed from the
    statistics Delta wrote into the log with them (no Spark job). None without statistics."""
    rows, nulls, lows, highs = 0, {}, {}, {}
    for add in adds:
        try:
            stats = json.loads(add.get("stats") or "null")
        except ValueError:
            return None
        if not isinstance(stats, dict) or "numRecords" not in stats:
            return None
        rows += int(stats["numRecords"])
        for column, count in (stats.get("nullCount") or {}).items():
            if isinstance(count, int):
                nulls[column] = nulls.get(column, 0) + count
        for column, value in (stats.get("minValues") or {}).items():
            if not isinstance(value, dict):
                lows[column] = value if column not in lows else min(lows[column], value)
        for column, value in (stats.get("maxValues") or {}).items():
            if not isinstance(value, dict):
                highs[column] = value if column not in highs else max(highs[column], value)
    return {"rows": rows, "null_count": nulls, "min": lows, "max": highs} if adds else None


def _delta_exists(spark: SparkSession, target: str, by_name: bool) -> bool:
    if by_name:
        return spark.catalog.tableExists(target)
    if not is_connect(spark):
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, target)
    if (log_folder := _local_delta_log(spark, target, by_name)) is not None:
        # A table is there once its log holds a commit (or a checkpoint of them).
        return log_folder.is_dir() and any(
            p.suffix in (".json", ".parquet") and p.name[:1].isdigit() for p in log_folder.iterdir()
        )
    try:  # a Connect server answers Delta questions through SQL only
        detail = spark.sql(f"DESCRIBE DETAIL {_delta_ref(target, False)}").collect()
    except Exception:  # noqa: BLE001 - no table there (or not a Delta one)
        return False
    return bool(detail) and str(detail[0]["format"]).lower() == "delta"


def _delta_ref(target: str, by_name: bool) -> str:
    """The Delta table in SQL: a quoted catalog name, or delta.`path`."""
    if by_name:
        return ".".join(_quoted(part) for part in target.split("."))
    return f"delta.{_quoted(target)}"


def _quoted(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
