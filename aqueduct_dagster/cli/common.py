"""What several commands share: KEY=VALUE context overrides, JSON output, finding Blueprint files."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.blueprint.loader import MAX_DOCUMENT_BYTES, load_document, read_blueprint_text
from aqueduct_dagster.errors import AqueductError

_NOT_BLUEPRINTS = (".aqtest.yml", ".aqtest.yaml", ".aqscenario.yml", ".aqscenario.yaml")
#: A YAML file found in a folder is a Blueprint when it has one of these top-level keys.
_BLUEPRINT_KEY = re.compile(r"^(?:aqueduct|modules)\s*:", re.MULTILINE)


def context_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--ctx")
        key, value = pair.split("=", 1)
        overrides[key] = value
    return overrides


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def blueprint_files(path: Path) -> Iterator[tuple[Path, str | None]]:
    """(file, why it is skipped or None) for a file or, recursively, a folder of Blueprints.

    A named file is always checked. In a folder: *.yml / *.yaml files, except aqtest and
    aqscenario files, `aqueduct.*` configs, hidden folders and YAML without a top-level
    `aqueduct:` or `modules:` key (CI configs, data).
    """
    if not path.is_dir():
        yield path, None
        return
    for file in sorted(p for pattern in ("*.yml", "*.yaml") for p in path.rglob(pattern)):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts[:-1]) or not file.is_file():
            continue
        if file.name.endswith(_NOT_BLUEPRINTS):
            continue
        if file.name.startswith("aqueduct."):
            yield file, "an aqueduct.yml engine config, not a Blueprint"
            continue
        try:
            # At most what the loader would read: a 50 MB data file is not read whole.
            with file.open("rb") as handle:
                head = handle.read(MAX_DOCUMENT_BYTES + 1).decode("utf-8", errors="replace")
        except OSError:
            head = "modules:"  # unreadable: let validation report it
        if not _BLUEPRINT_KEY.search(head):
            yield file, "no top-level `aqueduct:` or `modules:` key: not a Blueprint"
            continue
        yield file, None


def known_blueprint_ids(folder: Path) -> list[str]:
    """Ids of the Blueprint files in the blueprints folder (unreadable files are passed over)."""
    ids = []
    if folder.is_dir():
        for path, skipped in blueprint_files(folder):
            try:
                data = load_document(read_blueprint_text(path), str(path)).data
            except AqueductError:
                continue
            if not skipped and isinstance(data.get("id"), str):
                ids.append(data["id"])
    return ids


