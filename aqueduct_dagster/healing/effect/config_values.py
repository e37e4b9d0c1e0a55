"""Small readers of compiled config values, shared by the effect's parts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aqueduct_dagster.blueprint.manifest import CompiledModule


def strings_in(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, text) for every string in nested config (lists keep their parent's key)."""
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(item, f"{prefix}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item, prefix)


def canonical(value: Any) -> str:
    """One text per value, whatever the order of its keys: two equal configs compare equal."""
    return json.dumps(value, sort_keys=True, default=str)


def webhook_url(value: Any) -> str:
    """Where a webhook setting (a URL, or a block with `url:`) sends to."""
    if isinstance(value, Mapping):
        return str(value.get("url") or sorted(value.items()))
    return str(value)


def is_enabled(module: CompiledModule) -> bool:
    return module.spec.enabled is True or str(module.spec.enabled).strip().lower() == "true"
