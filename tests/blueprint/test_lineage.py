"""Column lineage and column references from Channel SQL (sqlglot, Spark dialect)."""

from __future__ import annotations

from aqueduct_dagster.blueprint import column_lineage, referenced_columns

JOIN_AND_AGGREGATE = """
WITH big AS (SELECT * FROM orders WHERE amount > 10)
SELECT c.region,
       COUNT(*) AS order_count,
       SUM(o.amount) AS total,
       UPPER(name) AS customer_name,
       'fixed' AS tag
FROM big o
JOIN customers c ON o.customer_id = c.id
GROUP BY c.region, name
"""

UPSTREAM = {
    "orders": ["order_id", "customer_id", "amount"],
    "customers": ["id", "region", "name"],
}


def test_lineage_of_join_and_aggregate_with_known_upstream_columns():
    lineage = column_lineage(JOIN_AND_AGGREGATE, UPSTREAM)

    assert lineage == {
        "region": [("customers", "region")],
        "order_count": [],
        "total": [("orders", "amount")],
        "customer_name": [("customers", "name")],
        "tag": [],
    }


def test_star_expands_when_upstream_columns_are_known():
    lineage = column_lineage(
        "SELECT o.*, c.region FROM orders o JOIN customers c ON o.customer_id = c.id", UPSTREAM
    )
    assert list(lineage) == ["order_id", "customer_id", "amount", "region"]
    assert lineage["amount"] == [("orders", "amount")]


def test_lineage_without_upstream_columns_is_best_effort():
    lineage = column_lineage("SELECT a, b + c AS d FROM t")
    assert lineage == {"a": [("t", "a")], "d": [("t", "b"), ("t", "c")]}
    assert column_lineage("SELECT * FROM t") == {}


def test_lineage_tolerates_runtime_tokens():
    lineage = column_lineage(
        "SELECT id FROM t WHERE ts > CAST(${ctx._watermark} AS TIMESTAMP) "
        "AND d = '@aq.date.today()'"
    )
    assert lineage == {"id": [("t", "id")]}


def test_referenced_columns_by_table_alias():
    refs = referenced_columns(JOIN_AND_AGGREGATE)
    assert refs["c"] == {"region", "id"}
    assert refs["o"] == {"amount", "customer_id"}
    assert refs[None] == {"name", "amount"}


def test_referenced_columns_skip_output_aliases_and_lambda_parameters():
    refs = referenced_columns(
        "SELECT amount * 2 AS doubled, transform(items, x -> x + 1) AS bumped "
        "FROM t ORDER BY doubled"
    )
    assert refs == {None: {"amount", "items"}}


def test_referenced_columns_leave_out_what_a_cte_computes():
    refs = referenced_columns(
        """
        WITH ranked AS (
          SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY version DESC) AS _rn
          FROM raw_users
        )
        SELECT user_id, version, data FROM ranked WHERE _rn = 1
        """
    )
    assert refs == {None: {"user_id", "version", "data"}}
