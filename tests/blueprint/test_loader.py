"""YAML loading keeps positions, refuses duplicate keys, and supports anchors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint.loader import load_document
from aqueduct_dagster.errors import BlueprintError

PACKAGE = Path(__file__).resolve().parents[2] / "aqueduct_dagster" / "blueprint"

TEXT = """\
aqueduct: "1.0"
defaults: &csv
  format: csv
  header: true
modules:
  - id: a
    config:
      <<: *csv
      header: false
      query: |
        SELECT *
          FROM {{ macros.x }}
"""


def test_positions_of_values_and_keys():
    document = load_document(TEXT, "bp.yml")
    assert str(document.location(("modules", 0, "id"))) == "bp.yml:6:9"
    assert str(document.key_location(("modules", 0, "config"))) == "bp.yml:7:5"
    # unknown deeper paths fall back to the nearest located ancestor
    assert str(document.location(("modules", 0, "config", "nope"))) == "bp.yml:8:7"


def test_offsets_inside_a_literal_block_map_to_file_positions():
    document = load_document(TEXT, "bp.yml")
    query = document.data["modules"][0]["config"]["query"]
    offset = query.index("{{")
    location = document.location_within(("modules", 0, "config", "query"), offset)
    assert (location.line, location.column) == (12, 16)


def test_merge_keys_apply_and_explicit_keys_win():
    config = load_document(TEXT, "bp.yml").data["modules"][0]["config"]
    assert config["format"] == "csv" and config["header"] is False


def test_empty_file_is_an_error():
    with pytest.raises(BlueprintError, match="empty"):
        load_document("# nothing\n", "bp.yml")


def test_yaml_1_1_boolean_keys_stay_text():
    assert load_document("on: 1\n", "bp.yml").data == {"on": 1}


def test_blueprint_package_imports_neither_spark_nor_dagster():
    for source in PACKAGE.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"pyspark", "dagster", "delta"}, f"{source.name} imports {name}"
                assert not name.startswith("aqueduct_dagster.dagster"), source.name
                assert not name.startswith("aqueduct_dagster.engine"), source.name


def test_an_alias_is_located_where_its_anchor_is():
    document = load_document("base: &b {format: csv}\ncopy: *b\n", "bp.yml")
    assert document.data["copy"] == {"format": "csv"}
    assert str(document.location(("copy", "format"))) == "bp.yml:1:19"


def test_a_second_document_is_an_error():
    with pytest.raises(BlueprintError, match="bp.yml:2:1: a Blueprint file holds one YAML document"):
        load_document("a: 1\n---\nb: 2\n", "bp.yml")


def test_an_alias_without_an_anchor_is_located():
    with pytest.raises(BlueprintError, match="bp.yml:1:4: alias '\\*b' refers to no anchor"):
        load_document("a: *b\n", "bp.yml")


def test_syntax_errors_keep_pyyaml_wording_and_position():
    with pytest.raises(BlueprintError, match="bp.yml:2:1: invalid YAML: expected ',' or ']'"):
        load_document("a: [1, 2\n", "bp.yml")
