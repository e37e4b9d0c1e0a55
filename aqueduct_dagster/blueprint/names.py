"""The names a Blueprint's id becomes outside the Blueprint (Dagster jobs, groups, ops), and
which Blueprints of one folder would collide under them."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aqueduct_dagster.blueprint.manifest import Manifest

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def safe_name(text: str) -> str:
    """A Dagster-legal name (ops, jobs, groups): letters, digits and underscores."""
    return _UNSAFE.sub("_", text)


def shared_ids(manifests: Iterable[Manifest]) -> dict[str, list[Manifest]]:
    """Job name -> the Manifests that would all take it, for names taken more than once.

    Ids are compared as job names: `a.b` and `a_b` are one job.
    """
    by_name: dict[str, list[Manifest]] = {}
    for manifest in manifests:
        by_name.setdefault(safe_name(manifest.blueprint_id), []).append(manifest)
    return {name: group for name, group in by_name.items() if len(group) > 1}
