"""The compile cache: a hit is an equal Manifest, and anything the compile read invalidates it."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.cache import COMPILE_CACHE, disk_cache
from aqueduct_dagster.errors import BlueprintError

HEAD = 'aqueduct: "1.0"\nid: {id}\nname: {id}\n'

PARENT = (
    HEAD.format(id="parent")
    + "context:\n  out: \"@aq.env('OUT_DIR', '/default/out')\"\n"
    "modules:\n"
    "  - id: orders\n    type: Ingress\n    config:\n      format: csv\n"
    "      path: /data/orders.csv\n      schema_hint: {id: int, amount: double}\n"
    "  - id: clean\n    type: Arcade\n    ref: arcades/clean.yml\n"
    "  - id: out\n    type: Egress\n    config: {format: parquet, path: '${ctx.out}', mode: overwrite}\n"
    "edges:\n  - {from: orders, to: clean, as: source}\n  - {from: clean, to: out}\n"
)


def sub_blueprint(threshold: int) -> str:
    return (
        HEAD.format(id="clean_orders")
        + "modules:\n"
        "  - id: filtered\n    type: Channel\n    config:\n      op: sql\n"
        f"      query: SELECT id, amount FROM source WHERE amount > {threshold}\n"
    )


@pytest.fixture(autouse=True)
def fresh_cache():
    COMPILE_CACHE.clear()
    yield
    COMPILE_CACHE.clear()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "arcades").mkdir()
    (tmp_path / "arcades" / "clean.yml").write_text(sub_blueprint(0))
    root = tmp_path / "parent.yml"
    root.write_text(PARENT)
    return root


def filtered_query(manifest) -> str:
    return manifest.module("clean__filtered").spec.config.query


def test_a_hit_returns_an_equal_manifest_not_the_same_object(project):
    first = compile_blueprint(project, env={})
    second = compile_blueprint(project, env={})
    assert (COMPILE_CACHE.misses, COMPILE_CACHE.hits) == (1, 1)
    assert second == first
    assert second is not first  # callers never share one mutable Manifest
    assert second.fingerprint == first.fingerprint


def test_editing_the_file_invalidates(project):
    compile_blueprint(project, env={})
    project.write_text(PARENT.replace("/data/orders.csv", "/data/orders_v2.csv"))
    edited = compile_blueprint(project, env={})
    assert COMPILE_CACHE.hits == 0
    assert edited.module("orders").spec.config.path == "/data/orders_v2.csv"


def test_editing_an_arcade_sub_blueprint_invalidates(project):
    assert filtered_query(compile_blueprint(project, env={})).endswith("amount > 0")
    (project.parent / "arcades" / "clean.yml").write_text(sub_blueprint(7))
    edited = compile_blueprint(project, env={})
    assert COMPILE_CACHE.hits == 0
    assert filtered_query(edited).endswith("amount > 7")


def test_an_arcade_reached_through_a_link_that_now_points_elsewhere_invalidates(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "clean.yml").write_text(sub_blueprint(1))
    (tmp_path / "v2" / "clean.yml").write_text(sub_blueprint(2))
    os.symlink(tmp_path / "v1", tmp_path / "arcades")
    root = tmp_path / "parent.yml"
    root.write_text(PARENT)
    assert filtered_query(compile_blueprint(root, env={})).endswith("amount > 1")
    (tmp_path / "arcades").unlink()
    os.symlink(tmp_path / "v2", tmp_path / "arcades")
    assert filtered_query(compile_blueprint(root, env={})).endswith("amount > 2")
    assert COMPILE_CACHE.hits == 0


def test_an_env_var_the_blueprint_reads_invalidates(project):
    assert compile_blueprint(project, env={}).context["out"] == "/default/out"
    assert compile_blueprint(project, env={"OUT_DIR": "/a"}).context["out"] == "/a"
    assert compile_blueprint(project, env={"OUT_DIR": "/b"}).context["out"] == "/b"
    assert COMPILE_CACHE.hits == 0
    # Each variant is kept: going back is a hit with the right value.
    assert compile_blueprint(project, env={"OUT_DIR": "/a"}).context["out"] == "/a"
    assert compile_blueprint(project, env={}).context["out"] == "/default/out"
    assert COMPILE_CACHE.hits == 2


def test_env_vars_the_blueprint_does_not_read_do_not_invalidate(project):
    compile_blueprint(project, env={"OUT_DIR": "/a", "UNRELATED": "1"})
    compile_blueprint(project, env={"OUT_DIR": "/a", "UNRELATED": "2", "OTHER": "x"})
    assert COMPILE_CACHE.hits == 1


def test_the_process_environment_is_read_when_no_env_is_given(project, monkeypatch):
    monkeypatch.setenv("OUT_DIR", "/from/environ")
    assert compile_blueprint(project).context["out"] == "/from/environ"
    monkeypatch.setenv("OUT_DIR", "/changed")
    assert compile_blueprint(project).context["out"] == "/changed"
    monkeypatch.delenv("OUT_DIR")
    assert compile_blueprint(project).context["out"] == "/default/out"


def test_a_secret_depends_on_being_set_and_its_value_is_never_kept(tmp_path):
    root = tmp_path / "secret.yml"
    root.write_text(
        HEAD.format(id="secret")
        + "modules:\n  - id: src\n    type: Ingress\n    config:\n      format: jdbc\n"
        "      options: {url: 'jdbc:postgresql://db/x', password: \"@aq.secret('DB_PASSWORD')\"}\n"
    )
    folder = tmp_path / "cache"
    with disk_cache(folder):
        first = compile_blueprint(root, env={"DB_PASSWORD": "hunter2-secret"})
        # Another value: the Manifest holds only the token, so this is the same Manifest.
        assert compile_blueprint(root, env={"DB_PASSWORD": "other-secret"}) == first
        assert COMPILE_CACHE.hits == 1
        with pytest.raises(BlueprintError, match="DB_PASSWORD"):
            compile_blueprint(root, env={})
    stored = "".join(p.read_text() for p in folder.rglob("*.json"))
    assert stored and "hunter2" not in stored and "other-secret" not in stored


def test_arguments_are_part_of_the_key(project):
    plain = compile_blueprint(project, env={})
    overridden = compile_blueprint(project, env={}, context_overrides={"out": "/cli"})
    assert overridden.context["out"] == "/cli" != plain.context["out"]
    assert compile_blueprint(project, env={}, deployment={"env": "prod"}) == plain
    assert COMPILE_CACHE.hits == 0


def test_errors_are_never_cached(project):
    compile_blueprint(project, env={})
    (project.parent / "arcades" / "clean.yml").write_text(sub_blueprint(0).replace("source", "nowhere"))
    for _ in range(2):
        with pytest.raises(BlueprintError, match="nowhere"):
            compile_blueprint(project, env={})
    (project.parent / "arcades" / "clean.yml").write_text(sub_blueprint(0))
    assert filtered_query(compile_blueprint(project, env={})).endswith("amount > 0")


def test_the_disk_cache_serves_another_process(project, tmp_path):
    folder = tmp_path / "cache"
    with disk_cache(folder):
        first = compile_blueprint(project, env={"OUT_DIR": "/a"})
    COMPILE_CACHE.clear()  # as a fresh process would start
    with disk_cache(folder):
        again = compile_blueprint(project, env={"OUT_DIR": "/a"})
    assert (COMPILE_CACHE.hits, again) == (1, first)
    # ... and checks what the compile read, as the memory cache does.
    COMPILE_CACHE.clear()
    (project.parent / "arcades" / "clean.yml").write_text(sub_blueprint(3))
    with disk_cache(folder):
        assert filtered_query(compile_blueprint(project, env={"OUT_DIR": "/a"})).endswith("> 3")
        assert compile_blueprint(project, env={"OUT_DIR": "/b"}).context["out"] == "/b"
    assert COMPILE_CACHE.hits == 0


def test_an_unreadable_or_foreign_entry_is_a_miss(project, tmp_path):
    folder = tmp_path / "cache"
    with disk_cache(folder):
        first = compile_blueprint(project, env={})
    (entry,) = folder.rglob("*.json")
    for garbage in ("{not json", json.dumps({"format": "other", "variants": []}), "[]"):
        entry.write_text(garbage)
        COMPILE_CACHE.clear()
        with disk_cache(folder):
            assert compile_blueprint(project, env={}) == first
        assert COMPILE_CACHE.hits == 0


def test_a_damaged_manifest_in_an_entry_is_a_miss(project, tmp_path):
    folder = tmp_path / "cache"
    with disk_cache(folder):
        first = compile_blueprint(project, env={})
    (entry,) = folder.rglob("*.json")
    data = json.loads(entry.read_text())
    data["variants"][0]["manifest"] = base64.b64encode(b"not a pickle").decode()
    entry.write_text(json.dumps(data))
    COMPILE_CACHE.clear()
    with disk_cache(folder):
        assert compile_blueprint(project, env={}) == first
    assert COMPILE_CACHE.hits == 0


def test_an_entry_others_may_write_is_not_read(project, tmp_path):
    folder = tmp_path / "cache"
    with disk_cache(folder):
        compile_blueprint(project, env={})
    assert stat.S_IMODE(folder.stat().st_mode) & 0o077 == 0  # created for its owner only
    (entry,) = folder.rglob("*.json")
    entry.chmod(0o666)
    COMPILE_CACHE.clear()
    with disk_cache(folder):
        compile_blueprint(project, env={})
    assert COMPILE_CACHE.hits == 0
