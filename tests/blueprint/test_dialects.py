"""Both dialects of the Blueprint format load: Aqueduct 2.3 (every key of its published JSON
schema) and Aqueduct 1.x (`name` optional, `agent.approval_mode`, `agent.budget`, the LLM
connection keys under `agent`, top-level `spark_config`).

The 2.3 keys are read from `reference/aqueduct-core-2.3.0/schema_blueprint.json`: one test
per (record, key), each a whole Blueprint holding that key, validated by the model.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import pytest

from aqueduct_dagster.blueprint.models import RULE_REQUIRED_KEYS, Blueprint
from tests.support.shared import shared_reference

SCHEMA = json.loads(shared_reference("aqueduct-core-2.3.0", "schema_blueprint.json").read_text())
DEFS: dict[str, Any] = SCHEMA["$defs"]
ROOT = "<root>"
#: Keys the schema types as a free string whose values the engine still restricts.
VALUES = {("ChannelConfigSchema", "op"): "sql"}
#: Keys that only make sense with another one, which loading checks: written together.
COMPANIONS = {("IngressConfigSchema", "class"): {"format": "custom"}}


def _schema(name: str) -> dict[str, Any]:
    return SCHEMA if name == ROOT else DEFS[name]


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if ref else None


def _choices(node: dict[str, Any]) -> list[dict[str, Any]]:
    return node.get("anyOf") or node.get("oneOf") or [node]


def sample(node: dict[str, Any]) -> Any:
    """A small valid value for a JSON-schema node."""
    if "const" in node:
        return node["const"]
    if node.get("default") not in (None, [], {}):
        return node["default"]
    if "enum" in node:
        return node["enum"][0]
    name = _ref_name(node)
    if name:
        return minimal(name)
    choices = [c for c in _choices(node) if c.get("type") != "null"]
    if choices and choices[0] is not node:
        return sample(choices[0])
    kind = node.get("type")
    return {"string": "x", "integer": max(1, node.get("minimum", 1)), "number": 1.0, "boolean": True,
            "array": [], "object": {}}.get(kind, "x")  # fmt: skip


def minimal(name: str) -> dict[str, Any]:
    """An instance of a record with only its required keys."""
    schema = _schema(name)
    if name == ROOT:
        return {"aqueduct": "1.0", "id": "bp", "name": "Blueprint", "modules": [minimal("IngressSchema")]}
    instance = {key: sample(schema["properties"][key]) for key in schema.get("required", [])}
    if name == "AssertRuleSchema":
        # The schema requires `type` alone; the keys that type reads are checked when a
        # Blueprint loads here (a rule without them fails to load, not when a run reaches it).
        for key in RULE_REQUIRED_KEYS.get(instance["type"], ()):
            instance.setdefault(key, sample(schema["properties"][key]))
    return instance


def _parents() -> dict[str, tuple[str, str, str]]:
    """record -> (parent record, key, how it sits there: value | item | mapping value)."""
    found: dict[str, tuple[str, str, str]] = {}
    queue = deque([ROOT])
    while queue:
        parent = queue.popleft()
        for key, node in _schema(parent).get("properties", {}).items():
            for choice in _choices(node):
                for wrap, inner in (("value", choice), ("item", choice.get("items") or {}),
                                    ("mapping", choice.get("additionalProperties") or {})):  # fmt: skip
                    for option in _choices(inner) if isinstance(inner, dict) else []:
                        name = _ref_name(option)
                        if name and name not in found and name != parent:
                            found[name] = (parent, key, wrap)
                            queue.append(name)
    return found


PARENTS = _parents()


def embed(name: str, instance: dict[str, Any]) -> dict[str, Any]:
    """A whole Blueprint holding `instance` of record `name` where the schema puts it."""
    while name != ROOT:
        parent_name, key, wrap = PARENTS[name]
        parent = minimal(parent_name)
        parent[key] = {"value": instance, "item": [instance], "mapping": {"k": instance}}[wrap]
        name, instance = parent_name, parent
    return instance


SCHEMA_KEYS = [(ROOT, key) for key in SCHEMA["properties"]] + [
    (name, key) for name in sorted(PARENTS) for key in DEFS[name].get("properties", {})
]


def test_every_record_of_the_schema_is_reachable():
    assert set(PARENTS) == set(DEFS), set(DEFS) - set(PARENTS)
    assert len(SCHEMA_KEYS) > 150


@pytest.mark.parametrize(("record", "key"), SCHEMA_KEYS, ids=[f"{r.removesuffix('Schema')}.{k}" for r, k in SCHEMA_KEYS])
def test_aqueduct_2_3_key_is_accepted(record: str, key: str):
    instance = minimal(record)
    instance[key] = VALUES.get((record, key)) or sample(_schema(record)["properties"][key])
    instance.update(COMPANIONS.get((record, key), {}))
    Blueprint.model_validate(embed(record, instance))


def test_an_unknown_key_is_still_an_error():
    instance = minimal("AgentSchema")
    instance["budgett"] = {}
    with pytest.raises(ValueError, match="budgett"):
        Blueprint.model_validate(embed("AgentSchema", instance))


# --------------------------------------------------------------------------- Aqueduct 1.x

#: The first Blueprint of the Aqueduct 1.x README, as its users wrote it: no `name`, no
#: module labels, `approval_mode` and a per-Blueprint `budget`.
FIRST_1X_BLUEPRINT = """
aqueduct: "1.0"
id: hello.pipeline
macros:
  active: "status = 'active' AND deleted_at IS NULL"
