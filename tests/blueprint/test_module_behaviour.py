"""Module behaviour lives on the module records: what each type does, asked by every layer."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.models import MODULE_MODELS, MODULE_TYPES, ModuleBase
from aqueduct_dagster.errors import BlueprintError

#: What each type does; the layers (graph, compiler, engine runner, Dagster assets, the
#: healing effect) branch on these answers, so a change here changes all of them at once.
BEHAVIOUR = {
    #            reads  writes check  signal gate   merge  expand chkpt  columns filter chain  alone
    "Ingress":   (True,  False, False, False, False, False, False, True,  False,  False, True,  False),
    "Channel":   (False, False, False, False, False, False, False, True,  False,  False, True,  True),
    "Egress":    (False, True,  False, False, False, False, False, False, True,   False, True,  False),
    "Assert":    (False, False, True,  False, False, False, False, True,  True,   True,  True,  True),
    "Junction":  (False, False, False, False, False, False, False, True,  True,   True,  False, True),
    "Funnel":    (False, False, False, False, False, True,  False, True,  True,   False, False, True),
    "Probe":     (False, False, False, True,  False, False, False, False, True,   False, False, False),
    "Regulator": (False, False, False, False, True,  False, False, True,  True,   True,  False, False),
    "Arcade":    (False, False, False, False, False, False, True,  True,  False,  False, False, False),
}  # fmt: skip
FLAGS = ("reads_source", "writes_sink", "is_quality_check", "emits_signals", "gates_on_signals",
         "merges_inputs", "expands_into_modules", "checkpointable", "passes_columns_through",
         "filters_its_input", "chainable", "testable_alone")  # fmt: skip


def test_module_types_come_from_the_module_union():
    assert MODULE_TYPES == tuple(BEHAVIOUR)
    assert [model.__name__ for model in MODULE_MODELS] == list(MODULE_TYPES)
    assert all(issubclass(model, ModuleBase) for model in MODULE_MODELS)


@pytest.mark.parametrize("model", MODULE_MODELS, ids=lambda m: m.__name__)
def test_each_type_says_what_it_does(model):
    assert tuple(getattr(model, flag) for flag in FLAGS) == BEHAVIOUR[model.__name__]


def test_behaviour_is_class_level_not_a_blueprint_key():
    text = """
aqueduct: "1.0"
id: b
modules:
  - {id: raw, type: Ingress, writes_sink: true, config: {format: csv, path: /in.csv}}
"""
    with pytest.raises(BlueprintError, match="unknown key 'writes_sink'"):
        compile_text(text)


PIPELINE = """
aqueduct: "1.0"
id: behaviour
modules:
  - {id: raw, type: Ingress, config: {format: csv, path: /data/in.csv}}
  - {id: clean, type: Channel, config: {op: sql, query: "SELECT * FROM raw"}}
  - {id: positive, type: Channel, config: {op: filter, condition: "amount > 0"}}
  - id: split
    type: Junction
    config: {mode: conditional, branches: [{id: big, condition: "amount > 100"}, {id: rest, condition: _else_}]}
  - {id: merged, type: Funnel, config: {mode: union_all, inputs: [split.big, split.rest]}}
  - {id: watch, type: Probe, attach_to: merged, config: {signals: [{type: row_count}]}}
  - {id: gate, type: Regulator}
  - {id: checked, type: Assert, config: {rules: [{type: min_rows, min: 1}]}}
  - {id: out, type: Egress, config: {format: parquet, path: /data/out}}
edges:
  - {from: raw, to: clean}
  - {from: clean, to: positive}
  - {from: positive, to: split}
  - {from: watch, to: gate, port: signal}
  - {from: merged, to: gate}
  - {from: gate, to: checked}
  - {from: checked, to: out}
"""


def test_a_compiled_module_answers_what_its_spec_answers():
    manifest = compile_text(PIPELINE)
    asked = ("reads_source", "writes_sink", "is_quality_check", "emits_signals", "gates_on_signals",
             "checkpointable", "output_ports", "materializes_incrementally")  # fmt: skip
    for module in manifest.modules.values():
        assert {name: getattr(module, name) for name in asked} == {
            name: getattr(module.spec, name) for name in asked
        }, module.id
    assert manifest.module("split").output_ports == ("big", "rest")
    assert manifest.module("out").output_ports == ("main",)
    # Only a Channel whose op is SQL holds a query the later layers run.
    assert manifest.module("clean").sql == "SELECT * FROM raw"
    assert manifest.module("positive").sql is None
    assert [m.id for m in manifest.modules.values() if m.reads_source] == ["raw"]
    assert [m.id for m in manifest.modules.values() if m.emits_signals] == ["watch"]


def test_an_incremental_channel_says_so():
    text = """
aqueduct: "1.0"
id: inc
modules:
  - {id: raw, type: Ingress, config: {format: csv, path: /data/in.csv}}
  - id: fresh
    type: Channel
    materialize: incremental
    watermark_column: ts
    config: {op: sql, query: "SELECT * FROM raw WHERE ts > '${ctx._watermark}'"}
"""
    manifest = compile_text(text)
    assert manifest.module("fresh").materializes_incrementally
    assert not manifest.module("raw").materializes_incrementally
