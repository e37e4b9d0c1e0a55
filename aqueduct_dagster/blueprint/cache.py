"""Compiled Manifests, cached by everything a compile reads.

A compile is pure but not free (20-100 ms a Blueprint, most of it sqlglot's SQL analysis),
and every process that loads the code location compiles every Blueprint again: the code
server, each run worker, each `dagster job execute`. What a compile of a file reads is
known: the file, the Arcade files it expands, the environment variables named by
`@aq.env`, `${VAR}` and `@aq.secret`, the caller's context overrides, profile and
deployment, and the compiler's own code. An entry is found by the file's text, its path and
the caller's arguments; it records what else the compile read (each Arcade file's digest and
the path it was reached by, each environment variable's value or absence), and a hit checks
those again before it is returned. Only successful compiles are kept: an error is raised
afresh every time.

Two levels: a process-level LRU, always on, and, inside `disk_cache(folder)`, one small file
per entry in that folder (`build_definitions` uses `<state dir>/compile-cache`), shared by
the processes of a project. An entry holds the Manifest pickled (pydantic validation cannot
read it back: an Arcade's namespaced module ids are refused by the models' own validators),
and only when it reads back equal to the compiled one; every hit unpickles a copy of its own.
Pickles run code when read, so the folder is created for its owner only and an entry file is
read only when this user owns it and nobody else may write it or its folder; what it depends
on is checked, from plain JSON, before its Manifest is unpickled. Files are written
atomically; an unreadable or foreign file is a miss. Later layers keep what they derive
from a Manifest beside its entry, under the same rules (`read_companion`, `write_companion`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import os
import pickle
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqueduct_dagster.blueprint.loader import read_blueprint_text
from aqueduct_dagster.blueprint.manifest import Manifest

_log = logging.getLogger(__name__)

#: Bump when the entry layout changes.
FORMAT = "aqueduct-compile-cache/1"
#: Entries (keys) kept by the process-level LRU.
MEMORY_ENTRIES = 256
#: Variants kept per key: the same file compiled under different environment values.
VARIANTS_PER_KEY = 4
#: Files kept in a disk cache folder; the oldest go first when a process opens a fuller one.
DISK_ENTRIES = 4_000


class EnvReads(Mapping[str, str]):
    """The environment as a compile sees it, noting every name it looks up.

    `name in env` notes whether the name is set (all `@aq.secret` asks: its value never
    reaches the Manifest, nor the cache); reading a value notes its digest. Walking the whole
    mapping marks the compile as reading everything: it is then not cached.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        #: name -> what the compile depends on: `set`, `unset` or `value:<sha256>`.
        self.read: dict[str, str] = {}
        self.whole = False

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(name)
        self.read[name] = env_mark(value, value_read=True)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        value = self._environ.get(name)
        if not self.read.get(name, "").startswith("value:"):
            self.read[name] = env_mark(value, value_read=False)
        return value is not None

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        self.whole = True
        return iter(self._environ)

    def __len__(self) -> int:
        self.whole = True
        return len(self._environ)


def env_mark(value: str | None, *, value_read: bool) -> str:
    if value is None:
        return "unset"
    return "value:" + _digest(value.encode("utf-8", "surrogatepass")) if value_read else "set"


@dataclass(frozen=True)
class FileRead:
    """A file a compile read besides its own: how it was named, where that led, its digest."""

    named: str
    resolved: str
    digest: str

    def still_holds(self) -> bool:
        try:
            if os.path.realpath(self.named) != self.resolved:
                return False  # a link along the way points elsewhere now
            with open(self.resolved, "rb") as handle:
                return _digest(handle.read()) == self.digest
        except (OSError, ValueError):
            return False


@dataclass
class _Recording:
    files: list[FileRead] = field(default_factory=list)


_RECORDING: ContextVar[_Recording | None] = ContextVar("aqueduct_compile_reads", default=None)
_DISK_FOLDER: ContextVar[Path | None] = ContextVar("aqueduct_compile_cache_folder", default=None)


def read_dependency(named: Path, resolved: Path, display: str) -> str:
    """The text of the Arcade file `resolved` (reached as `named`), noted for the compile being
    cached."""
    text = read_blueprint_text(resolved, display)
    recording = _RECORDING.get()
    if recording is not None:
        recording.files.append(FileRead(str(named), str(resolved), _digest(text.encode())))
    return text


