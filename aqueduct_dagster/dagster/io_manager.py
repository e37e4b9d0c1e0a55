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
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from aqueduct_dagster.errors import EngineError

CONSUMERS_METADATA_KEY = "aqueduct/consumers"
CHECKPOINT_METADATA_KEY = "aqueduct/checkpoint"
#: Checkpoints kept per asset (older runs' are removed when a new one is written).
KEEP_CHECKPOINTS = 3


class UpstreamNotMaterialized(EngineError):
    """A downstream asset ran without its upstream in the same run."""


class SparkFrameIOManager(dg.IOManager):
    def __init__(self) -> None:
        self._frames: dict[dg.AssetKey, Any] = {}
        self._persisted: list[Any] = []

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if (context.definition_metadata or {}).get(CHECKPOINT_METADATA_KEY) and hasattr(obj, "write"):
            obj = _checkpoint(context, obj)
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
        saved = _find_checkpoint(key, context.upstream_output.run_id if context.upstream_output else None)
        if saved is not None:
            from aqueduct_dagster.engine.session import create_base_session

            context.log.info(f"reading '{key.to_user_string()}' from its checkpoint {saved}")
            return create_base_session().read.parquet(str(saved))
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

    def release(self) -> None:
        for frame in self._persisted:
            try:
                frame.unpersist()
            except Exception:  # noqa: BLE001 - the session may already be gone at run end
                pass
        self._frames.clear()
        self._persisted.clear()


def checkpoint_root() -> Path:
    from aqueduct_dagster.config import load_config

    return load_config().state_path.expanduser().resolve() / "checkpoints"


def _checkpoint(context: dg.OutputContext, frame: Any) -> Any:
    """Write `frame` once as Parquet; hand on the read-back (lineage cut at the checkpoint)."""
    folder = checkpoint_root().joinpath(*context.asset_key.path)
    target = folder / context.run_id
    frame.write.mode("overwrite").parquet(str(target))
    runs = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    context.add_output_metadata({"aqueduct/checkpoint_path": str(target)})
    return frame.sparkSession.read.parquet(str(target))


def _find_checkpoint(key: dg.AssetKey, run_id: str | None) -> Path | None:
    folder = checkpoint_root().joinpath(*key.path)
    if run_id and (folder / run_id / "_SUCCESS").exists():
        return folder / run_id
    if not folder.is_dir():
        return None
    complete = [p for p in folder.iterdir() if (p / "_SUCCESS").exists()]
    return max(complete, key=os.path.getmtime, default=None)


@dg.io_manager(description="Hands Spark DataFrames between assets of one run, in memory.")
def spark_frame_io_manager(_init_context: dg.InitResourceContext) -> Iterator[SparkFrameIOManager]:
    manager = SparkFrameIOManager()
    try:
        yield manager
    finally:
        manager.release()
