"""Six processes apply and reject patches of one Blueprint at the same moment: nothing is lost.

Four "editors" each stage a patch against the file as they see it and apply it; when another
editor got there first their patch is refused (the Blueprint changed since it was staged), so
they reject it and heal again, up to a bound. Two more processes race for one shared patch, one
applying and one rejecting it. Afterwards every applied patch has exactly one revision, the
revision numbers run 1..k, each revision starts from the text the one before it wrote (no lost
update), and the file is the original with the winners applied in revision order.
"""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
from aqueduct_dagster.healing.patch_queue import CHANGED_SINCE_STAGED, PatchQueue
from aqueduct_dagster.settings import Settings
from tests.security.test_apply_crash_safety import ORIGINAL, Project, make_project

EDITORS = 4
ATTEMPTS = 60


def _worker(root: str, role: str, index: int, shared_patch: str, barrier) -> None:
    project = Project(Path(root), Path(root) / "aqueduct.yml", Path(root) / "blueprints" / "orders.yml")
    queue = PatchQueue.from_settings(Settings.resolve(config_path=project.config_path))
    outcome: dict = {"role": role, "index": index, "won": [], "errors": []}
    barrier.wait(timeout=120)
    if role == "editor":
        for attempt in range(ATTEMPTS):
            patch_id = project.stage(project.label_patch(index, f"editor {index} attempt {attempt}"), queue)
            try:
                outcome["won"].append([patch_id, queue.apply(patch_id).number])
                break
            except AqueductError as error:
                outcome["errors"].append(error.message)
                queue.reject(patch_id, "stale: healing again")
    else:
        try:
            if role == "apply_shared":
                outcome["won"].append([shared_patch, queue.apply(shared_patch).number])
            else:
                queue.reject(shared_patch, "no")
                outcome["won"].append([shared_patch, None])
        except AqueductError as error:
            outcome["errors"].append(error.message)
    (Path(root) / f"result-{role}-{index}.json").write_text(json.dumps(outcome))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    for name in ("AQUEDUCT_STATE_DIR", "AQUEDUCT_PATCHES_DIR", "AQUEDUCT_BLUEPRINTS_DIR", "AQUEDUCT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return make_project(tmp_path)


def test_concurrent_applies_and_rejects_lose_nothing(project):
    shared = project.stage(project.label_patch(7, "the shared patch"))
    roles = [("editor", i) for i in range(EDITORS)] + [("apply_shared", 7), ("reject_shared", 7)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(roles))
    workers = [context.Process(target=_worker, args=(str(project.root), role, i, shared, barrier)) for role, i in roles]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
        assert worker.exitcode == 0, f"worker {worker.pid} exited with {worker.exitcode}"
    results = [json.loads(p.read_text()) for p in sorted(project.root.glob("result-*.json"))]
    assert len(results) == len(roles)

    queue = project.queue()
    history = queue.revisions.history("orders")
    # revision numbers 1..k, each applied patch exactly once
    assert [r.number for r in history] == list(range(1, len(history) + 1))
    revision_patches = [r.patch_id for r in history]
    assert len(set(revision_patches)) == len(revision_patches)
    applied = {p["patch_id"] for p in queue.store.patches("orders") if p["status"] == "applied"}
    assert applied == set(revision_patches)
    assert {p["status"] for p in queue.store.patches("orders")} <= {"applied", "rejected"}
    assert list((project.root / "patches" / "pending").glob("*.json")) == []

    # every editor got its change in; the shared patch went exactly one way
    won = {pid: number for r in results for pid, number in r["won"]}
    for editor in (r for r in results if r["role"] == "editor"):
        assert len(editor["won"]) == 1, editor["errors"][-3:]
    shared_wins = [r for r in results if r["role"] != "editor" and r["won"]]
    assert len(shared_wins) == 1, results
    assert (shared in applied) == (shared_wins[0]["role"] == "apply_shared")
    for pid, number in won.items():
        if number is not None:
            assert queue.revisions.get("orders", number).patch_id == pid

    # losers were told why, in words a reviewer can act on
    errors = [e for r in results for e in r["errors"]]
    assert errors, "six processes on one file: someone must have lost a race"
    for message in errors:
        assert CHANGED_SINCE_STAGED in message or "no pending patch" in message or "already" in message, message

    # no lost update: each revision starts from the text the previous one wrote ...
    folder = queue.revisions.root / "orders"
    previous = ORIGINAL
    for revision in history:
        assert (folder / f"{revision.number:04d}" / "previous.yml").read_bytes() == previous
        previous = (folder / f"{revision.number:04d}" / "current.yml").read_bytes()
    # ... and the file is the original with the winners applied in revision order
    expected = ORIGINAL.decode("utf-8").replace("\r\n", "\n")
    for revision in history:
        spec = PatchSpec.model_validate_json((folder / f"{revision.number:04d}" / "patch.json").read_text())
        expected = apply_patch_text(expected, spec)
    assert project.blueprint.read_text(encoding="utf-8") == expected
    for i in range(EDITORS):
        assert f"editor {i} attempt" in expected
    assert not (folder / "intent.json").exists()
