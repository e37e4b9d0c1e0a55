"""Blueprint revisions: atomic rewrites with a history that rollback can replay.

Every change to a Blueprint file goes through `RevisionStore.write`: the previous text, the
patch and a unified diff are staged first, the file is replaced atomically (temp file in the
same folder, fsync, rename), and only then is the revision recorded. A crash at any point
leaves either the old file or the new one, never a half-written one.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.patch import PatchSpec


class RevisionError(AqueductError):
    """A revision cannot be written or restored."""


@dataclass(frozen=True)
class Revision:
    blueprint_id: str
    number: int
    blueprint_path: str
    created_at: str
    reason: str
    patch_id: str | None
    diff: str

    @property
    def summary(self) -> str:
        what = f"patch {self.patch_id}" if self.patch_id else self.reason
        return f"revision {self.number} of {self.blueprint_id}: {what}"


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so readers see the old or the new file, never a mix."""
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def unified_diff(before: str, after: str, name: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"a/{name}",
            tofile=f"b/{name}",
        )
    )


def blueprint_id_of(text: str, path: Path) -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RevisionError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict) or not data.get("id"):
        raise RevisionError(f"{path} has no top-level `id:`")
    return str(data["id"])


class RevisionStore:
    """Revision history under `<root>/<blueprint id>/<number>/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def history(self, blueprint_id: str) -> list[Revision]:
        folder = self.root / blueprint_id
        if not folder.is_dir():
            return []
        revisions = []
        for entry in sorted(folder.iterdir()):
            meta = entry / "revision.json"
            if entry.name.isdigit() and meta.is_file():
                revisions.append(Revision(**json.loads(meta.read_text())))
        return sorted(revisions, key=lambda r: r.number)

    def get(self, blueprint_id: str, number: int) -> Revision:
        for revision in self.history(blueprint_id):
            if revision.number == number:
                return revision
        raise RevisionError(
            f"blueprint '{blueprint_id}' has no revision {number}",
            hint="list them with `aqueduct patch list` or look under " + str(self.root / blueprint_id),
        )

    def write(
        self, blueprint_path: str | Path, new_text: str, *, patch: PatchSpec | None = None, reason: str = "",
        blueprint_id: str | None = None,
    ) -> Revision:
        """Write `new_text` to `blueprint_path` atomically and record it as the next revision of
        `blueprint_id` (default: the id in the file; an Arcade's sub-Blueprint passes its user's)."""
        path = Path(blueprint_path)
        old_text = path.read_text(encoding="utf-8")
        blueprint_id = blueprint_id or blueprint_id_of(old_text, path)
        number = len(self.history(blueprint_id)) + 1
        revision = Revision(
            blueprint_id=blueprint_id,
            number=number,
            blueprint_path=str(path),
            created_at=datetime.now(timezone.utc).isoformat(),
            reason=reason or (patch.rationale if patch else "manual edit"),
            patch_id=patch.patch_id if patch else None,
            diff=unified_diff(old_text, new_text, path.name),
        )
        folder = self.root / blueprint_id
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{number:04d}.", dir=folder))
        try:
            (staging / "previous.yml").write_text(old_text, encoding="utf-8")
            (staging / "current.yml").write_text(new_text, encoding="utf-8")
            (staging / "diff.patch").write_text(revision.diff, encoding="utf-8")
            if patch is not None:
                (staging / "patch.json").write_text(patch.model_dump_json(indent=2), encoding="utf-8")
            (staging / "revision.json").write_text(json.dumps(asdict(revision), indent=2))
            atomic_write_text(path, new_text)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        os.replace(staging, folder / f"{number:04d}")
        return revision

    def rollback(self, blueprint_path: str | Path, to_number: int) -> Revision:
        """Restore the file as it was *before* revision `to_number`, as a new revision."""
        path = Path(blueprint_path)
        blueprint_id = blueprint_id_of(path.read_text(encoding="utf-8"), path)
        self.get(blueprint_id, to_number)
        previous = (self.root / blueprint_id / f"{to_number:04d}" / "previous.yml").read_text()
        return self.write(path, previous, reason=f"rollback of revision {to_number}")
