"""The default translator's asset specs, kept between loads beside the compiled Manifests.

A load whose Manifests all come from the compile cache otherwise spends a sixth of its time
(~0.4 s of ~2.5 s for 200 Blueprints, bench/defs_load.py) rebuilding the metadata the last
process built from the same Manifests. A Blueprint's specs are found by all that the default
translator reads: each module's fingerprint (its spec and inputs), id, type, Arcade path and
place in its file; the Blueprint's id, path and location anchors; the working folder
(relative storage paths); where code references link to; the code of this layer and of the
compiler; Dagster's version. Two levels, as for Manifests: a process-level LRU and, with a
compile cache folder, a pickle beside the Manifest's entry (`blueprint/cache.py` companions:
read only when private), written only when it reads back equal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from aqueduct_dagster.blueprint.cache import code_digest, read_companion, write_companion
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.dagster import metadata, translator
from aqueduct_dagster.dagster.metadata import git_source_for, location_anchors

#: Bump when what an entry holds changes.
FORMAT = "aqueduct-spec-cache/1"
_SUFFIX = ".specs"
#: Blueprints whose specs the process keeps.
MEMORY_ENTRIES = 256


class SpecCache:
    """Module id -> AssetSpec per Blueprint, by `key_of(manifest)`."""

    def __init__(self, entries: int = MEMORY_ENTRIES) -> None:
        self._entries = entries
        self._memory: OrderedDict[str, dict[str, dg.AssetSpec]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, folder: Path | None) -> dict[str, dg.AssetSpec] | None:
        with self._lock:
            specs = self._memory.get(key)
            if specs is not None:
                self._memory.move_to_end(key)
                return specs
        data = read_companion(folder, key, _SUFFIX)
        if data is None:
            return None
        try:
            specs = pickle.loads(data)
        except Exception:  # noqa: BLE001 - a damaged or outdated entry is a miss
            return None
        if not isinstance(specs, dict) or not all(isinstance(s, dg.AssetSpec) for s in specs.values()):
            return None
        self._remember(key, specs)
        return specs

    def put(self, key: str, folder: Path | None, specs: Mapping[str, dg.AssetSpec]) -> None:
        specs = dict(specs)
        self._remember(key, specs)
        if folder is None:
            return
        try:
            data = pickle.dumps(specs, protocol=pickle.HIGHEST_PROTOCOL)
            if pickle.loads(data) != specs:
                return  # something in them does not survive a copy: not kept on disk
        except Exception:  # noqa: BLE001 - metadata pickle cannot take (a custom translator's)
            return
        write_companion(folder, key, _SUFFIX, data)

    def _remember(self, key: str, specs: dict[str, dg.AssetSpec]) -> None:
        with self._lock:
            self._memory[key] = specs
            self._memory.move_to_end(key)
            while len(self._memory) > self._entries:
                self._memory.popitem(last=False)


#: The cache the factory uses for the default translator.
SPEC_CACHE = SpecCache()


def key_of(manifest: Manifest) -> str | None:
    """What the default translator's specs for `manifest` depend on, hashed; None when a
    module has no fingerprint (not compiled by `compile_blueprint`)."""
    if manifest.source_path == "<string>":
        return None
    git = git_source_for(manifest.source_path)
    modules = []
    for module in manifest.modules.values():
        if not module.fingerprint:
            return None
        where = module.location
        place = (where.file, where.line, where.column) if where is not None else None
        modules.append((module.id, module.type, module.fingerprint, module.arcade, place))
    payload = {
        "code": _code_digest(),
        "working_folder": os.getcwd(),
        "blueprint": (manifest.blueprint_id, manifest.source_path),
        "anchors": location_anchors(manifest),
        "git": (git.url, git.ref, git.root) if git is not None else None,
        "modules": modules,
    }
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _code_digest() -> str:
    """The code that shapes a default spec (as imported: see `blueprint/cache.py`), the
    compiler's, Dagster's version."""
    digest = hashlib.sha256(f"{FORMAT}\0{dg.__version__}\0{code_digest()}\0".encode())
    for module in (translator, metadata, sys.modules[__name__]):
        source = Path(str(module.__file__))
        digest.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


_code_digest()
