"""The single seam between a compiled module and its Dagster asset.

Subclass `BlueprintTranslator` and override `get_asset_spec` to change keys, groups,
descriptions, metadata, owners or tags; the factory uses the returned spec as is, except
for `deps`, which it derives from the Blueprint's edges (through your keys).

A module expanded from an Arcade (`A__child`) gets the key `[blueprint, A, child]`, so the
catalog nests it under the Arcade, and the tag `aqueduct/arcade: A` (`A.B` when nested); its
group stays the Blueprint's, Dagster having one level of groups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dagster as dg

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

#: Asset tag naming the Arcade (dotted path when nested) a module was expanded from.
ARCADE_TAG = "aqueduct/arcade"


def safe_name(text: str) -> str:
    """A Dagster-legal name (ops, jobs, groups): letters, digits and underscores."""
    return _UNSAFE.sub("_", text)


@dataclass(frozen=True)
class ModuleAssetData:
    """What the translator gets to build one module's asset spec."""

    manifest: Manifest
    module: CompiledModule


class BlueprintTranslator:
    """Maps Manifest modules to Dagster `AssetSpec`s."""

    def get_asset_spec(self, data: ModuleAssetData) -> dg.AssetSpec:
        manifest, module = data.manifest, data.module
        config = module.spec.config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        metadata: dict[str, object] = {
            "aqueduct/module_type": module.type,
            "aqueduct/blueprint": manifest.source_path,
            "aqueduct/config": dg.MetadataValue.json(config),
        }
        if module.location is not None:
            metadata["aqueduct/defined_at"] = str(module.location)
        if module.sql:
            metadata["aqueduct/sql"] = dg.MetadataValue.md(f"```sql\n{module.sql.strip()}\n```")
        path = getattr(module.spec.config, "path", None)
        if path:
            metadata["aqueduct/path"] = dg.MetadataValue.path(path)
        tags = {f"aqueduct/tag/{safe_name(t)}": "" for t in module.spec.tags}
        if module.arcade:
            tags[ARCADE_TAG] = ".".join(module.arcade)
        return dg.AssetSpec(
            key=dg.AssetKey([manifest.blueprint_id, *module.arcade, module.local_id]),
            group_name=safe_name(manifest.blueprint_id),
            description=module.spec.description or module.spec.label or None,
            metadata=metadata,
            code_version=module.fingerprint or None,
            kinds={"spark", module.type.lower()} | (_storage_kind(config)),
            tags=tags,
        )


def _storage_kind(config: dict) -> set[str]:
    fmt = str(config.get("format") or "").lower()
    return {fmt} if fmt in {"delta", "parquet", "csv", "json"} else set()
