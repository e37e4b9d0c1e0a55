"""Hands Spark DataFrames between the assets of one run, lazily and in memory.

Spark DataFrames are plans bound to a live SparkSession; they cannot be pickled (Dagster's
default IO manager fails with CONTEXT_ONLY_VALID_ON_DRIVER) and should not be: handing the
plan on means downstream assets fuse into the same Spark jobs. A frame that feeds several
consumers is persisted once so its lineage is not recomputed per consumer.

A module with `checkpoint: true` (or a Blueprint with it) also has its frame written as
Parquet under `<state>/checkpoints/<asset>/<run id>/`, and downstream reads that copy. A run
that does not compute the module itself (Dagster's re-execution from failure, or
materializing only downstream assets) then loads the checkpoint of the run that produced it,
else the newest one, instead of failing for want of an in-memory frame.

The checkpoint folder and the session that reads a checkpoint back are the Spark resource's
(`SparkResource`): the same state folder and master the run's steps use.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from aqueduct_dagster.dagster.resources import SparkResource
from aqueduct_dagster.errors import EngineError

CONSUMERS_METADATA_KEY = "aqueduct/consumers"
CHECKPOINT_METADATA_KEY = "aqueduct/checkpoint"
#: Checkpoints kept per asset (older runs' are removed when a new one is written).
KEEP_CHECKPOINTS = 3


class UpstreamNotMaterialized(EngineError):
    """A downstream asset ran without its upstream in the same run."""


class SparkFrameIOManager(dg.IOManager):
    def __init__(self, spark: SparkResource) -> None:
        self.spark = spark
        self._frames: dict[dg.AssetKey, Any] = {}
        self._persisted: list[Any] = []

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if (context.definition_metadata or {}).get(CHECKPOINT_METADATA_KEY) and hasattr(obj, "write"):
            obj = _checkpoint(self.checkpoint_root(), context, obj)
            self._frames[context.asset_key] = obj
            return
        consumers = (context.definition_metadata or {}).get(CONSUMERS_METADATA_KEY, 0)
        if consumers > 1 and hasattr(obj, "persist"):
            obj = obj.persist()
            self._persisted.append(obj)
        self._frames[context.asset_key] = obj

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if key in self._frames:
            return self._frames[key]
        run_id = context.upstream_output.run_id if context.upstream_output else None
        saved = _find_checkpoint(self.checkpoint_root(), key, run_id)
        if saved is not None:
            context.log.info(f"reading '{key.to_user_string()}' from its checkpoint {saved}")
            return self.spark.base_session().read.parquet(str(saved))
        downstream = context.op_def.name if context.op_def else "this asset"
        raise UpstreamNotMaterialized(
            f"asset '{key.to_user_string()}' was not materialized in this run, so "
            f"'{downstream}' has no input: Blueprint assets hand Spark DataFrames in memory "
            "within one run",
            hint=(
                "materialize the upstream assets in the same run, e.g. "
                f"`dagster asset materialize --select '+{key.to_user_string()}+'` or run the "
                "blueprint's job"
            ),
        )

    def checkpoint_root(self) -> Path:
        return self.spark.state_path / "checkpoints"

    def release(self) -> None:
        for frame in self._persisted:
            try:
                frame.unpersist()
            except Exception:  # noqa: BLE001 - the session may already be gone at run end
                pass
        self._frames.clear()
        self._persisted.clear()


def _checkpoint(root: Path, context: dg.OutputContext, frame: Any) -> Any:
    """Write `frame` once as Parquet; hand on the read-back (lineage cut at the checkpoint)."""
    folder = root.joinpath(*context.asset_key.path)
    target = folder / context.run_id
    frame.write.mode("overwrite").parquet(str(target))
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    context.add_output_metadata({"aqueduct/checkpoint_path": str(target)})
    return frame.sparkSession.read.parquet(str(target))


def _find_checkpoint(root: Path, key: dg.AssetKey, run_id: str | None) -> Path | None:
    folder = root.joinpath(*key.path)
    if run_id and (folder / run_id / "_SUCCESS").exists():
        return folder / run_id
    if not folder.is_dir():
        return None
    complete = [p for p in folder.iterdir() if (p / "_SUCCESS").exists()]
    return max(complete, key=os.path.getmtime, default=None)


def spark_frame_io_manager(spark_resource_key: str) -> dg.IOManagerDefinition:
    """The IO manager, reading checkpoints through the Spark resource under `spark_resource_key`."""

    @dg.io_manager(
        description="Hands Spark DataFrames between assets of one run, in memory.",
        required_resource_keys={spark_resource_key},
    )
    def io_manager(init_context: dg.InitResourceContext) -> Iterator[SparkFrameIOManager]:
        manager = SparkFrameIOManager(getattr(init_context.resources, spark_resource_key))
        try:
            yield manager
        finally:
            manager.release()

    return io_manager
