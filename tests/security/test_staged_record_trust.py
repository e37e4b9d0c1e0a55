"""`aqueduct patch apply` trusts nothing in patches/pending because of where it lies.

Each hostile record is refused with its own message and nothing is written: the Blueprint
keeps its bytes, no revision appears, and the record stays where it was.
"""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.patch_queue import CHANGED_SINCE_STAGED, HealError
from aqueduct_dagster.healing.revisions import text_digest
from aqueduct_dagster.stores import DuckDBStore, PostgresStore
from aqueduct_dagster.stores.base import SCHEMA_VERSION
from tests.security.test_apply_crash_safety import ORIGINAL, Project, make_project

HOSTILE = {
    "engine_conf": [{"op": "set_engine_config", "engine": "spark", "key": "spark.driver.extraJavaOptions",
                     "value": "-javaagent:/tmp/evil.jar"}],
    "transform": [{"op": "set_module_config_key", "module_id": "step_0", "key": "query",
                   "value": "SELECT TRANSFORM(*) USING 'touch /tmp/aq-pwned' AS (a) FROM raw"}],
    "etc_path": [{"op": "set_module_config_key", "module_id": "raw", "key": "path", "value": "/etc/passwd"}],
}  # fmt: skip


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    for name in ("AQUEDUCT_STATE_DIR", "AQUEDUCT_PATCHES_DIR", "AQUEDUCT_BLUEPRINTS_DIR", "AQUEDUCT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return make_project(tmp_path)


def _record(project: Project, patch: PatchSpec, **overrides) -> dict:
    record = {
        "patch": patch.model_dump(mode="json"), "blueprint_id": "orders", "blueprint_path": str(project.blueprint),
        "root_path": str(project.blueprint), "blueprint_sha256": text_digest(project.blueprint.read_text()),
        "heal_id": "h1", "run_id": "r1", "signature": "sig", "failed_module": "step_0", "error": {}, "gates": [],
        "escalation": None, "diff": "",
    }  # fmt: skip
    record.update(overrides)
    return record


def _drop(project: Project, record: dict) -> str:
    """Write a record into patches/pending by hand, as anyone with file access could."""
    pending = project.root / "patches" / "pending"
    pending.mkdir(parents=True, exist_ok=True)
    patch_id = record["patch"]["patch_id"]
    (pending / f"{patch_id}.json").write_text(json.dumps(record))
    return patch_id


def _refused(project: Project, patch_id: str, match: str) -> None:
    """Apply is refused with `match`, through the CLI as well, and nothing is written."""
    queue = project.queue()
    pending = project.root / "patches" / "pending" / f"{patch_id}.json"
    before = pending.read_bytes()
    with pytest.raises(HealError, match=match):
        queue.apply(patch_id)
    result = CliRunner().invoke(main, ["patch", "apply", patch_id], env={"AQUEDUCT_CONFIG": str(project.config_path)})
    assert result.exit_code != 0 and "applied:" not in result.output
    assert project.blueprint.read_bytes() == ORIGINAL
    assert queue.revisions.history("orders") == []
    assert pending.read_bytes() == before
    assert not (project.root / "patches" / "applied" / pending.name).exists()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hand_written_record_is_refused_for_lack_of_a_store_digest(project, name):
    patch = PatchSpec(rationale="trust me", confidence=1.0, operations=HOSTILE[name])
    _refused(project, _drop(project, _record(project, patch)), "was not staged by aqueduct")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_patch_with_a_valid_digest_is_still_refused_by_the_gates_on_the_current_file(project, name):
    # A heal with a bug (or an older version without these gates) staged it: the digest is genuine.
    patch = PatchSpec(rationale="trust me", confidence=1.0, operations=HOSTILE[name])
    project.queue().stage(_record(project, patch), signature="sig", heal_id="h1")
    _refused(project, patch.patch_id, r"is refused by the \w+ gate, re-run against")


def test_a_blueprint_path_outside_the_roots_is_refused(project, tmp_path):
    outside = tmp_path / "elsewhere" / "orders.yml"
    outside.parent.mkdir()
    outside.write_bytes(ORIGINAL)
    patch = PatchSpec(rationale="relabel", confidence=0.9,
                      operations=[{"op": "replace_module_label", "module_id": "step_1", "label": "x"}])  # fmt: skip
    project.queue().stage(_record(project, patch, blueprint_path=str(outside), root_path=str(outside)),
                          signature="sig", heal_id="h1")  # fmt: skip
    _refused(project, patch.patch_id, "outside the Blueprint roots")
    assert outside.read_bytes() == ORIGINAL


@pytest.mark.parametrize("route", ["dotdot", "symlink"])
def test_paths_that_only_look_inside_the_roots_are_resolved_first(project, tmp_path, route):
    outside = tmp_path / "elsewhere" / "orders.yml"
    outside.parent.mkdir()
    outside.write_bytes(ORIGINAL)
    if route == "dotdot":
        sneaky = project.blueprint.parent / ".." / "elsewhere" / "orders.yml"
    else:
        sneaky = project.blueprint.parent / "linked.yml"
        sneaky.symlink_to(outside)
    patch = PatchSpec(rationale="relabel", confidence=0.9,
                      operations=[{"op": "replace_module_label", "module_id": "step_1", "label": "x"}])  # fmt: skip
    project.queue().stage(_record(project, patch, blueprint_path=str(sneaky), root_path=str(sneaky)),
                          signature="sig", heal_id="h1")  # fmt: skip
    _refused(project, patch.patch_id, "outside the Blueprint roots")
    assert outside.read_bytes() == ORIGINAL


def _legit(project: Project) -> str:
    return project.stage(project.label_patch(2, "two"))


def test_a_blueprint_changed_since_staging_is_refused(project):
    patch_id = _legit(project)
    edited = ORIGINAL + b"\r\n# edited by a person after the heal\r\n"
    project.blueprint.write_bytes(edited)
    with pytest.raises(HealError, match=CHANGED_SINCE_STAGED):
        project.queue().apply(patch_id)
    assert project.blueprint.read_bytes() == edited and project.queue().revisions.history("orders") == []
    assert project.queue().store.patch(patch_id)["status"] == "pending"


@pytest.mark.parametrize("tamper", ["label", "blueprint_sha256", "whitespace"])
def test_a_record_edited_after_staging_is_refused(project, tamper):
    patch_id = _legit(project)
    path = project.root / "patches" / "pending" / f"{patch_id}.json"
    record = json.loads(path.read_text())
    if tamper == "label":
        record["patch"]["operations"][0]["label"] = "something else"
        path.write_text(json.dumps(record, indent=2))
    elif tamper == "blueprint_sha256":
        record["blueprint_sha256"] = "0" * 64
        path.write_text(json.dumps(record, indent=2))
    else:
        path.write_text(path.read_text() + " ")
    _refused(project, patch_id, "was changed after it was staged")


def test_an_applied_record_dropped_back_into_pending_is_not_applied_again(project):
    patch_id = _legit(project)
    queue = project.queue()
    queue.apply(patch_id)
    applied = project.blueprint.read_bytes()
    shutil.copy(project.root / "patches" / "applied" / f"{patch_id}.json",
                project.root / "patches" / "pending" / f"{patch_id}.json")  # fmt: skip
    with pytest.raises(HealError, match="already applied"):
        queue.apply(patch_id)
    assert project.blueprint.read_bytes() == applied and len(queue.revisions.history("orders")) == 1


def test_the_record_digest_column_is_added_to_an_existing_store(tmp_path, postgres_server):
    """A version-1 store (no record_sha256) upgrades in place on DuckDB and PostgreSQL."""
    v1 = [
        "CREATE TABLE aq_schema_version (version INTEGER NOT NULL)",
        "INSERT INTO aq_schema_version VALUES (1)",
        "CREATE TABLE aq_patches (patch_id VARCHAR PRIMARY KEY, blueprint_id VARCHAR NOT NULL, signature VARCHAR, "
        "status VARCHAR NOT NULL, path VARCHAR, heal_id VARCHAR, updated_at TIMESTAMP NOT NULL)",
        "INSERT INTO aq_patches VALUES ('old', 'orders', 's', 'pending', '/x.json', 'h', TIMESTAMP '2026-01-01 00:00:00')",
    ]
    duck_path = tmp_path / "old.duckdb"
    connection = duckdb.connect(str(duck_path))
    for statement in v1:
        connection.execute(statement)
    connection.close()
    stores = [DuckDBStore(duck_path), PostgresStore(postgres_server.create_database())]
    stores[1]._migrated = True  # write the old schema by hand first
    for statement in v1:
        stores[1].execute(statement)
    stores[1]._migrated = False
    for store in stores:
        assert store.schema_version() == SCHEMA_VERSION == 2
        old = store.patch("old")
        assert old["status"] == "pending" and old["record_sha256"] is None  # kept; refused when applied
        store.index_patch("new", "orders", "s", "pending", "/y.json", "h2", record_sha256="ab" * 32)
        assert store.patch("new")["record_sha256"] == "ab" * 32
        store._migrated = False
        store.migrate()  # a second start changes nothing
        assert store.schema_version() == 2


def test_auto_apply_is_refused_when_the_file_changed_during_the_heal(project):
    from aqueduct_dagster.healing.patch import apply_patch_text

    read = project.blueprint.read_text(encoding="utf-8")  # what the heal read and gated
    patch = project.label_patch(4, "auto")
    edited = ORIGINAL + b"\r\n# a person saved the file meanwhile\r\n"
    project.blueprint.write_bytes(edited)
    queue = project.queue()
    with pytest.raises(HealError, match=CHANGED_SINCE_STAGED):
        queue.apply_change(project.blueprint, apply_patch_text(read, patch), patch, blueprint_id="orders",
                           read_text=read, signature="s", heal_id="h")  # fmt: skip
    assert project.blueprint.read_bytes() == edited and queue.revisions.history("orders") == []
    assert queue.store.patch(patch.patch_id) is None


def test_a_genuine_record_copied_under_another_patch_id_is_refused(project):
    patch_id = _legit(project)
    pending = project.root / "patches" / "pending"
    shutil.copy(pending / f"{patch_id}.json", pending / "patch-copied.json")
    _refused(project, "patch-copied", "holds patch .*, not 'patch-copied'")
    assert project.queue().store.patch(patch_id)["status"] == "pending"



@pytest.mark.parametrize("content", ["{not json", '{"patch": {"rationale": "x"}}', "[1, 2]"])
def test_a_malformed_pending_file_is_refused_and_can_still_be_rejected(project, content):
    pending = project.root / "patches" / "pending"
    pending.mkdir(parents=True)
    (pending / "junk.json").write_text(content)
    with pytest.raises(HealError, match="is not a staged patch record"):
        project.queue().apply("junk")
    assert project.blueprint.read_bytes() == ORIGINAL
    result = CliRunner().invoke(main, ["patch", "reject", "junk", "--reason", "not ours"],
                                env={"AQUEDUCT_CONFIG": str(project.config_path)})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (pending / "junk.json").exists()
    assert (project.root / "patches" / "rejected" / "junk.json").read_text() == content
    assert project.queue().list() == []
