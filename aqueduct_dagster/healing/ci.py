"""Approval mode `ci`: the patched Blueprint on a git branch, with a PR description.

The branch is built in a temporary worktree, so the user's checkout (and its uncommitted
work) is never touched. With a GitHub token and a GitHub remote, the branch is pushed and a pull
request opened with PyGithub; otherwise the description file is what a person turns into one.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException

from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec

GITHUB_API = "https://api.github.com"
GITHUB_TIMEOUT_SECONDS = 30
# git@github.com:owner/name.git (an ssh remote without the ssh:// scheme)
_SCP_LIKE_REMOTE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


class GitError(AqueductError):
    """The patch branch could not be created, pushed, or offered as a pull request."""


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


@dataclass(frozen=True)
class BranchResult:
    """A heal's branch: its name, the PR description file, and the pull request (its URL, or
    why it was not opened; None without a token)."""

    branch: str
    description: Path
    pull_request: str | None = None


def open_patch_branch(
    blueprint_path: Path, patched_text: str, patch: PatchSpec, package: FailurePackage, *,
    diff: str, pr_dir: Path, token: str | None = None,
) -> BranchResult:  # fmt: skip
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
    pull_request = None
    if token:
        try:
            pull_request = open_pull_request(repo, branch, description.read_text(), token)
        except GitError as error:
            # The branch is committed (and perhaps pushed): the heal succeeded, only the PR
            # is left to a person, and the outcome says why.
            pull_request = f"not opened: {error}"
    return BranchResult(branch, description, pull_request)


def open_pull_request(repo: Path, branch: str, body: str, token: str, api: str = GITHUB_API) -> str:
    """Push `branch` to origin and open a pull request for it; returns the PR's html_url.

    `api` is the REST root: api.github.com, or a GitHub Enterprise one (https://HOST/api/v3).
    """
    owner, name = github_repository(_git(repo, "remote", "get-url", "origin"), api)
    base = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    if base == "HEAD":
        raise GitError("the checkout is on a detached HEAD: no branch to open the pull request into",
                       hint=f"check out the target branch, or open the PR for '{branch}' by hand")  # fmt: skip
    _git(repo, "push", "-q", "origin", branch)
    try:
        # No retries: a repeated POST could race a PR that was in fact created; one failure is reported.
        with Github(auth=Auth.Token(token), base_url=api, timeout=GITHUB_TIMEOUT_SECONDS, retry=None) as github:
            pull = github.get_repo(f"{owner}/{name}").create_pull(
                base=base, head=branch, title=_title(body), body=body
            )
            return pull.html_url
    except BadCredentialsException as error:
        failure, hint = _github_failure(error), "check the token (it needs pull-request write access)"
    except UnknownObjectException as error:
        failure, hint = _github_failure(error), f"check that {owner}/{name} exists and the token can see it"
    except GithubException as error:
        failure = _github_failure(error)
        hint = "a pull request for this branch may already be open" if error.status == 422 else "see GitHub's answer"
    except OSError as error:  # requests' connection and timeout errors are OSErrors
        failure, hint = f"{api} unreachable ({type(error).__name__}: {error})", "check the network and the API URL"
    message = f"pull request for branch '{branch}' into '{base}' of {owner}/{name} not opened: {failure}"
    raise GitError(message.replace(token, "***"), hint=f"{hint}; the branch is pushed, a person can open the PR")


def github_repository(remote: str, api: str = GITHUB_API) -> tuple[str, str]:
    """Owner and name of the GitHub repository an origin URL (https, ssh or scp-like) points at.

    Its host must be github.com or the API's own host without a leading "api." (GitHub
    Enterprise serves git and API on one host, or git on X and the API on api.X).
    """
    if "://" in remote:
        parts = urllib.parse.urlsplit(remote)
        host, path = parts.hostname or "", parts.path
    elif scp_like := _SCP_LIKE_REMOTE.match(remote):
        host, path = scp_like["host"], scp_like["path"]
    else:
        host, path = "", ""
    hosts = {"github.com", (urllib.parse.urlsplit(api).hostname or "").removeprefix("api.")}
    segments = path.strip("/").removesuffix(".git").split("/")
    if host.lower() not in hosts or len(segments) != 2 or not all(segments):
        shown = re.sub(r"//[^/@]*@", "//", remote)  # an https origin may carry a token as its user
        raise GitError(f"origin '{shown}' is not a repository on {' or '.join(sorted(hosts))}",
                       hint="push the branch and open the PR by hand")  # fmt: skip
    return segments[0], segments[1]


def _title(body: str) -> str:
    lines = body.strip().splitlines()
    return lines[0].lstrip("# ").strip() if lines else "aqueduct heal"


def _github_failure(error: GithubException) -> str:
    """GitHub's own words: its message plus each validation error (e.g. "A pull request already exists")."""
    data = error.data if isinstance(error.data, dict) else {}
    details = [str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
               for e in data.get("errors") or []]  # fmt: skip
    return f"GitHub answered {error.status}: " + "; ".join([str(data.get("message") or error.message or "")] + details)
