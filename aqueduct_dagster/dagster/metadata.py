"""Dagster metadata for Blueprint assets, in Dagster's own conventions.

- Definition metadata (on each AssetSpec): code references to the Blueprint file and line
  (a link into the hosted repository when the file is in a git checkout with a web remote),
  `dagster/uri` or `dagster/table_name` for an Ingress/Egress, the config as written.
- Materialization metadata (what one step did): `dagster/row_count` when a write replaced
  the whole table, `dagster/uri` / `dagster/table_name`, and the engine's facts as text,
  Markdown tables or SQL rather than JSON blobs.
- A `code_version` that survives a moved checkout: locations (the Blueprint's folder, and
  context values that are absolute paths or URIs) are hashed as symbols, not as text.
  Other context values (a threshold, a table prefix) change what a module computes, so
  they stay in the hash.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import dagster as dg
import yaml

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest, fingerprint_of
from aqueduct_dagster.settings import current_settings

#: libyaml's safe dumper when built in (same text, ~5x faster for 2,000 modules at load).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
#: How the Blueprint's own folder reads in `aqueduct/config` and is hashed in `code_version`.
BLUEPRINT_DIR_SYMBOL = "${blueprint_dir}"
#: Asset metadata key of the column lineage as a Markdown table (open-source Dagster's UI
#: does not render `dagster/column_lineage`).
COLUMN_LINEAGE_KEY = "aqueduct/column_lineage"
#: Two letters at least: `C:/data` is a Windows drive, not a scheme.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
#: Write modes after which the target holds exactly the rows written (unless `replace_where`).
_WHOLE_TABLE_MODES = {"overwrite", "error", "errorifexists", "ignore"}
#: Engine facts kept with the run as evidence (run_evidence), or shown under another key.
_NOT_SHOWN = {"signals", "snapshot", "profile", "columns", "target_uri", "quarantined", "depot"}
#: `git@host:owner/repo.git`, the scp-like form of an ssh remote.
_SCP_REMOTE = re.compile(r"^(?:[^@/:]+@)?([^/:]+):(?!//)(.+)$")
_GIT_SCHEMES = {"https", "http", "ssh", "git", "git+ssh"}


# -------------------------------------------------------------------------- definitions


def _addresses_storage(module: CompiledModule) -> bool:
    """It reads a source or writes a sink: its path or table is an address the UI shows."""
    return module.reads_source or module.writes_sink


def definition_metadata(manifest: Manifest, module: CompiledModule) -> dict[str, Any]:
    """What the catalog shows for a module before anything ran."""
    anchors = location_anchors(manifest)
    config = module.spec.config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    shown = {
        k: v for k, v in symbolic(config, anchors).items() if not (k == "query" and module.sql)
    }
    metadata: dict[str, Any] = {
        "aqueduct/module_type": module.type,
        "aqueduct/blueprint": shown_path(manifest, manifest.source_path),
    }
    if shown:
        metadata["aqueduct/config"] = dg.MetadataValue.md(
            f"```yaml\n{yaml.dump(shown, Dumper=_DUMPER, sort_keys=False, allow_unicode=True).strip()}\n```"
        )
    if module.location is not None:
        where = module.location
        metadata["aqueduct/defined_at"] = ":".join(
            [shown_path(manifest, where.file)]
            + [str(p) for p in (where.line, where.column) if p is not None]
        )
        if where.file != "<string>":
            metadata["dagster/code_references"] = _code_reference(
                module.id, where.file, where.line, git_source_for(manifest.source_path)
            )
    if module.sql:
        metadata["aqueduct/sql"] = dg.MetadataValue.md(f"```sql\n{module.sql.strip()}\n```")
    if _addresses_storage(module):
        metadata.update(storage_address(module.config))
    return metadata


def _code_reference(
    module_id: str, file: str, line: int | None, git: GitSource | None
) -> dg.CodeReferencesMetadataValue:
    """The module's place in its YAML file: a link into the repository when `git` knows the
    file, else the local path.

    Built directly rather than through `dg.link_code_references_to_git`: in Dagster 1.13 that
    takes AssetsDefinitions only (AssetSpecs pass unchanged), rebuilds each one and warns per
    asset, +0.36 s CPU on a 200-Blueprint load (bench/defs_load.py).
    """
    label = f"{module_id} in {Path(file).name}"
    url = git.link(file, line) if git is not None else None
    with warnings.catch_warnings():  # beta in Dagster 1.13; warned once per asset otherwise
        warnings.simplefilter("ignore", dg.BetaWarning)
        if url is not None:
            reference: Any = dg.UrlCodeReference(url=url, label=label)
        else:
            reference = dg.LocalFileCodeReference(
                file_path=os.path.abspath(file), line_number=line, label=label
            )
        return dg.CodeReferencesMetadataValue(code_references=[reference])


# -------------------------------------------------------------------------- git links


@dataclass(frozen=True)
class GitSource:
    """The hosted repository a checkout of Blueprint files comes from."""

    #: The repository's web address (`https://github.com/owner/repo`).
    url: str
    #: Branch, tag or commit the links name.
    ref: str
    #: The checkout's top folder, symlinks resolved.
    root: str

    def link(self, file: str, line: int | None) -> str | None:
        """`file`'s page in the repository at `ref` (GitHub's `/blob/` form, GitLab's
        `/-/blob/`); None for a file outside the checkout."""
        relative = os.path.relpath(_real_path(file), self.root)
        if relative == os.curdir or relative.startswith(os.pardir):
            return None
        view = "/-/blob/" if "gitlab" in urlsplit(self.url).netloc else "/blob/"
        anchor = f"#L{line}" if line else ""
        return f"{self.url}{view}{self.ref}/{quote(Path(relative).as_posix())}{anchor}"


def git_link_settings() -> tuple[str | None, str | None]:
    """(repository URL, git ref) that code references link to, where the operator set them
    (Settings: AQUEDUCT_GIT_URL, AQUEDUCT_GIT_BRANCH); what is not set is read from the checkout."""
    settings = current_settings()
    return settings.git_url, settings.git_ref


def git_source_for(blueprint_path: str) -> GitSource | None:
    """Where the Blueprint at `blueprint_path` is hosted, None when unknown (not in a checkout,
    no git, a remote with no web address). Git is asked once per folder and process."""
    if blueprint_path == "<string>":
        return None
    url, ref = git_link_settings()
    return _git_source(os.path.dirname(_real_path(blueprint_path)), url, ref)


@functools.lru_cache(maxsize=64)
def _git_source(folder: str, url: str | None, ref: str | None) -> GitSource | None:
    # One call for both; it fails outside a checkout and before the first commit.
    answer = (_git(folder, "rev-parse", "--show-toplevel", "HEAD") or "").splitlines()
    root, head = answer if len(answer) == 2 else (None, None)
    if root is None and not (url and ref):
        return None
    address = browsable_url(url or _git(folder, "config", "--get", "remote.origin.url") or "")
    if address is None:
        return None
    # Both set and no checkout (an image without .git): paths are taken from the folder the
    # code location runs in, the project's root.
    return GitSource(url=address, ref=ref or str(head), root=_real_path(root or os.getcwd()))


def browsable_url(remote: str) -> str | None:
    """A git remote as its web address: `git@github.com:o/r.git`, `ssh://git@github.com/o/r`
    and `https://user:token@github.com/o/r.git` all read `https://github.com/o/r` (credentials
    never reach the catalog). None for a local path or an unknown scheme."""
    text = remote.strip()
    scheme = "https"
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in _GIT_SCHEMES or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
        if parts.scheme in ("http", "https"):
            scheme = parts.scheme
            host += f":{parts.port}" if parts.port else ""
    else:
        match = _SCP_REMOTE.match(text)
        if match is None:
            return None
        host, path = match.groups()
    path = path.strip("/").removesuffix(".git")
    return f"{scheme}://{host}/{path}" if path else None


def _git(folder: str, *args: str) -> str | None:
    """git's answer in `folder`, None when git is missing or refuses (not a checkout)."""
    try:
        done = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


