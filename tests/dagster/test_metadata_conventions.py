"""Dagster's metadata conventions on Blueprint assets: row counts, storage addresses, code
references, column lineage open-source Dagster shows, and checkout-independent code versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from aqueduct_dagster.dagster import build_definitions
from tests.support.dagster_dev import dagster_dev, free_port, launch_run, wait_for_run

KEY = dg.AssetKey

TINY = """\
aqueduct: "1.0"
id: tiny
name: Tiny
context:
  data_dir: "@aq.blueprint.dir()/data"
  min_amount: 0
modules:
  - id: raw
    type: Ingress
    config:
      format: csv
      path: ${ctx.data_dir}/orders.csv
      header: true
      options: {inferSchema: "true"}
      schema_hint: {id: int, amount: int}

  - id: valid
    type: Channel
    config:
      op: sql
      query: SELECT id, amount * 2 AS doubled FROM raw WHERE amount > ${ctx.min_amount}

  - id: quality
    type: Assert
    config:
      rules: [{type: min_rows, min: 1}]

  - id: published
    type: Egress
    config: {format: delta, path: "@aq.blueprint.dir()/out/published", mode: overwrite}
edges:
  - {from: raw, to: valid}
  - {from: valid, to: quality}
  - {from: quality, to: published}
"""


def _project(root: Path) -> Path:
    """A Blueprint folder with its data beside it; returns the folder."""
    folder = root / "blueprints"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "orders.csv").write_text("id,amount\n1,5\n2,-1\n3,7\n")
    (folder / "tiny.yml").write_text(TINY)
    return folder


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_materializations_carry_row_count_uri_and_the_spec_code_references(
    spark, tmp_path, monkeypatch
):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    folder = _project(tmp_path)
    defs = build_definitions(folder)
    result = defs.resolve_job_def("tiny").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    events = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }

    published = events[KEY(["tiny", "published"])]
    assert published["dagster/row_count"].value == 2  # the overwrite's own count: no count job
    assert published["dagster/uri"].value == f"file://{folder}/out/published"
    assert "rows_written" not in published and "target_uri" not in published
    # Delta's commit metrics read as a table, not a JSON blob.
    assert isinstance(published["operation_metrics"], dg.MarkdownMetadataValue)
    assert "| numOutputRows | 2 |" in published["operation_metrics"].value
    raw = events[KEY(["tiny", "raw"])]
    assert raw["dagster/uri"].value == f"file://{folder}/data/orders.csv"
    assert raw["options"].value == "header, inferSchema"
    assert "dagster/row_count" not in raw  # nothing counted the rows it read
    assert "columns" not in raw and [
        c.name for c in raw["dagster/column_schema"].schema.columns
    ] == ["id", "amount"]

    graph = defs.resolve_asset_graph()
    yaml_file = folder / "tiny.yml"
    for module, marker in (("raw", "- id: raw"), ("published", "- id: published")):
        node = graph.get(KEY(["tiny", module]))
        (reference,) = node.metadata["dagster/code_references"].code_references
        assert reference.file_path == str(yaml_file)
        assert reference.line_number == _line_of(yaml_file, marker)
        assert node.metadata["aqueduct/defined_at"].startswith(f"tiny.yml:{reference.line_number}")
    spec = graph.get(KEY(["tiny", "published"])).metadata
    assert spec["dagster/uri"] == f"file://{folder}/out/published"
    # The config as written: the Blueprint's folder is a symbol, not this checkout's path.
    assert "${blueprint_dir}/out/published" in spec["aqueduct/config"].value
    assert str(tmp_path) not in spec["aqueduct/config"].value


def test_column_lineage_runs_through_the_assert_into_the_egress_as_markdown(tmp_path):
    graph = build_definitions(_project(tmp_path)).resolve_asset_graph()
    published = graph.get(KEY(["tiny", "published"])).metadata
    table = published["aqueduct/column_lineage"].value
    # Through the checking Assert, the columns come from the asset it guards.
    assert "| doubled | valid.doubled |" in table and "| id | valid.id |" in table
    deps = published["dagster/column_lineage"].deps_by_column
    assert deps["doubled"] == [
        dg.TableColumnDep(asset_key=KEY(["tiny", "valid"]), column_name="doubled")
    ]
    assert (
        "| doubled | raw.amount |"
        in graph.get(KEY(["tiny", "valid"])).metadata["aqueduct/column_lineage"].value
    )


def test_code_versions_are_the_same_in_a_moved_checkout_and_change_with_the_module(tmp_path):
    first = _project(tmp_path / "checkout_a")
    moved = tmp_path / "elsewhere" / "checkout_b"
    shutil.copytree(tmp_path / "checkout_a", moved)

    def versions(folder: Path) -> dict[dg.AssetKey, str | None]:
        graph = build_definitions(folder).resolve_asset_graph()
        return {
            KEY(["tiny", m]): graph.get(KEY(["tiny", m])).code_version
            for m in ("raw", "valid", "published")
        }

    before, after = versions(first), versions(moved / "blueprints")
    assert before == after and len(before) == 3 and all(before.values())
    yaml_file = moved / "blueprints" / "tiny.yml"
    yaml_file.write_text(
        yaml_file.read_text().replace("amount > ${ctx.min_amount}", "amount >= ${ctx.min_amount}")
    )
    edited = versions(moved / "blueprints")
    assert edited[KEY(["tiny", "valid"])] != before[KEY(["tiny", "valid"])]
    assert edited[KEY(["tiny", "raw"])] == before[KEY(["tiny", "raw"])]


def test_lineage_command_follows_an_egress_column_back_and_draws_it_in_mermaid(tmp_path):
    from click.testing import CliRunner

    from aqueduct_dagster.cli import main

    path = str(_project(tmp_path) / "tiny.yml")
    text = CliRunner().invoke(
        main, ["lineage", path, "--column", "published.doubled"], catch_exceptions=False
    )
    assert text.exit_code == 0
    assert text.output.strip() == "published.doubled <- quality.doubled   (from raw.amount)"
    mermaid = CliRunner().invoke(
        main, ["lineage", path, "--column", "published.doubled", "--format", "mermaid"]
    )
    assert mermaid.exit_code == 0, mermaid.output
    assert (
        mermaid.output
        == """\
