"""Hands Spark DataFrames between the assets of one run, lazily and in memory.

Spark DataFrames are plans bound to a live SparkSession; they cannot be pickled (Dagster's
default IO manager fails with CONTEXT_ONLY_VALID_ON_DRIVER) and should not be: handing the
plan on means downstream assets fuse into the same Spark jobs. A frame that feeds several
consumers is persisted once so its lineage is not recomputed per consumer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg

from aqueduct_dagster.errors import EngineError

CONSUMERS_METADATA_KEY = "aqueduct/consumers"


class UpstreamNotMaterialized(EngineError):
    """A downstream asset ran without its upstream in the same run."""


class SparkFrameIOManager(dg.IOManager):
    def __init__(self) -> None:
        self._frames: dict[dg.AssetKey, Any] = {}
        self._persisted: list[Any] = []

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
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


@dg.io_manager(description="Hands Spark DataFrames between assets of one run, in memory.")
def spark_frame_io_manager(_init_context: dg.InitResourceContext) -> Iterator[SparkFrameIOManager]:
    manager = SparkFrameIOManager()
    try:
        yield manager
    finally:
        manager.release()
