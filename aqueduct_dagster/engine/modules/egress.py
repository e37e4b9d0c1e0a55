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

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import EgressConfig
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.filesystem import HadoopPath
from aqueduct_dagster.engine.modules.common import (
    as_list,
    reader_options,
    schema_facts,
    single_input,
)
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.secrets import reveal_secrets

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, DataFrameWriter, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

log = logging.getLogger(__name__)

_SPARK_MODES = {
    "overwrite": "overwrite",
    "append": "append",
    "error": "errorifexists",
    "errorifexists": "errorifexists",
    "ignore": "ignore",
    "overwrite_partitions": "overwrite",
}
#: Config keys accepted by the schema but not acted on by this engine yet.
_NOT_IMPLEMENTED = ("maintenance", "register_as_table", "on_new_columns", "watermark_key")


def execute_egress(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: EgressConfig = module.config
    frame = single_input(module, inputs)
    if bool(config.path) == bool(config.table):
        raise ConditionError(
            "AQ_EGRESS_TARGET",
            "an Egress writes to exactly one of `path` and `table`",
            {"path": config.path, "table": config.table},
            hint="set config.path (a folder) or config.table (a catalog table)",
        )
    fmt = (config.format or ("delta" if config.table else "parquet")).lower()
    mode = config.mode or "error"
    if fmt == "depot":
        raise ConditionError(
            "AQ_EGRESS_UNSUPPORTED",
            "format 'depot' is written by the depot store, not by the Spark engine",
            {"format": fmt},
        )
    if mode == "merge" and fmt != "delta":
        raise ConditionError(
            "AQ_EGRESS_MERGE_REQUIRES_DELTA",
            f"mode: merge needs format: delta (this Egress writes '{fmt}')",
            {"format": fmt, "mode": mode},
            hint="set format: delta, or use mode: overwrite / append",
        )
    if config.replace_where and fmt != "delta":
        raise ConditionError(
            "AQ_EGRESS_UNSUPPORTED",
            f"replace_where needs format: delta (this Egress writes '{fmt}')",
            {"format": fmt, "key": "replace_where"},
            hint="use mode: overwrite_partitions with partition_by for file formats",
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

    target = reveal_secrets(config.path) if config.path else reveal_secrets(config.table)
    write = _write_delta if fmt == "delta" else _write_files
    metadata.update(write(spark, written_frame, config, fmt, mode, options, target))
    # Downstream readers get the frame as it came in, not its file layout.
    return ModuleResult(outputs={"main": frame}, metadata=metadata)


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
    path = HadoopPath(spark, target)
    existed = path.exists()
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
        _writer(frame, fmt, "errorifexists", options, config).save(str(staging))
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
    from delta.tables import DeltaTable

    by_name = bool(config.table)
    exists = (
        spark.catalog.tableExists(target) if by_name else DeltaTable.isDeltaTable(spark, target)
    )
    if mode == "merge" and exists:
        keys = as_list(config.merge_key)
        if not keys:
            raise ConditionError(
                "AQ_EGRESS_MERGE_KEY_MISSING",
                "mode: merge needs `merge_key` (a column or a list of columns)",
                {"key": "merge_key"},
                hint="set merge_key: [id] to the columns that identify a row",
            )
        table = DeltaTable.forName(spark, target) if by_name else DeltaTable.forPath(spark, target)
        # Null-safe: a row with a NULL key matches itself, so a re-run does not duplicate it.
        condition = " AND ".join(f"target.`{k}` <=> source.`{k}`" for k in keys)
        (
            table.alias("target")
            .merge(frame.alias("source"), condition)
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .execute()
        )
    else:
        if mode == "merge" and not as_list(config.merge_key):
            raise ConditionError(
                "AQ_EGRESS_MERGE_KEY_MISSING",
                "mode: merge needs `merge_key` (a column or a list of columns)",
                {"key": "merge_key"},
                hint="set merge_key: [id] to the columns that identify a row",
            )
        spark_mode = "errorifexists" if mode == "merge" else _SPARK_MODES[mode]
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
    from delta.tables import DeltaTable

    table = DeltaTable.forName(spark, target) if by_name else DeltaTable.forPath(spark, target)
    last = table.history(1).select("version", "operation", "operationMetrics").collect()[0]
    metrics = {k: _number(v) for k, v in (last["operationMetrics"] or {}).items()}
    facts: dict[str, Any] = {
        "delta_version": int(last["version"]),
        "delta_operation": last["operation"],
        "operation_metrics": metrics,
    }
    if "numOutputRows" in metrics:
        facts["rows_written"] = metrics["numOutputRows"]
    return facts


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value
