"""Blueprint revisions: serialized, journaled rewrites with a history that rollback can replay.

Every change to a Blueprint file goes through `RevisionStore.write`, under a per-Blueprint lock
(`filelock`, a lock file under `<revisions>/.locks/`), in steps that a crash can stop anywhere:

1. an *intent* (what is about to change: path, sha256 before and after, the revision number,
   the staging folder, and what the patch queue must do afterwards) is written atomically;
2. the revision is staged in `<id>/.<number>.staging/` (previous text, new text, diff, patch);
3. the Blueprint file is replaced atomically (temp file in the same folder, fsync, rename);
4. the staged folder is renamed to `<id>/<number>/`: the revision is committed;
5. the intent's follow-up (moving the patch file, updating the store index) runs;
6. the intent is deleted.

`recover` runs each time the lock is taken: an intent left by a killed process is completed
when the file was already replaced (or the revision already committed) and rolled back
otherwise, so a file never changes without a revision, a revision is never written twice, and
the follow-up of a completed change always runs. Revision numbers are the largest existing
number plus one, read under the lock, and never reused.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.patch import PatchSpec

#: How long an operation waits for another process's apply, reject or rollback of the same Blueprint.
LOCK_TIMEOUT_S = 300.0

_SAFE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

#: Runs the patch queue's part of an intent (move the patch file, update the store); idempotent.
Finisher = Callable[[dict[str, Any]], None]


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


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it must not undo it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old or the new file, never a mix."""
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def text_digest(text: str) -> str:
    """The digest recorded at staging: of the text as the heal read it (universal newlines)."""
    return sha256_bytes(text.encode("utf-8"))


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


def checked_blueprint_id(blueprint_id: str) -> str:
    """A Blueprint id names folders and lock files: nothing that could leave the revisions dir."""
    if not isinstance(blueprint_id, str) or not _SAFE_ID.fullmatch(blueprint_id) or ".." in blueprint_id:
        raise RevisionError(
            f"blueprint id {blueprint_id!r} cannot name a revision folder",
            hint="a Blueprint id uses letters, digits, '_', '-' and '.' only",
        )
    return blueprint_id


