"""The queue of staged patches: patches/pending -> applied | rejected, in step with revisions and the store.

Nothing in `patches/pending` is trusted because of where it lies: a record is applied only when
its sha256 equals the digest the store kept when aqueduct staged it, its Blueprint paths lie
under the configured Blueprint roots, the Blueprint file still has the digest it had at staging,
and the non-Spark gates still pass against the file as it is now. Every apply, reject, rollback
and auto-apply of one Blueprint runs under that Blueprint's lock and through the journal of
`RevisionStore` (see revisions.py), so concurrent reviewers and crashes cannot lose a revision,
write one twice, or leave an applied patch pending.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.healing.revisions import (
    Revision,
    RevisionStore,
    atomic_write_bytes,
    atomic_write_text,
    blueprint_id_of,
    checked_blueprint_id,
    sha256_bytes,
    text_digest,
)
from aqueduct_dagster.settings import Settings
from aqueduct_dagster.stores import Store

_PATCH_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
#: The lock (and journal) key for rejecting a pending file that is not a readable record.
_UNRECOGNISED = "_unrecognised_records"
CHANGED_SINCE_STAGED = "the Blueprint changed since this patch was staged: heal again"


class HealError(AqueductError):
    """A patch cannot be staged, applied or rejected."""


@dataclass(frozen=True)
class PendingPatch:
    patch: PatchSpec
    path: Path
    record: dict[str, Any]
    #: sha256 of the record file's bytes, as read (the bytes the record was parsed from).
    record_sha256: str = ""

    @property
    def patch_id(self) -> str:
        return self.patch.patch_id


class PatchQueue:
    """patches/pending -> applied | rejected, with the revision store and the index in step.

    `blueprint_roots`: folders a staged record may point into; `from_settings` always sets them.
    None (a queue built by hand, as in tests of the heal loop) skips that one check.
    """

    def __init__(self, patches_dir: Path, revisions_dir: Path, store: Store, *,
                 blueprint_roots: Sequence[str | Path] | None = None, config: Any = None) -> None:  # fmt: skip
        self.patches_dir = Path(patches_dir)
        self.revisions = RevisionStore(revisions_dir, finisher=self._finish)
        self.store = store
        self.blueprint_roots = None if blueprint_roots is None else [Path(r).resolve() for r in blueprint_roots]
        self.config = config

    @classmethod
    def from_settings(cls, settings: Settings) -> PatchQueue:
        """The project's queue (a `Settings`): its patches dir, state dir, store and Blueprint roots."""
        from aqueduct_dagster.stores import default_store

        return cls(settings.patches_dir, settings.state_dir / "revisions",
                   default_store(settings.state_dir, settings.config),
                   blueprint_roots=settings.blueprint_roots, config=settings.config)  # fmt: skip

    # ------------------------------------------------------------------ reading

    def recover(self) -> None:
        """Finish or roll back every apply, reject or rollback a crash interrupted."""
        self.revisions.recover_all()

    def list(self, status: str = "pending") -> list[PendingPatch]:
        self.recover()
        folder = self.patches_dir / status
        if not folder.is_dir():
            return []
        return [self._load(p) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]

    def get(self, patch_id: str) -> PendingPatch:
        self.recover()
        return self._get(patch_id)

    def _get(self, patch_id: str) -> PendingPatch:
        path = self.patches_dir / "pending" / f"{patch_id}.json"
        if not _PATCH_ID.fullmatch(patch_id) or not path.is_file():
            known = [p.stem for p in sorted((self.patches_dir / "pending").glob("*.json"))]
            done = self.store.patch(patch_id) if _PATCH_ID.fullmatch(patch_id) else None
            already = f" (it is {done['status']})" if done and done["status"] != "pending" else ""
            raise HealError(
                f"no pending patch '{patch_id}'{already}",
                hint=f"pending patches: {', '.join(known)}" if known else "there are no pending patches",
            )
        return self._load(path)

    def _load(self, path: Path) -> PendingPatch:
        raw = path.read_bytes()
        try:
            record = json.loads(raw)
            patch = PatchSpec.model_validate(record["patch"])
        except (ValueError, KeyError, TypeError) as error:
            raise HealError(
                f"{path} is not a staged patch record: {str(error).splitlines()[0]}",
                hint="reject it with `aqueduct patch reject`, or delete the file",
            ) from None
        if not isinstance(record, dict):
            raise HealError(f"{path} is not a staged patch record: not a JSON object")
        if patch.patch_id != path.stem:
            # Otherwise a genuine record copied under another name would be applied as that name.
            raise HealError(f"{path} holds patch '{patch.patch_id}', not '{path.stem}': the file was renamed or copied",
                            hint="reject it with `aqueduct patch reject`, or delete the file")  # fmt: skip
        return PendingPatch(patch, path, record, sha256_bytes(raw))

    # ------------------------------------------------------------------ staging

    def stage(self, record: dict[str, Any], *, signature: str | None, heal_id: str | None) -> Path:
        """Write a pending record and keep its digest in the store; returns the record's path."""
        patch = PatchSpec.model_validate(record["patch"])
        blueprint_id = checked_blueprint_id(record["blueprint_id"])
        pending = self.patches_dir / "pending"
        pending.mkdir(parents=True, exist_ok=True)
        path = pending / f"{patch.patch_id}.json"
        data = json.dumps(record, indent=2, default=str).encode("utf-8")
        with self.revisions.locked(blueprint_id):
            # The file first: a crash before the index leaves a record without a digest (refused, listed),
            # never an index entry without a file (which would suppress later heals of the failure).
            atomic_write_bytes(path, data)
            atomic_write_text(path.with_suffix(".diff"), str(record.get("diff") or ""))
            self.store.index_patch(patch.patch_id, blueprint_id, signature, "pending", str(path), heal_id,
                                   record_sha256=sha256_bytes(data))  # fmt: skip
        return path

    # ------------------------------------------------------------------ apply

    def apply(self, patch_id: str) -> Revision:
        """Re-verify a pending patch against the Blueprint as it is now, then apply it as a new revision."""
        first = self._get(patch_id)
        blueprint_id = self._lock_key(first)
        with self.revisions.locked(blueprint_id):
            pending = self._get(patch_id)  # again, under the lock: another process may have applied it
            self._verify_record(pending)
            blueprint_path, root = self._checked_paths(pending.record)
            current = blueprint_path.read_text(encoding="utf-8")
            self._verify_blueprint(pending, blueprint_path, root, current)
            patched = self._patched(pending, blueprint_path, root, current)
            self._run_static_gates(pending, blueprint_path, root, patched)
            queue = {"patch_id": patch_id, "status": "applied", "pending": str(pending.path)}
            return self.revisions.write(blueprint_path, patched, patch=pending.patch, blueprint_id=blueprint_id,
                                        queue=queue, expect_sha256=pending.record["blueprint_sha256"])  # fmt: skip

    def apply_change(self, blueprint_path: Path, patched_text: str, patch: PatchSpec, *, blueprint_id: str,
                     read_text: str, signature: str | None, heal_id: str | None) -> Revision:  # fmt: skip
        """Auto-apply: write a gated patch whose Blueprint text was `read_text`, indexing it as applied."""
        queue = {"patch_id": patch.patch_id, "status": "applied", "pending": None,
                 "index": {"blueprint_id": blueprint_id, "signature": signature, "heal_id": heal_id}}  # fmt: skip
        try:
            return self.revisions.write(blueprint_path, patched_text, patch=patch, blueprint_id=blueprint_id,
                                        queue=queue, expect_sha256=text_digest(read_text))  # fmt: skip
        except AqueductError as error:
            raise HealError(error.message, hint=error.hint) from None

    def _lock_key(self, pending: PendingPatch) -> str:
        indexed = self.store.patch(pending.patch_id)
        blueprint_id = (indexed or {}).get("blueprint_id") or pending.record.get("blueprint_id")
        try:
            return checked_blueprint_id(blueprint_id)
        except AqueductError:
            raise HealError(
                f"{pending.path}: blueprint_id {blueprint_id!r} is not a Blueprint id",
                hint="reject it with `aqueduct patch reject`, or delete the file",
            ) from None

    def _verify_record(self, pending: PendingPatch) -> None:
        indexed = self.store.patch(pending.patch_id)
        where = f"patches/pending/{pending.path.name}"
        if indexed is None or not indexed.get("record_sha256"):
            raise HealError(
                f"{where} was not staged by aqueduct: the store ({self.store.description}) holds no digest "
                "of it, so a hand-written or copied record is never applied",
                hint=f"reject it (`aqueduct patch reject {pending.patch_id}`); patches come from a heal",
            )
        if indexed["status"] != "pending":
            raise HealError(f"patch '{pending.patch_id}' is already {indexed['status']}",
                            hint="a patch is applied or rejected once")  # fmt: skip
        if indexed["record_sha256"] != pending.record_sha256:
            raise HealError(
                f"{where} was changed after it was staged (its sha256 {pending.record_sha256[:12]}... differs from "
                f"{indexed['record_sha256'][:12]}... recorded in the store): refusing to apply an edited record",
                hint=f"reject it (`aqueduct patch reject {pending.patch_id}`) and let the next failure heal again",
            )
        if indexed["blueprint_id"] != pending.record.get("blueprint_id"):
            raise HealError(f"{where}: blueprint_id differs from the store's '{indexed['blueprint_id']}'")

    def _checked_paths(self, record: dict[str, Any]) -> tuple[Path, Path]:
        """The record's Blueprint file and the Blueprint it is compiled in, resolved and inside the roots."""
        paths = []
        for key in ("blueprint_path", "root_path"):
            raw = record.get(key) or record.get("blueprint_path")
            if not isinstance(raw, str) or not raw:
                raise HealError(f"the staged record has no {key}")
            path = Path(raw).expanduser().resolve()
            if self.blueprint_roots is not None and not any(path.is_relative_to(r) for r in self.blueprint_roots):
                roots = ", ".join(str(r) for r in self.blueprint_roots)
                raise HealError(
                    f"the staged record's {key} {raw} resolves to {path}, outside the Blueprint roots ({roots})",
                    hint="patches edit Blueprints under blueprint_roots in aqueduct.yml (default: "
                    "AQUEDUCT_BLUEPRINTS_DIR, else ./blueprints)",
                )
            if not path.is_file():
                raise HealError(f"the staged record's {key} {path} is not a file")
            paths.append(path)
        return paths[0], paths[1]

    @staticmethod
    def _verify_blueprint(pending: PendingPatch, blueprint_path: Path, root: Path, current: str) -> None:
        root_text = current if root == blueprint_path else root.read_text(encoding="utf-8")
        found = blueprint_id_of(root_text, root)
        if found != pending.record.get("blueprint_id"):
            raise HealError(f"{root} is Blueprint '{found}', not '{pending.record.get('blueprint_id')}' "
                            "as the staged record says")  # fmt: skip
        if text_digest(current) != pending.record.get("blueprint_sha256"):
            raise HealError(
                f"patch '{pending.patch_id}' was not applied to {blueprint_path}: {CHANGED_SINCE_STAGED}",
                hint=f"reject it (`aqueduct patch reject {pending.patch_id}`); the next failure heals the new text",
            )

    @staticmethod
    def _patched(pending: PendingPatch, blueprint_path: Path, root: Path, current: str) -> str:
        try:
            patched = apply_patch_text(current, pending.patch)
            if root == blueprint_path:
                compile_text(patched, source_path=str(blueprint_path))
            else:  # an Arcade's sub-Blueprint: it must still compile within its user
                compile_text(root.read_text(encoding="utf-8"), source_path=str(root),
                             file_overrides={blueprint_path: patched})  # fmt: skip
        except AqueductError as error:
            raise HealError(
                f"patch '{pending.patch_id}' no longer applies to {blueprint_path}: {error.message}",
                hint="the blueprint changed since the patch was staged; reject it and let the next failure heal again",
            ) from None
        return patched

    def _run_static_gates(self, pending: PendingPatch, blueprint_path: Path, root: Path, patched: str) -> None:
        from aqueduct_dagster.healing.preview import static_verdict

        del patched  # the gates patch and compile the file themselves
        judged = pending.patch
        if root != blueprint_path:  # an Arcade's file: judged within its user, in the user's module ids
            try:
                judged = PatchSpec.model_validate(pending.record["root_patch"])
            except (KeyError, ValueError, TypeError):
                raise HealError(f"patch '{pending.patch_id}' edits an Arcade but its record has no root_patch",
                                hint="reject it and let the next failure heal again") from None
        results = static_verdict(judged, root, None, config=self.config)
        rejected = [r for r in results if not r.passed]
        if rejected:
            first = rejected[0]
            raise HealError(
                f"patch '{pending.patch_id}' is refused by the {first.gate} gate, re-run against {blueprint_path} "
                f"as it is now: {first.message}",
                hint=f"reject it (`aqueduct patch reject {pending.patch_id}`)",
            )

    # ------------------------------------------------------------------ reject and rollback

    def reject(self, patch_id: str, reason: str = "") -> Path:
        try:
            first = self._get(patch_id)
            blueprint_id = self._lock_key(first)
        except HealError:
            if not (_PATCH_ID.fullmatch(patch_id) and (self.patches_dir / "pending" / f"{patch_id}.json").is_file()):
                raise
            blueprint_id = _UNRECOGNISED  # not a record aqueduct staged: set it aside all the same
        with self.revisions.locked(blueprint_id):
            if blueprint_id == _UNRECOGNISED:
                queue = {"patch_id": patch_id, "status": "rejected", "reason": reason,
                         "pending": str(self.patches_dir / "pending" / f"{patch_id}.json")}  # fmt: skip
                self.revisions.reject_journaled(blueprint_id, queue)
                return self.patches_dir / "rejected" / f"{patch_id}.json"
            pending = self._get(patch_id)
            queue = {"patch_id": patch_id, "status": "rejected", "pending": str(pending.path), "reason": reason}
            self.revisions.reject_journaled(blueprint_id, queue)
        return self.patches_dir / "rejected" / pending.path.name

    def rollback(self, blueprint_path: str | Path, to_number: int) -> Revision:
        return self.revisions.rollback(blueprint_path, to_number)

    # ------------------------------------------------------------------ the journaled follow-up

    def _finish(self, intent: dict[str, Any]) -> None:
        """The queue's part of a committed change; each step is idempotent (recovery may repeat it)."""
        queue = intent["queue"]
        target = self._move_patch_file(queue)
        self._update_index(queue, target)

    def _move_patch_file(self, queue: dict[str, Any]) -> Path | None:
        if not queue.get("pending"):
            return None
        source = Path(queue["pending"])
        folder = self.patches_dir / queue["status"]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        if queue.get("reason"):
            atomic_write_text(target.with_suffix(".reason.txt"), queue["reason"])
        diff = source.with_suffix(".diff")
        if diff.exists():
            os.replace(diff, folder / diff.name)
        if source.exists():
            os.replace(source, target)
        return target

    def _update_index(self, queue: dict[str, Any], target: Path | None) -> None:
        index = queue.get("index")
        if index:
            self.store.index_patch(queue["patch_id"], index["blueprint_id"], index.get("signature"),
                                   queue["status"], None, index.get("heal_id"))  # fmt: skip
        else:
            self.store.set_patch_status(queue["patch_id"], queue["status"], str(target) if target else None)
