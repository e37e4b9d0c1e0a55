"""What a patch may touch, shared by the rules that write patches and the gates that judge them.

Kept apart from both so neither imports the other for a constant: a rule proposes only what
the guardrails gate accepts, and both read it here.
"""

from __future__ import annotations

#: Spark settings a patch may change (anything else is refused by the guardrails gate).
ENGINE_CONFIG_ALLOWLIST = frozenset(
    {
        "spark.sql.shuffle.partitions",
        "spark.driver.maxResultSize",
        "spark.sql.autoBroadcastJoinThreshold",
        "spark.sql.broadcastTimeout",
        "spark.sql.adaptive.enabled",
        "spark.sql.adaptive.skewJoin.enabled",
        "spark.sql.files.maxPartitionBytes",
        "spark.executor.memory",
        "spark.executor.memoryOverhead",
        "spark.driver.memory",
    }
)

#: Config keys whose values are SQL text or column names (paths and formats are not).
SQL_KEYS = frozenset(
    {"query", "condition", "expr", "columns", "cols", "col", "column", "key", "order_by",
     "spillway_condition", "partition_key", "value_expr"}
)  # fmt: skip
