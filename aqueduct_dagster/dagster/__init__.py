"""Dagster integration: factory, translator, IO manager, resources."""

from aqueduct_dagster.dagster.factory import build_definitions, find_blueprint_files
from aqueduct_dagster.dagster.translator import BlueprintTranslator, ModuleAssetData

__all__ = ["BlueprintTranslator", "ModuleAssetData", "build_definitions", "find_blueprint_files"]