flowchart LR
  subgraph m0["raw (Ingress)"]
    c0["amount"]
  end
  subgraph m1["valid (Channel)"]
    c1["doubled"]
  end
  subgraph m2["quality (Assert)"]
    c2["doubled"]
  end
  subgraph m3["published (Egress)"]
    c3["doubled"]
  end
  c0 --> c1
  c1 --> c2
  c2 --> c3
"""
    )


ENTRIES = """
  label
  ... on IntMetadataEntry { intValue }
  ... on TextMetadataEntry { text }
  ... on MarkdownMetadataEntry { mdStr }
  ... on CodeReferencesMetadataEntry { codeReferences { ... on LocalFileCodeReference { filePath lineNumber } } }
"""
PUBLISHED = f"""
{{
  assetNodes(assetKeys: [{{path: ["tiny", "published"]}}]) {{
    metadataEntries {{ {ENTRIES} }}
    automationCondition {{ label }}
  }}
  eager: assetNodes(assetKeys: [{{path: ["tiny_eager", "copied"]}}]) {{
    automationCondition {{ label expandedLabel }}
  }}
  assetOrError(assetKey: {{path: ["tiny", "published"]}}) {{
    ... on Asset {{ assetMaterializations(limit: 1) {{ metadataEntries {{ {ENTRIES} }} }} }}
  }}
}}
"""


#: `automation: eager`, as the webserver shows it (the daemon would run it: it only copies).
EAGER = """\
aqueduct: "1.0"
id: tiny_eager
name: Tiny, kept fresh
automation: eager
modules:
  - id: orders
    type: Ingress
    config: {format: csv, path: "@aq.blueprint.dir()/data/orders.csv", header: true}
  - id: copied
    type: Egress
    config: {format: parquet, path: "@aq.blueprint.dir()/out/copied", mode: overwrite}
edges:
  - {from: orders, to: copied}
"""


@pytest.mark.e2e
def test_the_webserver_serves_the_conventions_and_the_lineage_table(tmp_path):
    folder = _project(tmp_path)
    (folder / "tiny_eager.yml").write_text(EAGER)
    env = {"AQUEDUCT_BLUEPRINTS_DIR": str(folder), "AQUEDUCT_STATE_DIR": str(tmp_path / "state")}
    with dagster_dev(tmp_path / "home", env=env, port=free_port()) as server:
        assert wait_for_run(server, launch_run(server, "tiny")) == "SUCCESS"
        answer = server.graphql(PUBLISHED)
    (node,) = answer["assetNodes"]
    assert node["automationCondition"] is None  # tiny has no `automation:`
    (eager,) = answer["eager"]
    assert eager["automationCondition"]["label"] == "eager"
    assert any("any_deps_updated" in part for part in eager["automationCondition"]["expandedLabel"])
    spec = {e["label"]: e for e in node["metadataEntries"]}
    assert "| doubled | valid.doubled |" in spec["aqueduct/column_lineage"]["mdStr"]
    (reference,) = spec["dagster/code_references"]["codeReferences"]
    assert reference == {
        "filePath": str(folder / "tiny.yml"),
        "lineNumber": _line_of(folder / "tiny.yml", "- id: published"),
    }
    (materialization,) = answer["assetOrError"]["assetMaterializations"]
    written = {e["label"]: e for e in materialization["metadataEntries"]}
    assert written["dagster/row_count"]["intValue"] == 2
    assert written["dagster/uri"]["text"] == f"file://{folder}/out/published"
