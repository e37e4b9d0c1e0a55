"""PatchSpec validation and pure application on round-trip YAML."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aqueduct_dagster.healing.patch import PatchError, PatchSpec, apply_patch_text

BLUEPRINT = """\
aqueduct: "1.0"
id: demo
name: Demo
# the context block
context:
  paths:
    input: data/in.csv   # where the export lands
macros:
  valid: "amount > 0"
modules:
  - id: raw
    type: Ingress
    config:
      format: csv
      path: ${ctx.paths.input}
  - id: clean   # keep this comment
    type: Channel
    config:
      op: sql
      query: |
        SELECT event_ts FROM raw
  - id: out
    type: Egress
    config: {format: parquet, path: data/out, mode: overwrite}
edges:
  - {from: raw, to: clean}
  - {from: clean, to: out}
"""


def patch(*operations, **extra) -> PatchSpec:
    return PatchSpec(rationale="test", operations=list(operations), **extra)


def test_set_module_config_key_keeps_comments_and_other_keys():
    text = apply_patch_text(
        BLUEPRINT,
        patch({"op": "set_module_config_key", "module_id": "clean", "key": "query", "value": "SELECT event_time FROM raw\n"}),
    )
    assert "SELECT event_time FROM raw" in text
    assert "event_ts" not in text
    assert "# keep this comment" in text and "# where the export lands" in text
    assert "op: sql" in text


def test_dotted_config_key_creates_nested_mapping():
    text = apply_patch_text(
        BLUEPRINT, patch({"op": "set_module_config_key", "module_id": "raw", "key": "options.header", "value": "true"})
    )
    assert "      path: ${ctx.paths.input}\n      options:\n        header: 'true'\n" in text


def test_unknown_module_is_a_clear_error_with_suggestion():
    with pytest.raises(PatchError) as error:
        apply_patch_text(BLUEPRINT, patch({"op": "replace_module_label", "module_id": "claen", "label": "x"}))
    assert "no module 'claen'" in str(error.value)
    assert "did you mean 'clean'" in str(error.value)


def test_operations_are_all_or_nothing():
    bad = patch(
        {"op": "replace_module_label", "module_id": "clean", "label": "Clean"},
        {"op": "replace_macro", "name": "missing", "value": "1 = 1"},
    )
    with pytest.raises(PatchError, match="operation 2 \\(replace_macro\\).*no macro 'missing'"):
        apply_patch_text(BLUEPRINT, bad)


def test_context_macro_engine_and_edges():
    text = apply_patch_text(
        BLUEPRINT,
        patch(
            {"op": "replace_context_value", "key": "paths.input", "value": "data/in_v2.csv"},
            {"op": "replace_macro", "name": "valid", "value": "amount >= 0"},
            {"op": "set_engine_config", "engine": "spark", "key": "spark.driver.maxResultSize", "value": "2g"},
            {"op": "replace_edge", "from_id": "clean", "to_id": "out", "new_from_id": "raw"},
        ),
    )
    assert "input: data/in_v2.csv" in text
    assert "amount >= 0" in text
    assert "spark.driver.maxResultSize: 2g" in text
    assert "  - {from: raw, to: out}\n" in text


def test_insert_and_remove_module_rewire_edges():
    inserted = apply_patch_text(
        BLUEPRINT,
        patch(
            {
                "op": "insert_module",
                "module": {"id": "dedupe", "type": "Channel", "config": {"op": "deduplicate"}},
                "edges_to_remove": [{"from": "clean", "to": "out"}],
                "edges_to_add": [{"from": "clean", "to": "dedupe"}, {"from": "dedupe", "to": "out"}],
            }
        ),
    )
    assert "id: dedupe" in inserted and "from: clean, to: out" not in inserted
    removed = apply_patch_text(
        inserted,
        patch({"op": "remove_module", "module_id": "dedupe", "edges_to_add": [{"from": "clean", "to": "out"}]}),
    )
    assert "dedupe" not in removed


def test_patch_spec_rejects_unknown_ops_and_bad_confidence():
    with pytest.raises(ValidationError, match="op"):
        PatchSpec(rationale="x", operations=[{"op": "run_python", "code": "import os"}])
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        patch({"op": "replace_module_label", "module_id": "raw", "label": "x"}, confidence=1.5)
    with pytest.raises(ValidationError, match="at least 1"):
        PatchSpec(rationale="x", operations=[])


def test_legacy_ops_spelling_is_accepted():
    spec = PatchSpec.model_validate(
        {"rationale": "x", "ops": [{"op": "replace_module_label", "module_id": "raw", "label": "x"}]}
    )
    assert spec.touched_modules == ["raw"]


def test_defer_to_human_cannot_be_applied():
    spec = patch({"op": "defer_to_human", "diagnosis": "cluster down", "defer_reason": "infrastructure"})
    assert spec.deferred is not None
    with pytest.raises(PatchError, match="defer_to_human"):
        apply_patch_text(BLUEPRINT, spec)
