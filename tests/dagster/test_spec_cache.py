"""The default translator's asset specs kept between loads: a later load (a fresh process: the
in-memory level cleared) builds equal specs without asking the translator, and anything the
specs show (here a module's line) still changes them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from aqueduct_dagster.dagster import BlueprintTranslator, build_definitions
from aqueduct_dagster.dagster.spec_cache import SPEC_CACHE

BLUEPRINT = """\
aqueduct: "1.0"
id: kept
name: Kept
modules:
  - id: raw
    type: Ingress
    config: {format: csv, path: /data/raw.csv}
  - id: published
    type: Egress
    config: {format: parquet, path: /data/published, mode: overwrite}
edges:
  - {from: raw, to: published}
"""
RAW = dg.AssetKey(["kept", "raw"])


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AQUEDUCT_COMPILE_CACHE", str(tmp_path / "compile-cache"))
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    (blueprints / "kept.yml").write_text(BLUEPRINT)
    return blueprints


@pytest.fixture
def translator_calls(monkeypatch) -> list[str]:
    """Module ids the default translator is asked for (still the default: patched in place)."""
    calls: list[str] = []
    original = BlueprintTranslator.get_asset_spec

    def counted(self, data):
        calls.append(data.module.id)
        return original(self, data)

    monkeypatch.setattr(BlueprintTranslator, "get_asset_spec", counted)
    return calls


def _specs(folder: Path, translator: BlueprintTranslator | None = None) -> dict[dg.AssetKey, dg.AssetSpec]:
    SPEC_CACHE._memory.clear()  # as a fresh process finds it: only the disk level
    definitions = build_definitions(folder, strict=True, translator=translator)
    return {spec.key: spec for a in definitions.assets if isinstance(a, dg.AssetsDefinition) for spec in a.specs}


def test_a_later_load_reads_equal_specs_without_the_translator(folder, translator_calls):
    first = _specs(folder)
    assert sorted(translator_calls) == ["published", "raw"]
    assert list((folder.parent / "compile-cache").glob("*/*.specs"))
    translator_calls.clear()
    assert _specs(folder) == first
    assert translator_calls == []


def test_a_moved_line_is_a_new_spec(folder, translator_calls):
    reference = _specs(folder)[RAW].metadata["dagster/code_references"].code_references[0]
    assert reference.line_number == 5
    (folder / "kept.yml").write_text("# moved down a line\n" + BLUEPRINT)
    reference = _specs(folder)[RAW].metadata["dagster/code_references"].code_references[0]
    assert reference.line_number == 6


def test_a_custom_translator_is_asked_every_time(folder):
    class Owned(BlueprintTranslator):
        calls = 0

        def get_asset_spec(self, data):
            Owned.calls += 1
            return super().get_asset_spec(data).replace_attributes(owners=["team:data"])

    _specs(folder, Owned())
    _specs(folder, Owned())
    assert Owned.calls == 4
