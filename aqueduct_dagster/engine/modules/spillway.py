"""The spillway: rows a module sets aside, tagged with `_aq_error_*` columns, and their routing.

Channel (`spillway_condition`), Assert (`on_fail: quarantine`) and Junction (rows no branch
takes) all tag their rows the same way, so a spillway edge's `error_types` can pick among
them by `_aq_error_type`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

ERROR_MODULE = "_aq_error_module"
ERROR_RULE = "_aq_error_rule"
ERROR_TYPE = "_aq_error_type"
ERROR_MESSAGE = "_aq_error_message"
ERROR_TS = "_aq_error_ts"

#: The columns every spillway frame ends with, in this order.
ERROR_COLUMNS = (ERROR_MODULE, ERROR_RULE, ERROR_TYPE, ERROR_MESSAGE, ERROR_TS)

#: `_aq_error_type` of Channel `spillway_condition` rows.
SPILLWAY_CONDITION = "SpillwayCondition"


def with_error_columns(
    frame: DataFrame,
    *,
    module_id: str,
    rule: str | Column,
    error_type: str | Column,
    message: str | Column,
) -> DataFrame:
    """`frame` with the five `_aq_error_*` columns appended (values or per-row Columns)."""
    from pyspark.sql import functions as F

    def column(value: str | Column) -> Column:
        return F.lit(value) if isinstance(value, str) else value

    return frame.withColumns(
        {
            ERROR_MODULE: F.lit(module_id),
            ERROR_RULE: column(rule),
            ERROR_TYPE: column(error_type),
            ERROR_MESSAGE: column(message),
            ERROR_TS: F.current_timestamp(),
        }
    )


def filter_spillway(frame: DataFrame, error_types: Iterable[str] | None) -> DataFrame:
    """The rows of a spillway frame whose `_aq_error_type` is one of `error_types`.

    No types (an edge without `error_types`) catches every row.
    """
    from pyspark.sql import functions as F

    wanted = list(dict.fromkeys(error_types or ()))
    if not wanted:
        return frame
    return frame.filter(F.col(ERROR_TYPE).isin(wanted))
