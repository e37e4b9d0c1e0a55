"""The engine's side of the Depot: values a run wants kept, computed on Spark.

Nothing here writes to the Depot: a module returns its values as `metadata["depot"]` and the
caller stages them under the run's id (see `aqueduct_dagster.stores.depot`), so a value
reaches later runs only when the whole run succeeded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aqueduct_dagster.blueprint.depot import watermark_key
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.results import ModuleResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from aqueduct_dagster.blueprint.manifest import CompiledModule

DEPOT = "depot"


def watermark_values(module: CompiledModule, frame: DataFrame) -> dict[str, str]:
    """{watermark key: MAX(watermark_column) of the rows this run processed}; one Spark job.

    An empty slice keeps the previous watermark (nothing is staged).
    """
    from pyspark.sql import functions as F

    column = module.spec.watermark_column
    if column not in frame.columns:
        raise ConditionError(
            "AQ_WATERMARK_COLUMN_MISSING",
            f"watermark_column '{column}' is not an output column of this Channel"
            f"{did_you_mean(column, frame.columns)}",
            {"watermark_column": column, "columns": ", ".join(frame.columns)},
            hint="set watermark_column to a column the query returns (its MAX is kept "
            "between runs)",
        )
    row = frame.agg(F.max(F.col(column)).cast("string").alias("watermark")).first()
    value = row["watermark"] if row is not None else None
    return {} if value is None else {watermark_key(module.id): value}


def execute_depot_egress(module: CompiledModule, frame: DataFrame) -> ModuleResult:
    """`format: depot`: keep `value` (bound text) or `value_expr` (one aggregate over the input)."""
    from pyspark.sql import functions as F

    config = module.config
    if config.value_expr:
        row = frame.agg(F.expr(config.value_expr).cast("string").alias("value")).first()
        value = row["value"] if row is not None else None
    else:
        value = config.value
    metadata: dict[str, object] = {"format": DEPOT, "key": config.key}
    if value is None:
        # An aggregate over no rows: keep the previous value rather than storing "null".
        metadata["kept_previous"] = True
    else:
        metadata[DEPOT] = {config.key: value}
        metadata["value"] = value
    return ModuleResult(outputs={"main": frame}, metadata=metadata)
