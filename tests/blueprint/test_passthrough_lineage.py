"""Column lineage carried through modules that pass their input's columns on."""

from __future__ import annotations

from aqueduct_dagster.blueprint import compile_text

BLUEPRINT = """\
aqueduct: "1.0"
id: p
name: p
modules:
  - {id: left, type: Ingress, config: {format: csv, path: l.csv, schema_hint: {a: int, b: int}}}
  - {id: right, type: Ingress, config: {format: csv, path: r.csv, schema_hint: {a: int, b: int}}}
  - {id: both, type: Funnel, config: {mode: union_all, inputs: [left, right]}}
  - {id: renamed, type: Channel, config: {op: rename, columns: {a: key}}}
  - {id: picked, type: Channel, config: {op: select, columns: [key, "b * 2 AS c"]}}
  - {id: out, type: Egress, config: {format: delta, path: out, mode: overwrite}}
edges:
  - {from: both, to: renamed}
  - {from: renamed, to: picked}
  - {from: picked, to: out}
"""


def _lineage(manifest, module_id):
    return {
        c: [(s.module, s.column) for s in sources]
        for c, sources in manifest.module(module_id).column_lineage.items()
    }


def test_funnel_rename_select_and_egress_carry_lineage_by_column():
    manifest = compile_text(BLUEPRINT)
    assert _lineage(manifest, "both") == {
        "a": [("left", "a"), ("right", "a")],
        "b": [("left", "b"), ("right", "b")],
    }
    assert _lineage(manifest, "renamed") == {"key": [("both", "a")], "b": [("both", "b")]}
    # An expression's output name is unknown before Spark runs: no lineage rather than a wrong one.
    assert _lineage(manifest, "picked") == {}
    assert _lineage(manifest, "out") == {}
    plain = compile_text(BLUEPRINT.replace('[key, "b * 2 AS c"]', "[key]"))
    assert _lineage(plain, "picked") == {"key": [("renamed", "key")]}
    assert _lineage(plain, "out") == {"key": [("picked", "key")]}
    assert _lineage(manifest, "left") == {}
