"""A process killed (SIGKILL) at any step of apply, rollback or reject loses nothing.

The applying process is a real `python` child: a small driver wraps one step function of the
product (`RevisionStore._replace_file`, `PatchQueue._update_index`, ...) so that the step runs
and then the process kills itself. The test process then recovers, as the next command would,
and checks that the Blueprint file, the revision history and the patch index agree, and that
`rollback` restores the original Blueprint byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.patch_queue import PatchQueue
from aqueduct_dagster.healing.revisions import sha256_bytes, text_digest
from aqueduct_dagster.settings import Settings

REPO = Path(__file__).resolve().parents[2]

# CRLF line ends, a non-ASCII comment and no final newline: rollback must restore these exactly.
ORIGINAL = (
    'aqueduct: "1.0"\r\nid: orders\r\nname: Orders  # Bestellungen, Größe\r\n'
    "context:\r\n  data_dir: /data\r\nmodules:\r\n"
    + "".join(
        f"  - id: step_{i}\r\n    type: Channel\r\n    label: step {i}\r\n"
        f"    config: {{op: sql, query: \"SELECT * FROM {'raw' if i == 0 else f'step_{i - 1}'}\"}}\r\n"
        for i in range(8)
    )
    + "  - id: raw\r\n    type: Ingress\r\n    config: {format: csv, path: \"${ctx.data_dir}/in.csv\"}\r\n"
    + "  - id: out\r\n    type: Egress\r\n    config: {format: parquet, path: \"${ctx.data_dir}/out\", mode: overwrite}\r\n"
    + "edges:\r\n  - {from: raw, to: step_0}\r\n"
    + "".join(f"  - {{from: step_{i}, to: step_{i + 1}}}\r\n" for i in range(7))
    + "  - {from: step_7, to: out}"
).encode("utf-8")

DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    from aqueduct_dagster.settings import Settings
    from aqueduct_dagster.healing.patch_queue import PatchQueue
    from aqueduct_dagster.healing.revisions import RevisionStore

    config_path, action, argument, point = sys.argv[1:5]
    owner_name, step = point.split(".")
    owner = {"RevisionStore": RevisionStore, "PatchQueue": PatchQueue}[owner_name]
    raw = owner.__dict__[step]
    original = getattr(owner, step)

    def step_then_die(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, step, staticmethod(step_then_die) if isinstance(raw, staticmethod) else step_then_die)
    queue = PatchQueue.from_settings(Settings.resolve(config_path=config_path))
    if action == "apply":
        queue.apply(argument)
    elif action == "reject":
        queue.reject(argument, "not this one")
    elif action == "auto":  # what Healer._approve does once the full-run gate passed
        from pathlib import Path
        from aqueduct_dagster.healing.patch import PatchSpec, apply_patch_text
        path = Path(argument)
        text = path.read_text(encoding="utf-8")
        patch = PatchSpec(patch_id="auto-1", rationale="auto", operations=[
            {"op": "replace_module_label", "module_id": "step_4", "label": "auto four"}])
        queue.apply_change(path, apply_patch_text(text, patch), patch, blueprint_id="orders",
                           read_text=text, signature="sig-auto", heal_id="heal-auto")
    elif action == "recover":
        queue.recover()
    else:
        queue.rollback(argument, 1)
    print("finished without reaching the injection point", flush=True)
    """
)


