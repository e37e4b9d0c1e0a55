"""Approval mode `ci` opens its pull request: PyGithub against a real local server playing the
GitHub REST API, and a real `git push` into a local bare repository."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aqueduct_dagster.healing.ci import GitError, github_repository, open_pull_request

TOKEN = "ghp_Zq8vT3kPw9LmX2rBq4Nc7Hs1Jd6Ff0Yu5WaE"
BRANCH = "aqueduct/heal/p1"
BODY = "# Heal orders: rename in `clean_orders`\n\n**Rationale:** the column was renamed\n"
PR_URL = "https://github.com/acme/lake/pull/7"
ALREADY_OPEN = {"message": "Validation Failed", "errors": [
    {"resource": "PullRequest", "code": "custom", "message": f"A pull request already exists for acme:{BRANCH}."}]}  # fmt: skip


class GitHubStub:
    """GET /repos/acme/lake and POST /repos/acme/lake/pulls as GitHub answers them; `answers`
    maps a method to (status, body) to answer an error instead. Records every request."""

    def __init__(self, answers: dict[str, tuple[int, dict]] | None = None) -> None:
        self.requests: list[dict] = []
        stub, answers = self, answers or {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._answer({"id": 1, "name": "lake", "full_name": "acme/lake", "url": f"{stub.api}/repos/acme/lake",
                              "html_url": "https://github.com/acme/lake", "default_branch": "main"})  # fmt: skip

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self._answer({"number": 7, "html_url": PR_URL, "url": f"{stub.api}/repos/acme/lake/pulls/7"}, 201)

            def _answer(self, body: dict, status: int = 200) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                      "json": json.loads(raw) if raw else None})  # fmt: skip
                status, body = answers.get(self.command, (status, body))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github():
    stubs: list[GitHubStub] = []

    def start(answers: dict[str, tuple[int, dict]] | None = None) -> GitHubStub:
        stubs.append(GitHubStub(answers))
        return stubs[-1]

    yield start
    for stub in stubs:
        stub.close()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    """A repository on `main` with a heal branch; origin says github.com, but pushes land in `bare`."""
    repo, bare = tmp_path / "repo", tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    identity = ("-c", "user.name=t", "-c", "user.email=t@t")
    (repo / "orders.yml").write_text("id: orders\n")
    _git(repo, "add", "orders.yml")
    _git(repo, *identity, "commit", "-qm", "init")
    _git(repo, "checkout", "-qb", BRANCH)
    (repo / "orders.yml").write_text("id: orders\n# healed\n")
    _git(repo, *identity, "commit", "-qam", "heal")
    _git(repo, "checkout", "-q", "main")
    _git(repo, "remote", "add", "origin", "https://github.com/acme/lake.git")
    _git(repo, "config", "remote.origin.pushurl", str(bare))
    return repo, bare


def _pushed(bare: Path) -> bool:
    return subprocess.run(["git", "-C", str(bare), "rev-parse", "--verify", "-q", f"refs/heads/{BRANCH}"],
                          capture_output=True).returncode == 0  # fmt: skip


def test_pushes_the_branch_and_opens_the_pull_request(checkout, github):
    repo, bare = checkout
    stub = github()
    assert open_pull_request(repo, BRANCH, BODY, TOKEN, api=stub.api) == PR_URL
    assert [(r["method"], r["path"]) for r in stub.requests] == [
        ("GET", "/repos/acme/lake"), ("POST", "/repos/acme/lake/pulls")]  # fmt: skip
    assert stub.requests[1]["json"] == {
        "head": BRANCH, "base": "main", "title": "Heal orders: rename in `clean_orders`", "body": BODY}  # fmt: skip
    assert all(r["headers"]["Authorization"] == f"token {TOKEN}" for r in stub.requests)
    assert _git(bare, "rev-parse", BRANCH) == _git(repo, "rev-parse", BRANCH)


@pytest.mark.parametrize(
    ("answers", "words"),
    [
        ({"POST": (422, ALREADY_OPEN)}, ["422", "A pull request already exists", "may already be open"]),
        ({"GET": (401, {"message": "Bad credentials"})}, ["401", "Bad credentials", "check the token"]),
        ({"GET": (404, {"message": "Not Found"})}, ["404", "check that acme/lake exists"]),
    ],
    ids=["already-open", "bad-token", "no-repository"],
)
def test_a_refusal_is_a_clear_error_without_the_token(checkout, github, caplog, answers, words):
    repo, bare = checkout
    stub = github(answers)
    # PyGithub logs each request with its headers at DEBUG on the "github" logger.
    with caplog.at_level(logging.DEBUG, logger="github"), pytest.raises(GitError) as raised:
        open_pull_request(repo, BRANCH, BODY, TOKEN, api=stub.api)
    message = str(raised.value)
    assert f"branch '{BRANCH}' into 'main' of acme/lake" in message
    assert all(word in message for word in words), message
    assert "the branch is pushed" in message and _pushed(bare)
    assert "/repos/acme/lake" in caplog.text and "Authorization" in caplog.text
    assert TOKEN not in caplog.text  # masked by PyGithub's Auth.Token
    assert TOKEN not in message


def test_an_unreachable_api_fails_once_without_retrying(checkout):
    repo, _ = checkout
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(GitError, match="unreachable") as raised:
        open_pull_request(repo, BRANCH, BODY, TOKEN, api=closed)
    assert time.monotonic() - started < 10
    assert "check the network" in str(raised.value) and TOKEN not in str(raised.value)


def test_a_non_github_origin_is_refused_before_anything_is_pushed(checkout, github):
    repo, bare = checkout
    stub = github()
    _git(repo, "remote", "set-url", "origin", f"https://x-access-token:{TOKEN}@gitlab.com/acme/lake.git")
    with pytest.raises(GitError, match="is not a repository on") as raised:
        open_pull_request(repo, BRANCH, BODY, TOKEN, api="https://api.github.com")
    assert "open the PR by hand" in str(raised.value)
    assert TOKEN not in str(raised.value)  # the credentials in the origin URL are not echoed
    assert not _pushed(bare) and stub.requests == []


@pytest.mark.parametrize(
    ("remote", "api", "expected"),
    [
        ("https://github.com/acme/lake.git", "https://api.github.com", ("acme", "lake")),
        ("https://github.com/acme/lake", "https://api.github.com", ("acme", "lake")),
        ("git@github.com:acme/lake.git", "https://api.github.com", ("acme", "lake")),
        ("ssh://git@github.com:22/acme/lake.git", "https://api.github.com", ("acme", "lake")),
        ("https://github.com/acme/lake.v2.git", "https://api.github.com", ("acme", "lake.v2")),
        ("git@ghe.acme.io:data/lake.git", "https://ghe.acme.io/api/v3", ("data", "lake")),
        ("https://acme.ghe.com/data/lake.git", "https://api.acme.ghe.com", ("data", "lake")),
    ],
)
def test_owner_and_name_come_from_the_origin_url(remote, api, expected):
    assert github_repository(remote, api) == expected


@pytest.mark.parametrize(
    ("remote", "api"),
    [
        ("/srv/git/lake.git", "https://api.github.com"),
        ("git@gitlab.com:acme/lake.git", "https://api.github.com"),
        ("git@ghe.acme.io:data/lake.git", "https://api.github.com"),  # Enterprise origin, public API
        ("https://github.com/acme", "https://api.github.com"),
    ],
)
def test_an_origin_that_is_no_github_repository_is_refused(remote, api):
    with pytest.raises(GitError, match="open the PR by hand"):
        github_repository(remote, api)