class RevisionStore:
    """Revision history under `<root>/<blueprint id>/<number>/`, written under a per-Blueprint lock.

    `finisher` runs the patch queue's follow-up of an intent (the `queue` section); a store
    without one refuses to recover an intent that has such a section rather than drop it.
    """

    def __init__(self, root: str | Path, *, finisher: Finisher | None = None,
                 lock_timeout: float = LOCK_TIMEOUT_S) -> None:  # fmt: skip
        self.root = Path(root)
        self.finisher = finisher
        self.lock_timeout = lock_timeout

    # ------------------------------------------------------------------ reading

    def history(self, blueprint_id: str) -> list[Revision]:
        folder = self.root / checked_blueprint_id(blueprint_id)
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

    def _next_number(self, blueprint_id: str) -> int:
        folder = self.root / blueprint_id
        numbers = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        return max(numbers, default=0) + 1

    def intent_path(self, blueprint_id: str) -> Path:
        return self.root / checked_blueprint_id(blueprint_id) / "intent.json"

    # ------------------------------------------------------------------ locking and recovery

    @contextmanager
    def locked(self, blueprint_id: str) -> Iterator[None]:
        """Hold `blueprint_id`'s lock (re-entrant in one thread), after recovering any interrupted change."""
        checked_blueprint_id(blueprint_id)
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        # One object per lock file in a process: a second object's flock would wait on the first.
        lock = FileLock(str((locks / f"{blueprint_id}.lock").resolve()), is_singleton=True)
        try:
            lock.acquire(timeout=self.lock_timeout)
        except Timeout:
            raise RevisionError(
                f"another process has held the lock of blueprint '{blueprint_id}' for {self.lock_timeout:.0f}s",
                hint=f"wait for the running apply, reject or rollback to finish (lock file {lock.lock_file})",
            ) from None
        try:
            if lock.lock_counter == 1:
                self.recover(blueprint_id)
            yield
        finally:
            lock.release()

    def pending_intents(self) -> list[str]:
        """Blueprint ids with an interrupted change waiting for recovery."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/intent.json"))

    def recover_all(self) -> None:
        for blueprint_id in self.pending_intents():
            with self.locked(blueprint_id):
                pass

    def recover(self, blueprint_id: str) -> str | None:
        """Complete or roll back `blueprint_id`'s interrupted change; the lock must be held.

        Returns "completed", "rolled back" or None (nothing to do).
        """
        folder = self.root / blueprint_id
        intent_file = folder / "intent.json"
        if folder.is_dir():
            for leftover in folder.glob(".intent.json.*.tmp"):
                leftover.unlink(missing_ok=True)
        if not intent_file.is_file():
            self._remove_orphan_staging(folder, keep=None)
            return None
        intent = json.loads(intent_file.read_text(encoding="utf-8"))
        if intent.get("kind") == "write":
            outcome = self._recover_write(intent)
        else:  # a reject: nothing in the Blueprint changes, so its follow-up always runs
            outcome = "completed"
        if outcome == "completed" and intent.get("queue"):
            if self.finisher is None:
                raise RevisionError(
                    f"an interrupted patch apply or reject of blueprint '{blueprint_id}' must be finished "
                    "by the patch queue",
                    hint="run `aqueduct patch list` (it finishes interrupted applies) and retry",
                )
            self.finisher(intent)
        self._clear_intent(intent_file)
        self._remove_orphan_staging(folder, keep=None)
        return outcome

    def _recover_write(self, intent: dict[str, Any]) -> str:
        path = Path(intent["blueprint_path"])
        folder = self.root / intent["blueprint_id"]
        staging = folder / intent["staging"]
        committed = folder / f"{intent['number']:04d}"
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)  # a replace the crash cut short
        if committed.is_dir():
            return "completed"
        current = sha256_bytes(path.read_bytes()) if path.exists() else None
        staged_in_full = (staging / "revision.json").is_file()
        if current == intent["sha256_after"] and staged_in_full:
            self._commit_revision(staging, committed)
            return "completed"
        if current == intent["sha256_before"]:
            shutil.rmtree(staging, ignore_errors=True)
            return "rolled back"
        raise RevisionError(
            f"{path} changed while a revision of blueprint '{intent['blueprint_id']}' was being written "
            "(it matches neither the text before nor the text after)",
            hint=f"compare it with {staging / 'previous.yml'} and {staging / 'current.yml'}, restore one of "
            f"them, then retry; the interrupted change is described in {folder / 'intent.json'}",
        )

    @staticmethod
    def _remove_orphan_staging(folder: Path, keep: Path | None) -> None:
        if not folder.is_dir():
            return
        for entry in folder.glob(".*.staging"):
            if entry != keep:
                shutil.rmtree(entry, ignore_errors=True)

    # ------------------------------------------------------------------ the steps of a write

    @staticmethod
    def _write_intent(intent_file: Path, intent: dict[str, Any]) -> None:
        intent_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(intent_file, json.dumps(intent, indent=2))

    @staticmethod
    def _stage_revision(staging: Path, files: dict[str, bytes]) -> None:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        # revision.json last: its presence means the staged folder is complete.
        for name in sorted(files, key=lambda n: n == "revision.json"):
            with open(staging / name, "wb") as handle:
                handle.write(files[name])
                handle.flush()
                os.fsync(handle.fileno())
        _fsync_dir(staging)

    @staticmethod
    def _replace_file(path: Path, data: bytes) -> None:
        atomic_write_bytes(path, data)

    @staticmethod
    def _commit_revision(staging: Path, committed: Path) -> None:
        os.replace(staging, committed)
        _fsync_dir(committed.parent)

    @staticmethod
    def _clear_intent(intent_file: Path) -> None:
        intent_file.unlink(missing_ok=True)
        _fsync_dir(intent_file.parent)

    def write(
        self, blueprint_path: str | Path, new_text: str | bytes, *, patch: PatchSpec | None = None, reason: str = "",
        blueprint_id: str | None = None, queue: dict[str, Any] | None = None,
        expect_sha256: str | None = None,
    ) -> Revision:
        """Write `new_text` to `blueprint_path` and record it as the next revision of `blueprint_id`
        (default: the id in the file; an Arcade's sub-Blueprint passes its user's).

        `queue`: the patch queue's follow-up, run by the finisher once the revision is committed.
        `expect_sha256`: refuse unless the file's text still has this digest (checked under the lock).
        """
        path = Path(blueprint_path)
        blueprint_id = blueprint_id or blueprint_id_of(path.read_text(encoding="utf-8"), path)
        with self.locked(blueprint_id):
            old = path.read_bytes()
            if expect_sha256 is not None and text_digest(path.read_text(encoding="utf-8")) != expect_sha256:
                raise RevisionError(
                    f"{path} changed since it was read: the Blueprint changed since this patch was staged: heal again",
                    hint="the change was not written; a new failure of the Blueprint will heal against the new text",
                )
            new = new_text.encode("utf-8") if isinstance(new_text, str) else new_text
            return self._write_locked(path, old, new, patch=patch, reason=reason, blueprint_id=blueprint_id, queue=queue)

    def _write_locked(self, path: Path, old: bytes, new: bytes, *, patch: PatchSpec | None, reason: str,
                      blueprint_id: str, queue: dict[str, Any] | None) -> Revision:  # fmt: skip
        folder = self.root / blueprint_id
        folder.mkdir(parents=True, exist_ok=True)
        number = self._next_number(blueprint_id)
        old_text, new_text = old.decode("utf-8", "replace"), new.decode("utf-8", "replace")
        revision = Revision(
            blueprint_id=blueprint_id,
            number=number,
            blueprint_path=str(path),
            created_at=datetime.now(UTC).isoformat(),
            reason=reason or (patch.rationale if patch else "manual edit"),
            patch_id=patch.patch_id if patch else None,
            diff=unified_diff(old_text, new_text, path.name),
        )
        staging = folder / f".{number:04d}.staging"
        intent = {
            "kind": "write",
            "blueprint_id": blueprint_id,
            "blueprint_path": str(path),
            "number": number,
            "staging": staging.name,
            "sha256_before": sha256_bytes(old),
            "sha256_after": sha256_bytes(new),
            "patch_id": revision.patch_id,
            "queue": queue,
        }
        files = {
            "previous.yml": old,
            "current.yml": new,
            "diff.patch": revision.diff.encode("utf-8"),
            "revision.json": json.dumps(asdict(revision), indent=2).encode("utf-8"),
        }
        if patch is not None:
            files["patch.json"] = patch.model_dump_json(indent=2).encode("utf-8")
        intent_file = folder / "intent.json"
        self._write_intent(intent_file, intent)
        try:
            self._stage_revision(staging, files)
            self._replace_file(path, new)
        except BaseException:
            # Nothing changed yet (an atomic replace either happened or not): undo the staging.
            if sha256_bytes(path.read_bytes()) == intent["sha256_before"]:
                shutil.rmtree(staging, ignore_errors=True)
                self._clear_intent(intent_file)
            raise
        self._commit_revision(staging, folder / f"{number:04d}")
        if queue and self.finisher is not None:
            self.finisher(intent)
        elif queue:
            raise RevisionError("a patch queue follow-up needs the patch queue's revision store")
        self._clear_intent(intent_file)
        return revision

    def reject_journaled(self, blueprint_id: str, queue: dict[str, Any]) -> None:
        """Record a reject as an intent, run it, clear it: a crash midway is finished at the next start."""
        if self.finisher is None:
            raise RevisionError("a reject needs the patch queue's revision store")
        with self.locked(blueprint_id):
            intent_file = self.intent_path(blueprint_id)
            intent = {"kind": "reject", "blueprint_id": blueprint_id, "patch_id": queue.get("patch_id"), "queue": queue}
            self._write_intent(intent_file, intent)
            self.finisher(intent)
            self._clear_intent(intent_file)

    def rollback(self, blueprint_path: str | Path, to_number: int) -> Revision:
        """Restore the file as it was *before* revision `to_number`, byte for byte, as a new revision."""
        path = Path(blueprint_path)
        blueprint_id = blueprint_id_of(path.read_text(encoding="utf-8"), path)
        with self.locked(blueprint_id):
            self.get(blueprint_id, to_number)
            previous = (self.root / blueprint_id / f"{to_number:04d}" / "previous.yml").read_bytes()
            return self.write(path, previous, reason=f"rollback of revision {to_number}", blueprint_id=blueprint_id)
