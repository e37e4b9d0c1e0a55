"""Depot use checked at compile time, and bound per run (pure: no store, no Spark)."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint.depot import (
    FIRST_RUN_WATERMARK,
    bind_depot,
    uses_depot,
    watermark_key,
)
from aqueduct_dagster.errors import BlueprintError

HEAD = """
aqueduct: "1.0"
id: dp
name: Depot
modules:
  - id: src
    type: Ingress
    config: {format: csv, path: /in/e.csv}
"""


def test_incremental_channel_without_watermark_column_is_an_error(compile_error):
    error = compile_error(HEAD + """
  - id: inc
    type: Channel
    materialize: incremental
    config: {query: "SELECT * FROM src"}
""")
    assert error.module_id == "inc" and error.location.line == 9
    assert "needs a `watermark_column`" in str(error)
    assert "module-level key" in error.hint


def test_watermark_outside_an_incremental_channel_is_an_error(compile_error):
    error = compile_error(HEAD + """
  - id: plain
    type: Channel
    config: {query: "SELECT * FROM src WHERE ts > ${ctx._watermark}"}
""")
    assert error.module_id == "plain"
    assert "only in a Channel with `materialize: incremental`" in str(error)


def test_unknown_runtime_context_key_is_an_error(compile_error):
    error = compile_error(HEAD + """
  - id: inc
    type: Channel
    materialize: incremental
    watermark_column: ts
    config: {query: "SELECT * FROM src WHERE ts > ${ctx._watermrk}"}
""")
    assert "unknown run-time context key 'ctx._watermrk'" in str(error)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{format: depot, value: x}", "needs a `key`"),
        ("{format: depot, key: k}", "exactly one of `value`"),
        ("{format: depot, key: k, value: x, value_expr: 'MAX(id)'}", "exactly one of `value`"),
    ],
)
def test_depot_egress_needs_a_key_and_one_value(compile_error, config, message):
    error = compile_error(HEAD + f"""
  - id: keep
    type: Egress
    config: {config}
""")
    assert error.module_id == "keep" and message in str(error)


INCREMENTAL = HEAD + """
  - id: inc
    type: Channel
    materialize: incremental
    watermark_column: ts
    config:
      query: "SELECT * FROM src WHERE ts > CAST(${ctx._watermark} AS TIMESTAMP) AND k = '@aq.depot.get('k', 'dflt')'"
"""


def test_first_run_reads_the_full_scan_sentinel_and_defaults(compile_yaml):
    manifest = compile_yaml(INCREMENTAL)
    assert uses_depot(manifest)
    bound = bind_depot(manifest, lambda key: None)
    assert bound.module("inc").sql == (
        f"SELECT * FROM src WHERE ts > CAST('{FIRST_RUN_WATERMARK}' AS TIMESTAMP) AND k = 'dflt'"
    )
    assert "${ctx._watermark}" in manifest.module("inc").sql  # the Manifest itself is unchanged


def test_committed_values_are_bound_as_sql_literals(compile_yaml):
    manifest = compile_yaml(INCREMENTAL)
    values = {watermark_key("inc"): "2026-01-02 10:00:00", "k": "v"}
    bound = bind_depot(manifest, values.get)
    assert "CAST('2026-01-02 10:00:00' AS TIMESTAMP)" in bound.module("inc").sql
    assert "k = 'v'" in bound.module("inc").sql

    quoted = bind_depot(manifest, {watermark_key("inc"): "it's"}.get)
    assert "CAST('it\\'s' AS TIMESTAMP)" in quoted.module("inc").sql


@pytest.mark.parametrize("value", ["x' OR '1'='1", "x\\", "x; DROP", "x -- c", "x /* c", "a\nb", 'x"', "x`"])
def test_a_depot_value_that_would_rewrite_the_query_is_refused(compile_yaml, value):
    """`@aq.depot.get` pastes text; a value from the data must not break out of its quotes."""
    manifest = compile_yaml(INCREMENTAL)
    with pytest.raises(BlueprintError) as raised:
        bind_depot(manifest, {"k": value}.get)
    assert raised.value.module_id == "inc" and "Depot value of 'k'" in str(raised.value)


def test_a_blueprint_without_depot_use_is_returned_as_is(compile_yaml):
    manifest = compile_yaml(HEAD)
    assert not uses_depot(manifest)
    assert bind_depot(manifest, lambda key: pytest.fail("no lookup expected")) is manifest
