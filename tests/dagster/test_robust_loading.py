"""One bad Blueprint never takes the code location down: the others load, and the bad one is
reported (a warning at load, an asset in group `aqueduct_load_errors` whose description holds
the error with file:line). Module tags become valid Dagster tag keys."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster._utils.tags import is_valid_tag_key

from aqueduct_dagster.dagster import BlueprintTranslator, ModuleAssetData, build_definitions
from aqueduct_dagster.dagster.loading import LOAD_ERRORS_GROUP
from aqueduct_dagster.dagster.translator import MODULE_TAG_PREFIX
from aqueduct_dagster.errors import BlueprintError

KEY = dg.AssetKey


def blueprint(blueprint_id: str, tags: list[str] | None = None) -> str:
    return textwrap.dedent(f"""\
        aqueduct: "1.0"
        id: {blueprint_id}
        modules:
          - id: src
            type: Ingress
            tags: {tags or []}
            config: {{format: csv, path: in.csv}}
          - id: out
            type: Egress
            config: {{format: parquet, path: out, mode: overwrite}}
        edges: [{{from: src, to: out}}]
    """)


BROKEN = 'aqueduct: "1.0"\nid: broken\nmodules:\n  - id: a\n    type: Ingress\n    confg: {}\n'


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "good.yml").write_text(blueprint("good"))
    (tmp_path / "broken.yml").write_text(BROKEN)
    return tmp_path


def _problems(defs: dg.Definitions) -> dict[str, dg.AssetSpec]:
    """Blueprint path -> the asset that reports it did not load."""
    graph = defs.resolve_asset_graph()
    return {
        str(node.metadata["aqueduct/blueprint"]): node
        for node in graph.asset_nodes
        if node.group_name == LOAD_ERRORS_GROUP
    }


def test_a_broken_blueprint_leaves_the_others_loaded(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="aqueduct_dagster.loading"):
        defs = build_definitions(folder)
    dg.Definitions.validate_loadable(defs)  # what `dagster definitions validate` checks
    job = defs.resolve_job_def("good")
    assert {KEY(["good", "src"]), KEY(["good", "out"])} <= set(job.asset_layer.asset_graph.get_all_asset_keys())
    with pytest.raises(dg.DagsterInvariantViolationError):
        defs.resolve_job_def("broken")
    # Seen at load (the log) and in the UI (an asset named after the file, error as description).
    assert any("broken.yml:6" in r.getMessage() and "confg" in r.getMessage() for r in caplog.records)
    (problem,) = _problems(defs).values()
    assert "broken.yml:6" in problem.description and "did you mean 'config'" in problem.description
    defined_at = problem.metadata["aqueduct/defined_at"]
    assert str(getattr(defined_at, "value", defined_at)).startswith(str(folder / "broken.yml") + ":6")


def test_strict_loading_raises_the_blueprints_own_error(folder):
    with pytest.raises(BlueprintError, match=r"broken\.yml:6"):
        build_definitions(folder, strict=True)


def test_two_files_with_one_id_are_both_named_and_only_they_are_held_back(tmp_path):
    (tmp_path / "blueprint.yml").write_text(blueprint("cascade_demo"))
    (tmp_path / "blueprint_bugged.yml").write_text(blueprint("cascade_demo"))
    (tmp_path / "other.yml").write_text(blueprint("other"))
    defs = build_definitions(tmp_path)
    assert defs.resolve_job_def("other").name == "other"
    with pytest.raises(dg.DagsterInvariantViolationError):
        defs.resolve_job_def("cascade_demo")
    problems = _problems(defs)
    assert set(problems) == {str(tmp_path / "blueprint.yml"), str(tmp_path / "blueprint_bugged.yml")}
    for problem in problems.values():
        assert "blueprint.yml" in problem.description and "blueprint_bugged.yml" in problem.description
        assert "'cascade_demo'" in problem.description


def test_a_blueprint_dagster_refuses_is_held_back_alone(tmp_path):
    (tmp_path / "good.yml").write_text(blueprint("good"))
    (tmp_path / "refused.yml").write_text(blueprint("refused"))

    class Refusing(BlueprintTranslator):
        def get_asset_spec(self, data: ModuleAssetData) -> dg.AssetSpec:
            spec = super().get_asset_spec(data)
            if data.manifest.blueprint_id == "refused":
                return spec.replace_attributes(tags={"not/a/valid key": ""})
            return spec

    defs = build_definitions(tmp_path, translator=Refusing())
    assert defs.resolve_job_def("good")
    (problem,) = _problems(defs).values()
    assert "refused.yml" in problem.description and "DagsterInvalidDefinitionError" in problem.description


def test_module_tags_become_valid_dagster_tags_and_keep_their_text(tmp_path):
    tags = ["mode:conditional", "pii data", "mode_conditional", "x" * 80, "ok"]
    (tmp_path / "tagged.yml").write_text(blueprint("tagged", tags))
    defs = build_definitions(tmp_path)
    dg.Definitions.validate_loadable(defs)
    node = defs.resolve_asset_graph().get(KEY(["tagged", "src"]))
    module_tags = [key for key in node.tags if key.startswith(MODULE_TAG_PREFIX)]
    assert len(module_tags) == len(tags)  # none lost to a clash after cleaning
    assert all(is_valid_tag_key(key) and node.tags[key] == "" for key in node.tags)
    assert {"aqueduct-tag/mode_conditional", "aqueduct-tag/pii_data", "aqueduct-tag/ok"} <= set(module_tags)
    written = node.metadata["aqueduct/tags"]
    assert getattr(written, "value", written) == tags
