"""A failure inside an Arcade is healed in the sub-Blueprint that holds the module."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.healing.arcade_files import raw_modules, route_patch
from aqueduct_dagster.healing.failure import build_failure_package
from aqueduct_dagster.healing.heal import Healer, HealSettings, PatchQueue, RuleDiagnoser
from aqueduct_dagster.healing.patch import PatchError, PatchSpec
from aqueduct_dagster.stores import DuckDBStore

PARENT = """\
aqueduct: "1.0"
id: sales
name: Sales
agent: {approval: human}
modules:
  - id: raw
    type: Ingress
    config: {format: csv, path: /data/sales.csv}
  - id: cleaning
    type: Arcade
    ref: arcades/cleaning.yml
  - id: out
    type: Egress
    config: {format: parquet, path: /data/out, mode: overwrite}
edges:
  - {from: raw, to: cleaning}
  - {from: cleaning, to: out}
"""

CHILD = """\
aqueduct: "1.0"
id: cleaning
name: Cleaning
modules:
  - id: tidy        # breaks when the upstream renames amount
    type: Channel
    config:
      query: SELECT sale_id, amount FROM __input__ WHERE amount > 0
"""

ERROR = {
    "exception_class": "pyspark.errors.exceptions.captured.AnalysisException",
    "condition": "UNRESOLVED_COLUMN.WITH_SUGGESTION",
    "sqlstate": "42703",
    "message_parameters": {"objectName": "`amount`", "proposal": "`sale_id`, `sale_amount`"},
    "message": "[UNRESOLVED_COLUMN.WITH_SUGGESTION] `amount` cannot be resolved.",
}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "arcades").mkdir()
    parent, child = tmp_path / "sales.yml", tmp_path / "arcades" / "cleaning.yml"
    parent.write_text(PARENT)
    child.write_text(CHILD)
    return parent, child


def test_modules_as_written_include_arcade_children_under_their_manifest_ids(project):
    parent, _ = project
    raws = raw_modules(parent.read_text(), parent)
    assert set(raws) == {"raw", "cleaning", "cleaning__tidy", "out"}
    assert "amount > 0" in raws["cleaning__tidy"]["config"]["query"]


def test_heal_stages_a_patch_on_the_sub_blueprint_and_approval_writes_it(project, tmp_path):
    parent, child = project
    manifest = compile_text(parent.read_text(), source_path=str(parent))
    assert "cleaning__tidy" in manifest.modules
    package = build_failure_package(
        manifest=manifest, blueprint_text=parent.read_text(), failure=FailureRecord(module_id="cleaning__tidy", error=ERROR,
                              input_schemas={"__input__": [["sale_id", "int"], ["sale_amount", "double"]]}),
    )  # fmt: skip
    assert "amount > 0" in package.module_raw["config"]["query"]  # read from the Arcade's file
    store = DuckDBStore(tmp_path / "state" / "aqueduct.duckdb")
    settings = HealSettings(store=store, patches_dir=tmp_path / "patches",
                            revisions_dir=tmp_path / "revisions", diagnosers=[RuleDiagnoser()])  # fmt: skip

    outcome = Healer(settings).heal(package, parent, manifest.agent)
    assert outcome.status == "staged", outcome.message
    assert outcome.target.path == child.resolve() and not outcome.target.is_root
    assert [op.module_id for op in outcome.patch.operations] == ["tidy"]  # as written there
    assert "cleaning.yml" in outcome.diff and "sale_amount" in outcome.diff

    parent_before = parent.read_text()
    revision = PatchQueue(settings.patches_dir, settings.revisions_dir, store).apply(outcome.patch.patch_id)
    assert parent.read_text() == parent_before
    assert "sale_amount" in child.read_text() and "# breaks when" in child.read_text()
    assert revision.blueprint_id == "sales"  # history kept with the Blueprint that runs it
    healed = compile_text(parent.read_text(), source_path=str(parent))
    assert "sale_amount" in healed.module("cleaning__tidy").sql


def test_a_patch_spanning_two_files_is_refused(project):
    parent, _ = project
    patch = PatchSpec.model_validate({
        "patch_id": "p1", "rationale": "two files",
        "operations": [
            {"op": "set_module_config_key", "module_id": "cleaning__tidy", "key": "query", "value": "SELECT 1"},
            {"op": "set_module_config_key", "module_id": "out", "key": "mode", "value": "append"},
        ],
    })  # fmt: skip
    with pytest.raises(PatchError) as raised:
        route_patch(parent, parent.read_text(), patch)
    assert "several files" in str(raised.value) and "one patch per file" in raised.value.hint
