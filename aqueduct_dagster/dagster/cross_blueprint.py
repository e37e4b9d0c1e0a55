"""Dependencies across Blueprints: an Ingress that reads what another Blueprint's Egress writes
depends on that Egress's asset, so the code location is one graph, not islands, and
`automation: eager` on the reader runs it when the writer has published.

Locations are compared as written after compilation (context resolved, runtime tokens such as
`@aq.date.today()` kept verbatim on both sides), normalised: `file:` dropped, relative paths
made absolute, no trailing slash; catalog tables by their lower-cased name.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit

import dagster as dg

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.dagster.translator import BlueprintTranslator, ModuleAssetData


def location_of(module: CompiledModule) -> str | None:
    config = module.spec.config
    table = getattr(config, "table", None)
    if table:
        return f"table:{str(table).lower()}"
    path = getattr(config, "path", None)
    if not path:
        return None
    text = str(path)
    scheme = urlsplit(text).scheme
    if scheme == "file":
        text = urlsplit(text).path
    elif scheme:
        return text.rstrip("/")
    return os.path.abspath(text).rstrip("/")


def upstream_of(manifests: Sequence[Manifest], translator: BlueprintTranslator | None = None
                ) -> dict[tuple[str, str], dg.AssetKey]:  # fmt: skip
    """(Blueprint id, Ingress id) -> the asset key of the other Blueprint's Egress it reads."""
    translator = translator or BlueprintTranslator()
    writers: dict[str, dg.AssetKey] = {}
    own: dict[str, set[dg.AssetKey]] = {}
    for manifest in manifests:
        try:
            keys = {m.id: translator.get_asset_spec(ModuleAssetData(manifest, m)).key
                    for m in manifest.modules.values() if m.writes_sink}  # fmt: skip
        except Exception:  # noqa: BLE001 - the Blueprint's own build reports it (robust loading)
            continue
        own[manifest.blueprint_id] = set(keys.values())
        for module_id, key in keys.items():
            location = location_of(manifest.module(module_id))
            if location:
                writers[location] = key
    found: dict[tuple[str, str], dg.AssetKey] = {}
    for manifest in manifests:
        for module in manifest.modules.values():
            location = location_of(module) if module.reads_source else None
            key = writers.get(location) if location else None
            if key is not None and key not in own.get(manifest.blueprint_id, set()):
                found[(manifest.blueprint_id, module.id)] = key
    return found