@dataclass(frozen=True)
class _Variant:
    """One compiled Manifest and what its compile read besides the key's inputs."""

    env: dict[str, str]
    files: tuple[FileRead, ...]
    manifest: bytes  # pickled

    def still_holds(self, environ: Mapping[str, str]) -> bool:
        for name, mark in self.env.items():
            if env_mark(environ.get(name), value_read=mark.startswith("value:")) != mark:
                return False
        return all(read.still_holds() for read in self.files)

    def as_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "files": [[f.named, f.resolved, f.digest] for f in self.files],
            "manifest": base64.b64encode(self.manifest).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Variant:
        env = data["env"]
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise ValueError("bad env")
        files = tuple(FileRead(*(str(part) for part in entry)) for entry in data["files"])
        manifest = data["manifest"]
        if not isinstance(manifest, str):
            raise ValueError("bad manifest")
        return cls(env=env, files=files, manifest=base64.b64decode(manifest, validate=True))


class CompileCache:
    """The process-level LRU, and the disk folder of the current context if there is one."""

    def __init__(self, entries: int = MEMORY_ENTRIES) -> None:
        self._entries = entries
        self._memory: OrderedDict[str, list[_Variant]] = OrderedDict()
        self._lock = threading.Lock()
        self._pruned: set[Path] = set()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
            self.hits = self.misses = 0

    def compile(
        self,
        compile_with: Callable[[Mapping[str, str]], Manifest],
        *,
        text: str,
        source_path: str,
        absolute_path: Path,
        environ: Mapping[str, str],
        arguments: Mapping[str, Any],
    ) -> Manifest:
        """`compile_with(env)` for this file, or an equal Manifest compiled before."""
        key = _key(text, source_path, absolute_path, arguments)
        if key is None:  # arguments that do not serialize: not cached
            return compile_with(environ)
        folder = _DISK_FOLDER.get()
        variants = self._memory_variants(key)
        if variants is None and folder is not None:
            variants = _read_disk(folder, key)
        for variant in variants or ():
            if variant.still_holds(environ):
                manifest = _unpickled(variant.manifest)
                if manifest is None:
                    break
                self._remember(key, variant, variants or [])
                self.hits += 1
                return manifest
        self.misses += 1
        recorded = EnvReads(environ)
        recording = _Recording()
        token = _RECORDING.set(recording)
        try:
            manifest = compile_with(recorded)
        finally:
            _RECORDING.reset(token)
        if recorded.whole:
            return manifest
        try:
            pickled = pickle.dumps(manifest, protocol=pickle.HIGHEST_PROTOCOL)
            if pickle.loads(pickled) != manifest:
                return manifest  # something in it does not survive a copy: not cached
        except Exception:  # noqa: BLE001 - a value pickle cannot take: not cached
            return manifest
        variant = _Variant(dict(recorded.read), tuple(recording.files), pickled)
        kept = self._remember(key, variant, variants or [])
        if folder is not None:
            self._write_disk(folder, key, kept)
        return manifest

    def _memory_variants(self, key: str) -> list[_Variant] | None:
        with self._lock:
            variants = self._memory.get(key)
            if variants is not None:
                self._memory.move_to_end(key)
            return variants

    def _remember(self, key: str, variant: _Variant, variants: list[_Variant]) -> list[_Variant]:
        kept = [variant, *(v for v in variants if v is not variant)][:VARIANTS_PER_KEY]
        with self._lock:
            self._memory[key] = kept
            self._memory.move_to_end(key)
            while len(self._memory) > self._entries:
                self._memory.popitem(last=False)
        return kept

    def _write_disk(self, folder: Path, key: str, variants: list[_Variant]) -> None:
        payload = json.dumps(
            {"format": FORMAT, "key": key, "variants": [v.as_json() for v in variants]},
            separators=(",", ":"),
        )
        if folder not in self._pruned:
            self._pruned.add(folder)
            try:
                _prune(folder)
            except OSError as error:  # an entry removed meanwhile by another process
                _log.debug("compile cache: cannot prune %s: %s", folder, error)
        _write_private(_entry_path(folder, key), payload.encode("utf-8"))


#: The cache `compile_blueprint` uses.
COMPILE_CACHE = CompileCache()


