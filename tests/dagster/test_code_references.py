"""Code references on Blueprint assets: a link to the YAML line in the hosted repository when
the Blueprint folder is a git checkout with a web remote (or the operator names one), else the
local file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.metadata import browsable_url

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

BLUEPRINT = """\
aqueduct: "1.0"
id: linked
name: Linked
modules:
  - id: raw
    type: Ingress
    config: {format: csv, path: /data/raw.csv}
  - id: published
    type: Egress
    config: {format: parquet, path: /data/published, mode: overwrite}
edges:
  - {from: raw, to: published}
"""


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], check=True, capture_output=True, text=True)  # fmt: skip
    return done.stdout.strip()


def _checkout(root: Path, remote: str | None) -> tuple[Path, str]:
    """A git checkout with the Blueprint in `pipelines/blueprints/`; (folder, HEAD commit)."""
    folder = root / "pipelines" / "blueprints"
    folder.mkdir(parents=True)
    (folder / "linked.yml").write_text(BLUEPRINT)
    _git(root, "init", "-q")
    if remote:
        _git(root, "remote", "add", "origin", remote)
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "blueprint")
    return folder, _git(root, "rev-parse", "HEAD")


def _references(folder: Path) -> dict[str, list]:
    definitions = build_definitions(folder, strict=True)
    graph = definitions.resolve_asset_graph()
    return {
        key.path[-1]: graph.get(key).metadata["dagster/code_references"].code_references
        for key in (dg.AssetKey(["linked", "raw"]), dg.AssetKey(["linked", "published"]))
    }


@pytest.fixture(autouse=True)
def _own_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AQUEDUCT_COMPILE_CACHE", str(tmp_path / "compile-cache"))
    monkeypatch.delenv("AQUEDUCT_GIT_URL", raising=False)
    monkeypatch.delenv("AQUEDUCT_GIT_BRANCH", raising=False)


def test_a_blueprint_in_a_github_checkout_links_to_its_line_at_the_commit(tmp_path):
    folder, commit = _checkout(tmp_path / "repo", "git@github.com:acme/pipelines.git")
    references = _references(folder)
    for module, line in (("raw", 5), ("published", 8)):
        (reference,) = references[module]
        assert isinstance(reference, dg.UrlCodeReference)
        assert reference.url == (
            f"https://github.com/acme/pipelines/blob/{commit}/pipelines/blueprints/linked.yml#L{line}"
        )
        assert reference.label == f"{module} in linked.yml"


def test_the_operator_names_the_repository_and_branch(tmp_path, monkeypatch):
    folder, _ = _checkout(tmp_path / "repo", "https://ci:secret-token@github.com/acme/pipelines.git")
    monkeypatch.setenv("AQUEDUCT_GIT_URL", "https://gitlab.example.com/data/pipelines.git")
    monkeypatch.setenv("AQUEDUCT_GIT_BRANCH", "release-1")
    (reference,) = _references(folder)["raw"]
    assert reference.url == (
        "https://gitlab.example.com/data/pipelines/-/blob/release-1/pipelines/blueprints/linked.yml#L5"
    )


def test_outside_a_checkout_or_without_a_web_remote_the_reference_stays_local(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "linked.yml").write_text(BLUEPRINT)
    no_remote, _ = _checkout(tmp_path / "repo", None)
    for folder in (plain, no_remote):
        (reference,) = _references(folder)["raw"]
        assert isinstance(reference, dg.LocalFileCodeReference)
        assert (reference.file_path, reference.line_number) == (str(folder / "linked.yml"), 5)


def test_remotes_read_as_web_addresses_without_credentials():
    assert browsable_url("git@github.com:acme/pipelines.git") == "https://github.com/acme/pipelines"
    assert browsable_url("ssh://git@github.com:22/acme/pipelines.git") == "https://github.com/acme/pipelines"
    assert browsable_url("https://ci:token@github.com/acme/pipelines.git/") == "https://github.com/acme/pipelines"
    assert browsable_url("http://git.internal:8080/data/p") == "http://git.internal:8080/data/p"
    assert browsable_url("/srv/git/pipelines.git") is None
    assert browsable_url("file:///srv/git/pipelines.git") is None
