"""Load a folder of Blueprints so that one bad file never takes the others down.

A code location is all or nothing in Dagster: an exception while building `Definitions`
hides every job. So each Blueprint is compiled (and later turned into assets) on its own;
a file that fails is set aside as a `LoadProblem`, logged as a warning, and shown in the UI
as an asset of its own (group `aqueduct_load_errors`) whose description says what is wrong
and where (file:line). Two files with one Blueprint id hold back those two files only.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.blueprint.names import shared_ids
from aqueduct_dagster.dagster.translator import safe_name
from aqueduct_dagster.errors import AqueductError

_log = logging.getLogger("aqueduct_dagster.loading")

#: Group of the assets that stand for Blueprints which did not load.
LOAD_ERRORS_GROUP = "aqueduct_load_errors"


@dataclass(frozen=True)
class LoadProblem:
    """A Blueprint file left out of the code location, and why."""

    path: str
    #: The error as the CLI prints it: starts with file:line when the error has a place.
    message: str
    location: str | None = None
    #: What was raised, when something was (`strict` loading re-raises it).
    error: BaseException | None = field(default=None, compare=False, repr=False)

    def asset_spec(self) -> dg.AssetSpec:
        """What a Dagster user sees in the catalog: an asset named after the file whose
        description is the error."""
        stem = safe_name(Path(self.path).stem)[:40] or "blueprint"
        # The file's path keeps two `x.yml` in different folders (or x.yml / x.yaml) apart.
        digest = hashlib.sha1(self.path.encode()).hexdigest()[:8]
        metadata: dict[str, Any] = {"aqueduct/blueprint": self.path, "aqueduct/load_error": self.message}
        if self.location:
            metadata["aqueduct/defined_at"] = self.location
        return dg.AssetSpec(
            key=dg.AssetKey([LOAD_ERRORS_GROUP, f"{stem}_{digest}"]),
            group_name=LOAD_ERRORS_GROUP,
            description=f"Blueprint {self.path} did not load and has no job or assets:\n\n{self.message}",
            metadata=metadata,
            tags={"aqueduct/load_error": "true"},
        )


def problem_from(path: str | Path, error: BaseException) -> LoadProblem:
    if isinstance(error, AqueductError):
        location = str(error.location) if error.location else None
        return LoadProblem(str(path), str(error), location, error)
    # Not one of ours (a bug, or Dagster rejecting a definition): still only this file.
    first = str(error).splitlines()[0] if str(error) else ""
    return LoadProblem(str(path), f"{path}: {type(error).__name__}: {first}", str(path), error)


def compile_folder(
    files: Iterable[Path],
    context_overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> tuple[list[Manifest], list[LoadProblem]]:
    """Compile every file; the ones that fail, and files sharing an id, become problems."""
    manifests: list[Manifest] = []
    problems: list[LoadProblem] = []
    for path in files:
        try:
            manifests.append(compile_blueprint(path, context_overrides=context_overrides, profile=profile))
        except Exception as error:  # noqa: BLE001 - one file's failure is reported, not raised
            problems.append(problem_from(path, error))
    kept, duplicates = split_duplicate_ids(manifests)
    return kept, problems + duplicates


def split_duplicate_ids(manifests: list[Manifest]) -> tuple[list[Manifest], list[LoadProblem]]:
    """(manifests with a unique id, one problem per file that shares its id with another).

    Ids are compared as Dagster names (`a.b` and `a_b` are one job name).
    """
    collisions = shared_ids(manifests)
    colliding = {id(m) for group in collisions.values() for m in group}
    kept, problems = [m for m in manifests if id(m) not in colliding], []
    for name, group in collisions.items():
        files = ", ".join(f"'{m.source_path}'" for m in group)
        for manifest in group:
            problems.append(LoadProblem(
                manifest.source_path,
                f"{manifest.source_path}: Blueprints {files} all use id '{manifest.blueprint_id}' "
                f"(Dagster job and group '{name}'), so none of them is loaded\n"
                "  hint: give every Blueprint in the folder a unique `id:` (or move one out)",
                manifest.source_path,
            ))  # fmt: skip
    return kept, problems


def report(problems: Iterable[LoadProblem]) -> None:
    """One warning per problem in the code location's log (`dagster dev`, `definitions validate`)."""
    for problem in problems:
        _log.warning("Blueprint not loaded: %s", problem.message)
