"""Approval mode `ci`: the patched Blueprint on a git branch, with a PR description.

The branch is built in a temporary worktree, so the user's checkout (and its uncommitted
work) is never touched. With a GitHub token and a github.com remote, a pull request is opened
through the REST API; otherwise the description file is what a person turns into one.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec


class GitError(AqueductError):
    """The patch branch could not be created."""


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip()}", hint="check the repository state")
    return done.stdout.strip()


def pr_description(patch: PatchSpec, package: FailurePackage, diff: str) -> str:
    """The PR body: leaves the process (a file, GitHub), so it passes the package's Redactor."""
    confidence = f"{patch.confidence:.2f}" if patch.confidence is not None else "n/a"
    text = "\n".join(
        [
            f"# Heal {package.blueprint_id}: {patch.category or 'fix'} in `{package.failed_module}`",
            "",
            f"**Root cause:** {patch.root_cause or 'n/a'}",
            f"**Rationale:** {patch.rationale}",
            f"**Confidence:** {confidence}",
            f"**Failure:** `{package.error.condition or package.error.exception_class}` (run {package.run_id})",
            f"**Patch id:** `{patch.patch_id}`",
            "",
            "```diff",
            diff.rstrip(),
            "```",
            "",
        ]
    )
    return package.redactor.text(text)


def open_patch_branch(
    blueprint_path: Path, patched_text: str, patch: PatchSpec, package: FailurePackage, *,
    diff: str, pr_dir: Path, token: str | None = None,
) -> tuple[str, Path]:  # fmt: skip
    blueprint_path = Path(blueprint_path).resolve()
    repo = Path(_git(blueprint_path.parent, "rev-parse", "--show-toplevel"))
    relative = blueprint_path.relative_to(repo)
    branch = f"aqueduct/heal/{patch.patch_id}"
    with tempfile.TemporaryDirectory(prefix="aq-heal-") as worktree:
        _git(repo, "worktree", "add", "-q", "-b", branch, worktree, "HEAD")
        try:
            (Path(worktree) / relative).write_text(patched_text, encoding="utf-8")
            _git(Path(worktree), "add", str(relative))
            _git(
                Path(worktree), "-c", "user.name=aqueduct-healer", "-c", "user.email=healer@aqueduct.local",
                "commit", "-q", "-m", package.redactor.text(f"heal({package.blueprint_id}): {patch.rationale}")[:200],
            )  # fmt: skip
        finally:
            _git(repo, "worktree", "remove", "--force", worktree)
    pr_dir.mkdir(parents=True, exist_ok=True)
    description = pr_dir / f"{patch.patch_id}.md"
    description.write_text(pr_description(patch, package, diff), encoding="utf-8")
    if token:
        open_pull_request(repo, branch, description.read_text(), token)
    return branch, description


def open_pull_request(repo: Path, branch: str, body: str, token: str, api: str = "https://api.github.com") -> str:
    remote = _git(repo, "remote", "get-url", "origin")
    match = re.search(r"github\.com[:/]([^/]+)/([^/.]+)", remote)
    if not match:
        raise GitError(f"origin '{remote}' is not a GitHub repository", hint="push the branch and open the PR by hand")
    owner, name = match.groups()
    base = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    _git(repo, "push", "-q", "origin", branch)
    request = urllib.request.Request(
        f"{api}/repos/{owner}/{name}/pulls",
        data=json.dumps({"title": body.splitlines()[0].lstrip("# "), "head": branch, "base": base, "body": body}).encode(),
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["html_url"]