@functools.lru_cache(maxsize=4096)
def _real_path(path: str) -> str:
    return os.path.realpath(path)


def storage_address(config: Any) -> dict[str, Any]:
    """`dagster/uri` for a path, `dagster/table_name` for a catalog table (or the table an
    Egress registers its path as)."""
    address: dict[str, Any] = {}
    path = getattr(config, "path", None)
    table = getattr(config, "table", None) or getattr(config, "register_as_table", None)
    if path:
        address["dagster/uri"] = storage_uri(str(path))
    if table:
        address["dagster/table_name"] = str(table)
    return address


def storage_uri(path: str) -> str:
    """A path as a URI: a scheme is kept (`s3a://`, `file:`); a local path is made absolute
    the way a classic Spark driver resolves it (against the working folder)."""
    if _SCHEME.match(path):
        return path
    return "file://" + os.path.abspath(os.path.expanduser(path))


def shown_path(manifest: Manifest, path: str) -> str:
    """`path` relative to the root Blueprint's folder when it lies inside it."""
    if path == "<string>" or manifest.source_path == "<string>":
        return path
    root = os.path.dirname(os.path.abspath(manifest.source_path))
    relative = os.path.relpath(os.path.abspath(path), root)
    return path if relative.startswith("..") else relative


# -------------------------------------------------------------------------- code version


