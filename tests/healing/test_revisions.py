"""Atomic Blueprint rewrites and the revision history."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from aqueduct_dagster.healing import revisions
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.revisions import RevisionError, RevisionStore

TEXT = 'aqueduct: "1.0"\nid: demo\nname: Demo  # named\nmodules: []\n'


@pytest.fixture
def blueprint(tmp_path):
    path = tmp_path / "demo.yml"
    path.write_text(TEXT)
    return path


def test_write_records_previous_text_patch_and_diff(tmp_path, blueprint):
    store = RevisionStore(tmp_path / "revisions")
    spec = PatchSpec(rationale="rename", operations=[{"op": "replace_module_label", "module_id": "x", "label": "y"}])
    new_text = TEXT.replace("Demo", "Demo v2")
    revision = store.write(blueprint, new_text, patch=spec)
    assert blueprint.read_text() == new_text
    assert revision.number == 1 and revision.patch_id == spec.patch_id
    assert "-name: Demo  # named" in revision.diff and "+name: Demo v2  # named" in revision.diff
    folder = tmp_path / "revisions" / "demo" / "0001"
    assert (folder / "previous.yml").read_text() == TEXT
    assert PatchSpec.model_validate_json((folder / "patch.json").read_text()) == spec
    assert [r.number for r in store.history("demo")] == [1]


def test_crash_between_temp_file_and_rename_leaves_old_file_intact(tmp_path, blueprint, monkeypatch):
    store = RevisionStore(tmp_path / "revisions")

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt("killed before rename")

    monkeypatch.setattr(revisions.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write(blueprint, "garbage: [", reason="test")
    monkeypatch.undo()
    assert blueprint.read_text() == TEXT
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".demo.yml")] == []
    assert store.history("demo") == []


def test_rollback_restores_the_text_before_a_revision(tmp_path, blueprint):
    store = RevisionStore(tmp_path / "revisions")
    store.write(blueprint, TEXT.replace("Demo", "Two"), reason="one")
    store.write(blueprint, TEXT.replace("Demo", "Three"), reason="two")
    back = store.rollback(blueprint, 1)
    assert blueprint.read_text() == TEXT
    assert back.number == 3 and "rollback of revision 1" in back.reason


def test_unknown_revision_is_a_clear_error(tmp_path, blueprint):
    with pytest.raises(RevisionError, match="has no revision 7"):
        RevisionStore(tmp_path / "r").rollback(blueprint, 7)


def test_file_mode_is_kept(tmp_path, blueprint):
    os.chmod(blueprint, 0o640)
    RevisionStore(tmp_path / "r").write(blueprint, TEXT + "# x\n", reason="mode")
    assert oct(blueprint.stat().st_mode & 0o777) == "0o640"


def test_numbers_follow_the_largest_existing_revision_and_are_never_reused(tmp_path, blueprint):
    store = RevisionStore(tmp_path / "r")
    store.write(blueprint, TEXT + "# 1\n", reason="one")
    store.write(blueprint, TEXT + "# 2\n", reason="two")
    shutil.rmtree(tmp_path / "r" / "demo" / "0001")  # a pruned history: len()+1 would write 0002 again
    assert store.write(blueprint, TEXT + "# 3\n", reason="three").number == 3
    assert [r.number for r in store.history("demo")] == [2, 3]


def test_threads_writing_one_blueprint_get_distinct_consecutive_numbers(tmp_path, blueprint):
    store = RevisionStore(tmp_path / "r")

    def write(i: int) -> int:
        return store.write(blueprint, TEXT + f"# writer {i}\n", reason=f"w{i}").number

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = sorted(pool.map(write, range(16)))
    assert numbers == list(range(1, 17))
    last = store.history("demo")[-1]
    assert (tmp_path / "r" / "demo" / f"{last.number:04d}" / "current.yml").read_text() == blueprint.read_text()


def test_a_write_against_a_stale_read_is_refused_under_the_lock(tmp_path, blueprint):
    store = RevisionStore(tmp_path / "r")
    stale = revisions.text_digest(TEXT)
    blueprint.write_text(TEXT + "# edited\n")
    with pytest.raises(RevisionError, match="changed since"):
        store.write(blueprint, TEXT + "# mine\n", reason="x", expect_sha256=stale)
    assert blueprint.read_text() == TEXT + "# edited\n" and store.history("demo") == []


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", ".hidden", ""])
def test_a_blueprint_id_that_could_leave_the_revisions_dir_is_refused(tmp_path, blueprint, bad_id):
    with pytest.raises(RevisionError, match="cannot name a revision folder"):
        RevisionStore(tmp_path / "r").history(bad_id)
    if bad_id:
        with pytest.raises(RevisionError, match="cannot name a revision folder"):
            RevisionStore(tmp_path / "r").write(blueprint, TEXT + "# x\n", blueprint_id=bad_id)
        assert blueprint.read_text() == TEXT and not (tmp_path / "escape").exists()