@contextmanager
def disk_cache(folder: str | Path | None) -> Iterator[None]:
    """Inside this block, compiles also read and write cache entries in `folder` (None: off)."""
    token = _DISK_FOLDER.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _DISK_FOLDER.reset(token)


def read_companion(folder: Path | None, key: str, suffix: str) -> bytes | None:
    """What a later layer stored under `key` beside the compile entries in `folder` (the
    Dagster asset specs of a Manifest), under the entries' rules: read only when private.
    None when absent, unreadable, or `folder` is None (no disk cache)."""
    if folder is None:
        return None
    return _read_private(folder, _entry_path(folder, key).with_suffix(suffix))


def write_companion(folder: Path | None, key: str, suffix: str, data: bytes) -> None:
    """Store `data` under `key` beside the compile entries in `folder` (pruned with them)."""
    if folder is not None:
        _write_private(_entry_path(folder, key).with_suffix(suffix), data)


# ----------------------------------------------------------------------------- helpers


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache
def code_digest() -> str:
    """The compiler's own code and the libraries whose output lands in a Manifest.

    Read when this module is imported, with the rest of the compiler: sources edited later
    are not the code this process runs, and must not name its entries.
    """
    import pydantic
    import sqlglot
    import yaml

    import aqueduct_dagster
    from aqueduct_dagster import errors

    digest = hashlib.sha256()
    for part in (FORMAT, aqueduct_dagster.__version__, pydantic.VERSION, sqlglot.__version__,
                 yaml.__version__):  # fmt: skip
        digest.update(str(part).encode() + b"\0")
    package = Path(__file__).parent
    for source in [*sorted(package.glob("*.py")), Path(errors.__file__)]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def _key(
    text: str, source_path: str, absolute_path: Path, arguments: Mapping[str, Any]
) -> str | None:
    try:
        settings = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256()
    for part in (code_digest(), source_path, str(absolute_path), settings):
        digest.update(part.encode() + b"\0")
    digest.update(text.encode())
    return digest.hexdigest()


def _entry_path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.json"


def _unpickled(data: bytes) -> Manifest | None:
    try:
        manifest = pickle.loads(data)
    except Exception:  # noqa: BLE001 - a damaged or outdated entry is a miss
        return None
    return manifest if isinstance(manifest, Manifest) else None


def _private(status: os.stat_result) -> bool:
    """Owned by this user, and nobody else may write it."""
    return status.st_uid == os.getuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_disk(folder: Path, key: str) -> list[_Variant] | None:
    text = _read_private(folder, _entry_path(folder, key))
    if text is None:
        return None
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT or data.get("key") != key:
            return None
        return [_Variant.from_json(v) for v in data["variants"]][:VARIANTS_PER_KEY]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        _log.debug("compile cache: ignoring unreadable entry %s: %s", key, error)
        return None


def _read_private(folder: Path, path: Path) -> bytes | None:
    """The file's bytes when this user owns it, its folder and `folder`, and nobody else may
    write them (what is read may be unpickled); else None."""
    try:
        with open(path, "rb") as handle:
            if not (
                _private(os.fstat(handle.fileno()))
                and _private(os.stat(path.parent))
                and _private(os.stat(folder))
            ):
                _log.debug("compile cache: %s may be written by others; not read", path)
                return None
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        _log.debug("compile cache: ignoring unreadable entry %s: %s", path, error)
        return None


def _write_private(target: Path, data: bytes) -> None:
    """Write `target` atomically, for its owner only (entries hold compiled config: paths,
    environment values); a cache that cannot be written is only slower."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        target.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except OSError as error:
        _log.debug("compile cache: cannot write %s: %s", target, error)
        temporary.unlink(missing_ok=True)


def _prune(folder: Path, keep: int = DISK_ENTRIES) -> None:
    """Oldest entries out when the folder holds more than `keep` (edited files leave stale ones)."""
    try:
        entries = [
            entry for sub in os.scandir(folder) if sub.is_dir() for entry in os.scandir(sub.path)
        ]
    except FileNotFoundError:
        return
    if len(entries) <= keep:
        return
    entries.sort(key=lambda entry: entry.stat().st_mtime)
    for entry in entries[: len(entries) - keep]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass


code_digest()
