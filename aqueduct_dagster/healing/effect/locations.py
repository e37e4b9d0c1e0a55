"""Locations as this machine resolves them: normalized paths, and which folder holds which.

A path can hide where it leads (`..`, `%2e%2e`, a glob alternation `{a,b}`, a symlink under
a folder Spark lists): every form is resolved here, so that the judge compares the places
themselves, not their spellings.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import posixpath
import re
from urllib.parse import unquote, urlsplit

#: Run-dependent tokens stay tokens in a Manifest; any value stands for them in a path.
_RUNTIME = re.compile(r"@aq\.(run|date)\.[\w.]*\([^)]*\)|\$\{ctx\._[^{}]*\}")

#: Reader/writer option names (lower case, by substring) that name a location.
WRITTEN_OPTION_WORDS = ("checkpoint", "badrecord", "archive", "output", "staging", "tempdir")
PATH_OPTION_WORDS = ("path", "dir", "location", "file", "folder", "prefix", "glob")
ADDRESS_OPTION_WORDS = (
    "url", "uri", "dbtable", "table", "query", "host", "endpoint", "server", "bucket",
    "topic", "subscribe", "assign", "address", "port", "catalog", "database", "collection",
)  # fmt: skip

_MAX_EXPANSIONS = 64
_GLOB = re.compile(r"[*?\[]")
#: Files looked at under one local folder when checking where its symlinks lead.
_MAX_WALK = 5000
_MAX_PATH = 4096

#: Marks a location reached through a link under a folder (it never widens what may be read).
VIA_LINK = " (through a symlink under it)"


def names_a_location(option_key: str) -> bool:
    """Whether a reader/writer option (by name) names a place to read or write."""
    key = str(option_key).lower()
    return any(word in key for word in WRITTEN_OPTION_WORDS + PATH_OPTION_WORDS + ADDRESS_OPTION_WORDS)


def paths_of(value: str) -> list[str]:
    """The paths an option names: a JSON list (Spark's `paths`), comma-separated, or one."""
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [p for item in items for p in expanded(str(item))]
    parts = [p.strip() for p in text.split(",") if p.strip()] if "{" not in text else [text]
    return [p for part in parts for p in expanded(part)]


def expanded(path: str) -> list[str]:
    """`path` with Hadoop glob alternations `{a,b}` expanded (they may hide a `..` or a `/`).

    Nested or too many alternations give a marker no folder contains: the read is refused.
    """
    results, pending = [], [path]
    while pending:
        current = pending.pop()
        start = current.find("{")
        if start < 0:
            results.append(current)
            continue
        end = current.find("}", start)
        inner = current[start + 1 : end] if end > 0 else ""
        if end < 0 or "{" in inner or len(results) + len(pending) > _MAX_EXPANSIONS:
            return [f"unexpandable glob alternation: {path}"]
        for choice in inner.split(","):
            pending.append(current[:start] + choice + current[end + 1 :])
    return results


def locations_of(path: str, base: str) -> list[tuple[str, str]]:
    """Every normalized location `path` can reach on this machine, each with a note.

    Also its percent-decoded form (Hadoop and URL handling may decode `%2e%2e`), what a glob
    matches now (`data/*/x` can match a symlink leading out), and where each symlink under a
    local folder leads (Spark lists a folder and follows links; noted with VIA_LINK). A
    folder too large to look through gives a marker under no folder, so a new one is refused.
    """
    variants = [path]
    decoded = unquote(path)
    if decoded != path:
        variants.append(decoded)
    found: list[tuple[str, str]] = []
    for variant in variants:
        if "\x00" in variant or len(variant) > _MAX_PATH:
            found.append((f"unjudgeable path (a NUL character or over {_MAX_PATH} characters): {variant[:200]!r}", ""))
            continue
        location = normalized(variant, base)
        found.append((location, ""))
        if "://" in location or location.startswith("unexpandable"):
            continue
        matches = _glob_matches(location) if _GLOB.search(location) else [location]
        for match in matches:
            resolved, *links = _links_under(match)
            found.append((resolved, ""))
            found.extend((link, VIA_LINK) for link in links)
    return list(dict.fromkeys(found))


def _glob_matches(pattern: str) -> list[str]:
    matches = []
    for index, match in enumerate(glob.iglob(pattern, include_hidden=True)):
        if index >= _MAX_WALK:
            return [*matches, f"unexpandable glob (more than {_MAX_WALK} matches): {pattern}"]
        matches.append(match)
    return matches


def _links_under(path: str) -> list[str]:
    """`path` resolved, and where every symlink under it (a folder) leads."""
    found = [os.path.realpath(path)]
    if not os.path.isdir(path):
        return found
    seen = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > _MAX_WALK:
                return [*found, f"unexpandable folder (more than {_MAX_WALK} entries to check for links): {path}"]
            entry = os.path.join(folder, name)
            if os.path.islink(entry):
                found.append(os.path.realpath(entry))
    return found


def normalized(path: str, base: str) -> str:
    """`path` absolute with `..` and symlinks resolved; URLs keep their scheme and host."""
    text = _RUNTIME.sub("0", str(path).strip())
    parts = urlsplit(text)
    if parts.scheme and len(parts.scheme) > 1 and parts.scheme != "file":
        return f"{parts.scheme.lower()}://{parts.netloc}{posixpath.normpath('/' + parts.path.lstrip('/'))}"
    if parts.scheme == "file":
        text = parts.path
    if text.startswith("unexpandable"):
        return text  # not absolute: under no folder
    if text.startswith("~"):
        # A classic driver reads `~` literally, a local Connect server expands it: the
        # stricter of the two must hold, so judge the expanded form (outside the project).
        text = os.path.expanduser(text)
    return os.path.realpath(os.path.join(base, text))


def _components(path: str) -> list[str]:
    parts = urlsplit(path)
    if parts.scheme and len(parts.scheme) > 1:
        return [f"{parts.scheme}://{parts.netloc}", *[p for p in parts.path.split("/") if p]]
    return ["/", *[p for p in path.split(os.sep) if p]]


def is_under(path: str, folder: str) -> bool:
    """`path` is `folder` or inside it, compared component by component (globs allowed in `folder`)."""
    inner, outer = _components(path), _components(folder)
    return len(inner) >= len(outer) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(inner, outer, strict=False))


def denied_by(path: str, pattern: str, base: str) -> bool:
    """A denied pattern: absolute -> a prefix; with a '/' -> a run of components; else any component."""
    components = _components(path)
    if os.path.isabs(pattern) or "://" in pattern:
        return is_under(path, normalized_pattern(pattern, base))
    wanted = [p for p in pattern.split("/") if p]
    if not wanted:
        return False
    return any(
        all(fnmatch.fnmatchcase(components[start + i], wanted[i]) for i in range(len(wanted)))
        for start in range(len(components) - len(wanted) + 1)
    )


def normalized_pattern(pattern: str, base: str) -> str:
    """A folder pattern normalized like a path, its glob components kept as written."""
    if any(ch in pattern for ch in "*?["):
        # Resolve the literal head only; the glob components match as written.
        head, _, tail = pattern.partition("*")
        folder = head.rsplit("/", 1)[0] if "/" in head else ""
        rest = pattern[len(folder):].lstrip("/")
        return os.path.join(normalized(folder or ".", base), rest)
    return normalized(pattern, base)