@dataclass
class Project:
    root: Path
    config_path: Path
    blueprint: Path

    def queue(self) -> PatchQueue:
        return PatchQueue.from_settings(Settings.resolve(config_path=self.config_path))

    def label_patch(self, index: int, label: str) -> PatchSpec:
        return PatchSpec(rationale=f"relabel step_{index}", confidence=0.9,
                         operations=[{"op": "replace_module_label", "module_id": f"step_{index}", "label": label}])  # fmt: skip

    def stage(self, patch: PatchSpec, queue: PatchQueue | None = None) -> str:
        """Stage `patch` against the Blueprint as it is now, as a heal does."""
        text = self.blueprint.read_text(encoding="utf-8")
        record = {
            "patch": patch.model_dump(mode="json"), "blueprint_id": "orders", "blueprint_path": str(self.blueprint),
            "root_path": str(self.blueprint), "blueprint_sha256": text_digest(text), "heal_id": f"heal-{patch.patch_id}",
            "run_id": "run-1", "signature": f"sig-{patch.patch_id}", "failed_module": "step_0", "error": {},
            "gates": [], "escalation": None, "diff": "",
        }  # fmt: skip
        (queue or self.queue()).stage(record, signature=record["signature"], heal_id=record["heal_id"])
        return patch.patch_id

    def run_driver(self, action: str, argument: str, point: str) -> subprocess.CompletedProcess:
        driver = self.root / "driver.py"
        driver.write_text(DRIVER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AQUEDUCT_")}
        return subprocess.run([sys.executable, str(driver), str(self.config_path), action, argument, point],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip


def make_project(root: Path, text: bytes = ORIGINAL) -> Project:
    blueprints = root / "blueprints"
    blueprints.mkdir(parents=True)
    blueprint = blueprints / "orders.yml"
    blueprint.write_bytes(text)
    config_path = root / "aqueduct.yml"
    config_path.write_text(json.dumps({
        "state_dir": str(root / "state"), "patches_dir": str(root / "patches"),
        "blueprint_roots": [str(blueprints)],
    }))  # fmt: skip
    return Project(root, config_path, blueprint)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    for name in ("AQUEDUCT_STATE_DIR", "AQUEDUCT_PATCHES_DIR", "AQUEDUCT_BLUEPRINTS_DIR", "AQUEDUCT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return make_project(tmp_path)


def assert_consistent(project: Project, queue: PatchQueue) -> None:
    """Nothing half-done is left, and the file is what the last revision says it is."""
    revisions = queue.revisions.root / "orders"
    assert not (revisions / "intent.json").exists()
    assert list(revisions.glob(".*.staging")) == []
    assert [p.name for p in project.blueprint.parent.iterdir() if p.name.endswith(".tmp")] == []
    history = queue.revisions.history("orders")
    assert [r.number for r in history] == list(range(1, len(history) + 1))
    if history:
        last = revisions / f"{history[-1].number:04d}"
        assert (last / "current.yml").read_bytes() == project.blueprint.read_bytes()
    else:
        assert project.blueprint.read_bytes() == ORIGINAL


APPLY_STEPS = [
    ("RevisionStore._write_intent", "rolled back"),
    ("RevisionStore._stage_revision", "rolled back"),
    ("RevisionStore._replace_file", "completed"),
    ("RevisionStore._commit_revision", "completed"),
    ("PatchQueue._move_patch_file", "completed"),
    ("PatchQueue._update_index", "completed"),
    ("RevisionStore._clear_intent", "completed"),
]


@pytest.mark.parametrize(("point", "expected"), APPLY_STEPS, ids=[p for p, _ in APPLY_STEPS])
def test_apply_killed_after_each_step_recovers_and_rolls_back(project, point, expected):
    queue = project.queue()
    patch_id = project.stage(project.label_patch(3, "step three, relabelled"))
    killed = project.run_driver("apply", patch_id, point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    queue = project.queue()
    queue.recover()  # what the next `aqueduct patch ...` or approve run does first
    assert_consistent(project, queue)
    history = queue.revisions.history("orders")
    indexed = queue.store.patch(patch_id)
    if expected == "completed":
        assert [(r.number, r.patch_id) for r in history] == [(1, patch_id)]
        assert b"label: step three, relabelled" in project.blueprint.read_bytes()
        assert not (project.root / "patches" / "pending" / f"{patch_id}.json").exists()
        assert (project.root / "patches" / "applied" / f"{patch_id}.json").exists()
        assert indexed["status"] == "applied"
        assert queue.store.pending_patch_for("orders", f"sig-{patch_id}") is None
    else:
        assert history == [] and project.blueprint.read_bytes() == ORIGINAL
        assert indexed["status"] == "pending"
        assert queue.apply(patch_id).number == 1  # the interrupted apply can simply be repeated
        assert_consistent(project, queue)
    assert queue.revisions.get("orders", 1).patch_id == patch_id

    back = queue.rollback(project.blueprint, 1)
    assert back.number == 2
    assert project.blueprint.read_bytes() == ORIGINAL
    assert_consistent(project, queue)


ROLLBACK_STEPS = [
    ("RevisionStore._write_intent", "rolled back"),
    ("RevisionStore._stage_revision", "rolled back"),
    ("RevisionStore._replace_file", "completed"),
    ("RevisionStore._commit_revision", "completed"),
    ("RevisionStore._clear_intent", "completed"),
]


@pytest.mark.parametrize(("point", "expected"), ROLLBACK_STEPS, ids=[p for p, _ in ROLLBACK_STEPS])
def test_rollback_killed_after_each_step_recovers_and_the_original_comes_back(project, point, expected):
    queue = project.queue()
    patch_id = project.stage(project.label_patch(5, "five"))
    queue.apply(patch_id)
    patched = project.blueprint.read_bytes()
    killed = project.run_driver("rollback", str(project.blueprint), point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    queue = project.queue()
    queue.recover()
    assert_consistent(project, queue)
    history = queue.revisions.history("orders")
    if expected == "completed":
        assert [r.number for r in history] == [1, 2] and "rollback of revision 1" in history[1].reason
        assert project.blueprint.read_bytes() == ORIGINAL
    else:
        assert [r.number for r in history] == [1] and project.blueprint.read_bytes() == patched
        queue.rollback(project.blueprint, 1)
    assert project.blueprint.read_bytes() == ORIGINAL
    assert sha256_bytes(project.blueprint.read_bytes()) == sha256_bytes(ORIGINAL)
    assert_consistent(project, queue)


REJECT_STEPS = ["RevisionStore._write_intent", "PatchQueue._move_patch_file", "PatchQueue._update_index"]


@pytest.mark.parametrize("point", REJECT_STEPS)
def test_reject_killed_midway_is_finished_and_never_left_pending(project, point):
    patch_id = project.stage(project.label_patch(1, "one"))
    killed = project.run_driver("reject", patch_id, point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    queue = project.queue()
    assert [p.patch_id for p in queue.list()] == []  # listing recovers first
    assert queue.store.patch(patch_id)["status"] == "rejected"
    assert (project.root / "patches" / "rejected" / f"{patch_id}.json").exists()
    assert (project.root / "patches" / "rejected" / f"{patch_id}.reason.txt").read_text() == "not this one"
    assert queue.store.pending_patch_for("orders", f"sig-{patch_id}") is None
    assert project.blueprint.read_bytes() == ORIGINAL and queue.revisions.history("orders") == []


@pytest.mark.parametrize(("point", "expected"), APPLY_STEPS, ids=[p for p, _ in APPLY_STEPS])
def test_auto_apply_killed_after_each_step_recovers_and_indexes_the_patch(project, point, expected):
    killed = project.run_driver("auto", str(project.blueprint), point)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr

    queue = project.queue()
    queue.recover()
    assert_consistent(project, queue)
    history = queue.revisions.history("orders")
    if expected == "completed":
        assert [(r.number, r.patch_id) for r in history] == [(1, "auto-1")]
        assert b"label: auto four" in project.blueprint.read_bytes()
        assert queue.store.patch("auto-1")["status"] == "applied"
        queue.rollback(project.blueprint, 1)
    else:  # the heal ended before anything changed: the file and the index say so
        assert history == [] and queue.store.patch("auto-1") is None
    assert project.blueprint.read_bytes() == ORIGINAL


def test_a_recovery_killed_midway_is_itself_recovered(project):
    patch_id = project.stage(project.label_patch(6, "six"))
    assert project.run_driver("apply", patch_id, "RevisionStore._replace_file").returncode == -signal.SIGKILL
    # The next two commands die while finishing it: once committing, once updating the index.
    for point in ("RevisionStore._commit_revision", "PatchQueue._update_index"):
        killed = project.run_driver("recover", "-", point)
        assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    queue = project.queue()
    queue.recover()
    assert_consistent(project, queue)
    assert [(r.number, r.patch_id) for r in queue.revisions.history("orders")] == [(1, patch_id)]
    assert queue.store.patch(patch_id)["status"] == "applied"
    queue.rollback(project.blueprint, 1)
    assert project.blueprint.read_bytes() == ORIGINAL