def code_version(manifest: Manifest, module: CompiledModule) -> str:
    """A hash of the module as written: the same in any checkout and on any machine."""
    anchors = location_anchors(manifest)
    return fingerprint_of(
        {
            "spec": symbolic(module.spec.model_dump(mode="json", by_alias=True), anchors),
            "inputs": [i.model_dump(mode="json") for i in module.inputs],
        }
    )


def location_anchors(manifest: Manifest) -> list[tuple[str, str]]:
    """(text, symbol) pairs, longest text first: location-valued context entries, then the
    Blueprint's folder (resolved and as given, which differ under a symlink)."""
    anchors: dict[str, str] = {}
    for key, value in _flat(manifest.context):
        if isinstance(value, str) and _is_location(value):
            anchors.setdefault(value.rstrip("/\\") or value, f"${{ctx.{key}}}")
    if manifest.source_path != "<string>":
        for folder in _blueprint_folder(manifest.source_path, os.getcwd()):
            anchors.setdefault(folder, BLUEPRINT_DIR_SYMBOL)
    return sorted(anchors.items(), key=lambda item: -len(item[0]))


@functools.lru_cache(maxsize=1024)
def _blueprint_folder(source_path: str, working_folder: str) -> tuple[str, str]:
    """The folder resolved and as given; asked for every module of a load (resolving is a
    walk of the file system)."""
    given = os.path.join(working_folder, source_path)
    return str(Path(given).resolve().parent), os.path.dirname(os.path.normpath(given))


def symbolic(value: Any, anchors: Sequence[tuple[str, str]]) -> Any:
    """`value` with every anchor's text replaced by its symbol, in all nested strings."""
    if isinstance(value, str):
        for text, symbol in anchors:
            value = value.replace(text, symbol)
        return value
    if isinstance(value, dict):
        return {k: symbolic(v, anchors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [symbolic(v, anchors) for v in value]
    return value


def _is_location(text: str) -> bool:
    return (os.path.isabs(text) and len(text) > 1) or "://" in text


def _flat(node: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flat(value, dotted + ".")
        else:
            yield dotted, value


# -------------------------------------------------------------------------- materializations


def materialization_metadata(module: CompiledModule, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's facts about one step, as the catalog shows them."""
    metadata: dict[str, Any] = {}
    for key, value in facts.items():
        if value is None or key in _NOT_SHOWN or (isinstance(value, (list, dict)) and not value):
            continue
        if key == "sql":
            metadata[key] = dg.MetadataValue.md(f"```sql\n{str(value).strip()}\n```")
        elif key == "option_keys":
            metadata["options"] = ", ".join(map(str, value))
        elif key == "operation_metrics":
            metadata[key] = markdown_table(("metric", "value"), sorted(value.items()))
        elif key == "rows_written":
            # dagster/row_count is the table's size: an append or merge only adds to it.
            whole = facts.get("mode") in _WHOLE_TABLE_MODES and not facts.get("replace_where")
            metadata["dagster/row_count" if whole else key] = int(value)
        elif key in ("path", "table", "registered_as") and _addresses_storage(module):
            continue  # the storage address below
        else:
            metadata[key] = metadata_value(value)
    if _addresses_storage(module):
        if facts.get("path"):
            metadata["dagster/uri"] = storage_uri(str(facts["path"]))
        table = facts.get("table") or facts.get("registered_as")
        if table:
            metadata["dagster/table_name"] = str(table)
    return metadata


def metadata_value(value: Any) -> Any:
    """A plain value for the catalog: scalars as they are, a mapping as a two-column table,
    a list of names as text; only nested structures stay JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values()):
        return markdown_table(("key", "value"), value.items())
    if isinstance(value, (list, tuple)) and all(_is_scalar(v) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (Mapping, list, tuple)):
        return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
    return str(value)


def markdown_table(headers: Sequence[str], rows: Any) -> dg.MarkdownMetadataValue:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def column_lineage_markdown(
    own: dg.AssetKey, deps_by_column: Mapping[str, Sequence[dg.TableColumnDep]]
) -> dg.MarkdownMetadataValue:
    """Column -> upstream columns as a Markdown table; an upstream asset of the same
    Blueprint is named without the Blueprint's prefix."""

    def named(dep: dg.TableColumnDep) -> str:
        path = dep.asset_key.path
        same = len(path) > 1 and path[0] == own.path[0]
        return f"{'/'.join(path[1:]) if same else dep.asset_key.to_user_string()}.{dep.column_name}"

    return markdown_table(
        ("column", "upstream columns"),
        [
            (column, ", ".join(named(d) for d in deps) or "(none)")
            for column, deps in deps_by_column.items()
        ],
    )


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ")
