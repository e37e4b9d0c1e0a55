"""Which file a patch edits when the failed module came from an Arcade.

An Arcade's modules run under flattened ids (`<arcade>__<child>`) but are written, with their
templating, in the sub-Blueprint the Arcade refers to. A healer must read and edit them
there: `raw_modules` gathers every module as written under its flattened id, and
`route_patch` turns a patch on flattened ids into the same patch on the one file that holds
those modules, with their ids as written in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aqueduct_dagster.blueprint.arcade import SEPARATOR
from aqueduct_dagster.healing.patch import PatchError, PatchSpec

#: Arcade refs that are computed (templated) cannot be followed without compiling.
_TEMPLATED = ("${", "@aq.", "{{")


@dataclass(frozen=True)
class PatchTarget:
    """The file a patch edits, its text, and the patch with ids as written in that file."""

    path: Path
    text: str
    patch: PatchSpec
    #: The Blueprint that is compiled and run (the target itself, or the one using its Arcade).
    root_path: Path

    @property
    def is_root(self) -> bool:
        return self.path == self.root_path


def raw_modules(blueprint_text: str, blueprint_path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every module as written, by its id in the Manifest (Arcade children: `<arcade>__<id>`)."""
    found: dict[str, dict[str, Any]] = {}
    _collect(blueprint_text, Path(blueprint_path).resolve() if blueprint_path else None, "", found, set())
    return found


def route_patch(root_path: str | Path, root_text: str, patch: PatchSpec) -> PatchTarget:
    """The one file `patch` edits. Raises PatchError when its operations span several files."""
    root = Path(root_path).resolve()
    targets: dict[Path, str] = {}
    operations = []
    for operation in patch.operations:
        module_id = getattr(operation, "module_id", None)
        if module_id is None:
            path, text, local = root, root_text, None
        else:
            path, text, local = _owner(root, root_text, module_id)
        targets[path] = text
        operations.append(operation if local in (None, module_id) else operation.model_copy(update={"module_id": local}))
    if len(targets) > 1:
        names = ", ".join(str(p) for p in targets)
        raise PatchError(
            f"the patch edits several files ({names})",
            hint="a patch changes one Blueprint file: split it into one patch per file",
        )
    [(path, text)] = targets.items() if targets else [(root, root_text)]
    return PatchTarget(path, text, patch.model_copy(update={"operations": operations}), root)


def _owner(root: Path, root_text: str, module_id: str) -> tuple[Path, str, str]:
    """(file, its text, the id as written there) of the module `module_id` of the Manifest."""
    path, text, remaining = root, root_text, module_id
    while True:
        modules = _modules(text)
        if remaining in modules or SEPARATOR not in remaining:
            return path, text, remaining
        arcade, rest = _split(remaining, modules)
        if arcade is None:
            return path, text, remaining  # unknown here: apply_patch_text names it
        path, text = _arcade_file(path, arcade, modules[arcade])
        remaining = rest


def _split(module_id: str, modules: dict[str, dict[str, Any]]) -> tuple[str | None, str]:
    # Arcade ids may contain the separator themselves: try the longest Arcade id first.
    parts = module_id.split(SEPARATOR)
    for cut in range(len(parts) - 1, 0, -1):
        arcade = SEPARATOR.join(parts[:cut])
        if modules.get(arcade, {}).get("type") == "Arcade":
            return arcade, SEPARATOR.join(parts[cut:])
    return None, module_id


def _arcade_file(parent: Path, arcade_id: str, spec: dict[str, Any]) -> tuple[Path, str]:
    ref = str(spec.get("ref") or "")
    if not ref or any(mark in ref for mark in _TEMPLATED):
        raise PatchError(
            f"cannot follow Arcade '{arcade_id}' to its file (ref: {ref or 'missing'})",
            module_id=arcade_id,
            hint="a healer edits sub-Blueprints only when the Arcade's `ref:` is a plain path",
        )
    path = (parent.parent / ref).resolve()
    try:
        return path, path.read_text(encoding="utf-8")
    except OSError as error:
        raise PatchError(f"cannot read Arcade file {path}: {error}", module_id=arcade_id) from None


def _modules(text: str) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}
    return {m["id"]: m for m in data.get("modules") or [] if isinstance(m, dict) and "id" in m}


def _collect(text: str, path: Path | None, prefix: str, found: dict[str, dict[str, Any]], seen: set[Path]) -> None:
    for module_id, module in _modules(text).items():
        found[prefix + module_id] = module
        if module.get("type") != "Arcade" or path is None:
            continue
        try:
            child, child_text = _arcade_file(path, module_id, module)
        except PatchError:
            continue  # a templated ref: its modules are not shown as written
        if child not in seen:
            _collect(child_text, child, f"{prefix}{module_id}{SEPARATOR}", found, seen | {child})
