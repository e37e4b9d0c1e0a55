"""The single seam between a compiled module and its Dagster asset.

Subclass `BlueprintTranslator` and override `get_asset_spec` to change keys, groups,
descriptions, metadata, owners or tags; the factory uses the returned spec as is, except
for `deps`, which it derives from the Blueprint's edges (through your keys).

A module expanded from an Arcade (`A__child`) gets the key `[blueprint, A, child]`, so the
catalog nests it under the Arcade, and the tag `aqueduct/arcade: A` (`A.B` when nested); its
group stays the Blueprint's, Dagster having one level of groups.

The default spec follows Dagster's metadata conventions (code references to the YAML line,
`dagster/uri` / `dagster/table_name`) and gets a `code_version` that a moved checkout keeps:
see `dagster/metadata.py`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.blueprint.names import safe_name
from aqueduct_dagster.dagster.metadata import code_version, definition_metadata

_UNSAFE_IN_TAG = re.compile(r"[^A-Za-z0-9_.-]+")
#: Dagster's rule for a tag key (an optional `namespace/`, 63 characters a part), restated:
#: the check Dagster uses is private (`dagster._utils.tags`).
_DAGSTER_TAG_KEY = re.compile(r"^(?:[A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}$")

#: Asset tag naming the Arcade (dotted path when nested) a module was expanded from.
ARCADE_TAG = "aqueduct/arcade"
#: Namespace of the asset tags made from a module's `tags:` (Dagster allows one '/' in a key).
MODULE_TAG_PREFIX = "aqueduct-tag/"
_TAG_NAME_LIMIT = 63


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
        metadata = definition_metadata(manifest, module)
        if module.spec.tags:
            # Dagster tag keys are restricted; the tags as written stay in the metadata.
            metadata["aqueduct/tags"] = dg.MetadataValue.json(list(module.spec.tags))
        tags = module_tag_keys(module.spec.tags)
        if module.arcade:
            tags[ARCADE_TAG] = ".".join(module.arcade)
        return dg.AssetSpec(
            key=dg.AssetKey([manifest.blueprint_id, *module.arcade, module.local_id]),
            group_name=safe_name(manifest.blueprint_id),
            description=module.spec.description or module.spec.label or None,
            metadata=metadata,
            code_version=code_version(manifest, module),
            kinds={"spark", module.type.lower()} | (_storage_kind(config)),
            tags=tags,
        )


def is_dagster_tag_key(key: str) -> bool:
    """Whether Dagster accepts `key` as a run or asset tag key."""
    return bool(_DAGSTER_TAG_KEY.match(key))


def module_tag_keys(tags: Iterable[str]) -> dict[str, str]:
    """A module's free-text tags (`mode:conditional`, `pii data`) as valid Dagster tag keys:
    `aqueduct-tag/<name>` with an empty value, characters Dagster refuses replaced by `_`.

    Two tags that become one name (`a:b`, `a b`) keep apart by a short hash of the original.
    """
    keys: dict[str, str] = {}
    for tag in dict.fromkeys(tags):
        name = _UNSAFE_IN_TAG.sub("_", str(tag)).strip("_") or "tag"
        if len(name) > _TAG_NAME_LIMIT or f"{MODULE_TAG_PREFIX}{name}" in keys:
            digest = hashlib.sha1(str(tag).encode()).hexdigest()[:8]
            name = f"{name[: _TAG_NAME_LIMIT - 9]}_{digest}"
        keys[f"{MODULE_TAG_PREFIX}{name}"] = ""
    return keys


def _storage_kind(config: dict) -> set[str]:
    fmt = str(config.get("format") or "").lower()
    return {fmt} if fmt in {"delta", "parquet", "csv", "json"} else set()