modules:
  - id: load
    type: Ingress
    config: { format: csv, path: "data/in.csv", options: { header: true } }
  - id: clean
    type: Channel
    config:
      op: sql
      query: "SELECT order_id, amount FROM load WHERE {{ macros.active }}"
  - id: save
    type: Egress
    config: { format: parquet, path: "data/out/", mode: overwrite }
edges:
  - { from: load,  to: clean }
  - { from: clean, to: save }
agent:
  approval_mode: human
  budget:
    max_reprompts: 5
    max_seconds: 120
    same_signature_overall: 3
"""


def test_the_1x_readme_blueprint_compiles(compile_yaml):
    manifest = compile_yaml(FIRST_1X_BLUEPRINT)
    assert manifest.blueprint_id == "hello.pipeline"
    assert manifest.name == "hello.pipeline"  # the id stands in for the missing name
    assert list(manifest.modules) == ["load", "clean", "save"]


def _agent(**keys: Any) -> Any:
    return Blueprint.model_validate(embed("AgentSchema", keys)).agent


def test_1x_name_is_optional_and_defaults_to_the_id():
    data = minimal(ROOT)
    del data["name"]
    assert Blueprint.model_validate(data).name == "bp"


def test_1x_approval_mode_sets_approval():
    assert _agent(approval_mode="human").approval == "human"
    assert _agent(approval="ci", approval_mode="human").approval == "ci"  # the 2.3 key wins


def test_1x_aggressive_approval_is_auto_with_its_patch_count():
    agent = _agent(approval_mode="aggressive", aggressive_max_patches=3)
    assert agent.approval == "auto" and agent.max_patches == 3


@pytest.mark.parametrize("key", ["max_reprompts", "max_seconds", "max_tokens_total", "same_error_consecutive",
                                 "same_signature_overall", "progress_stalled_window"])  # fmt: skip
def test_1x_budget_key_is_accepted(key: str):
    agent = _agent(budget={key: 4})
    assert getattr(agent.budget, key) == 4


def test_1x_budget_reprompt_cap_becomes_max_reprompts():
    assert _agent(budget={"max_reprompts": 5}).max_reprompts == 5
    assert _agent(max_reprompts=2, budget={"max_reprompts": 5}).max_reprompts == 2


@pytest.mark.parametrize(("key", "value"), [
    ("provider", "anthropic"), ("base_url", "http://llm.example:8000/v1"), ("model", "m"),
    ("model", ["cheap", "expensive"]), ("provider_options", {"temperature": 0.1}), ("timeout", 30.0),
    ("cascade", [{"model": "m", "provider": "openai_compat"}]), ("block_on_explain_regression", True),
])  # fmt: skip
def test_1x_connection_keys_are_read_and_never_kept(key: str, value: Any):
    blueprint = Blueprint.model_validate(embed("AgentSchema", {key: value}))
    assert getattr(blueprint.agent, key) == value
    # A Blueprint never chooses the LLM endpoint: these never reach what is compiled on.
    assert key not in blueprint.model_dump(by_alias=True)["agent"]


def test_1x_spark_config_becomes_engine_conf_and_the_2x_block_wins():
    data = minimal(ROOT)
    data["spark_config"] = {"spark.sql.shuffle.partitions": "4", "spark.sql.ansi.enabled": "false"}
    data["engine"] = {"spark": {"conf": {"spark.sql.shuffle.partitions": "8"}}}
    conf = Blueprint.model_validate(data).engine.spark.conf
    assert conf == {"spark.sql.shuffle.partitions": "8", "spark.sql.ansi.enabled": "false"}


def test_a_2_3_blueprint_with_name_and_labels_compiles(compile_yaml):
    manifest = compile_yaml("""
        aqueduct: "1.0"
        id: two.three
        name: Two three
        agent: {approval: human, max_reprompts: 2, sandbox_mode: sample}
        engine: {spark: {conf: {spark.sql.shuffle.partitions: "2"}}}
        modules:
          - {id: src, label: Source, type: Ingress, config: {format: csv, path: in.csv}}
          - {id: out, label: Sink, type: Egress, config: {format: parquet, path: out, mode: overwrite}}
        edges: [{from: src, to: out}]
    """)
    assert manifest.name == "Two three" and manifest.engine.spark.conf["spark.sql.shuffle.partitions"] == "2"
