"""The effect of a compiled Blueprint: everything it reads, writes and loads, in one record."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.healing.effect.bounds import RETRY_FIELDS
from aqueduct_dagster.healing.effect.config_values import is_enabled, strings_in, webhook_url
from aqueduct_dagster.healing.effect.locations import normalized
from aqueduct_dagster.healing.effect.module_effects import module_effect
from aqueduct_dagster.healing.effect.records import Effect, Target

_ENV_DEFAULT = re.compile(r"@aq\.env\(\s*['\"]([^'\"]+)['\"]\s*,\s*([^)]*)\)")
_ENV_NAMES = (
    re.compile(r"@aq\.(env|secret)\(\s*['\"]([^'\"]+)['\"]"),
    re.compile(r"\b(env) ([A-Za-z_][A-Za-z0-9_]*)\b"),
)


def compiled_effect(manifest: Manifest, base_dir: str | Path | None = None) -> Effect:
    """Every location `manifest` reads and writes, normalized against `base_dir`.

    The engine hands relative paths to Spark as they are, and a classic driver resolves them
    against the process's working folder (`engine/filesystem.py`): `base_dir` defaults to it.
    """
    base = str(base_dir) if base_dir is not None else os.getcwd()
    effect = Effect(engine_conf=_engine_conf(manifest), udfs={u.id.lower() for u in manifest.udf_registry})
    for udf in manifest.udf_registry:
        described = ", ".join(
            f"{key}={value}" for key, value in
            (("lang", udf.lang), ("module", udf.module), ("entry", udf.entry), ("class", udf.class_),
             ("jar", udf.jar), ("path", normalized(udf.path, base) if udf.path else None))
            if value
        )  # fmt: skip
        effect.code[Target("code", f"udf {udf.id}: {described}")] = f"udf_registry '{udf.id}'"
    for kind, hooks in manifest.hooks:
        for index, hook in enumerate(hooks):
            where = f"hooks.{kind}[{index}]"
            if hook.command:
                effect.code[Target("code", f"hook command: {hook.command}")] = where
            if hook.blueprint:
                effect.code[Target("code", f"hook blueprint: {normalized(hook.blueprint, base)}")] = where
            if hook.webhook:
                effect.writes[Target("url", webhook_url(hook.webhook))] = where
    for module in manifest.modules.values():
        module_effect(effect, module, base, manifest.checkpoint)
        source = module.location.file if module.location else None
        if source and module.arcade:
            # A sub-Blueprint is code the compiler loads: a patch may not swap one in.
            effect.code[Target("code", f"Arcade file {os.path.realpath(source)}")] = f"module '{module.id}'"
    effect.env = _environment_names(manifest)
    effect.guards = _guards(manifest)
    effect.retry["retry_policy"] = manifest.retry_policy.model_dump()
    for module in manifest.modules.values():
        if module.spec.retry is not None:
            effect.retry[f"module '{module.id}' retry"] = module.spec.retry.model_dump(exclude_none=True)
        known = {k: v for k, v in (module.spec.on_failure or {}).items() if k in RETRY_FIELDS}
        if known:
            effect.retry[f"module '{module.id}' on_failure"] = known
    return effect


def _guards(manifest: Manifest) -> dict[str, set[str]]:
    """Egress id -> the Asserts that every path of data from a source into it passes.

    Probe signals carry no rows (a Probe watches, it does not feed): their edges are left out.
    """
    modules = manifest.modules
    feeds: dict[str, list[str]] = {m: [] for m in modules}
    #: Assert id -> modules fed by its other ports (quarantined / failing rows: unchecked).
    sides: dict[str, list[str]] = {}
    for module in modules.values():
        for edge in module.inputs:
            source = modules.get(edge.source)
            if source is not None and not source.emits_signals:
                feeds.setdefault(edge.source, []).append(module.id)
                if source.is_quality_check and (edge.port or "main") != "main":
                    sides.setdefault(edge.source, []).append(module.id)
    sources = [m.id for m in modules.values() if not m.emits_signals and not any(
        modules.get(e.source) is not None and not modules[e.source].emits_signals for e in m.inputs)]  # fmt: skip
    asserts = [m.id for m in modules.values() if m.is_quality_check and is_enabled(m)]
    egresses = [m.id for m in modules.values() if m.writes_sink]
    guards: dict[str, set[str]] = {e: set() for e in egresses}
    for check in asserts:
        reached, pending = set(), [s for s in sources if s != check]
        while pending:
            current = pending.pop()
            if current in reached:
                continue
            reached.add(current)
            for following in feeds.get(current, []):
                # Rows that reach the Assert and leave by another port than main were not
                # passed by it: they go on as if it were not there.
                pending.extend(sides.get(check, []) if following == check else [following])
        for egress in egresses:
            if egress not in reached:
                guards[egress].add(check)
    return guards


def _environment_names(manifest: Manifest) -> set[str]:
    """`env:NAME` for each variable a value came from or a secret token names (names only)."""
    names: set[str] = set()
    for provenance in manifest.provenance.values():
        detail = provenance.detail or ""
        # The default counts as much as the name: where the variable is unset (another
        # machine, a scheduler) the default decides where the Blueprint reads and writes.
        names |= {f"{name} (default {default.strip()})" for name, default in _ENV_DEFAULT.findall(detail)}
        if provenance.source in ("env", "secret") and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", detail):
            names.add(detail)  # a value from one `${NAME}`: the detail is the bare name
        names |= {name for _, name in _ENV_NAMES[0].findall(detail)}
        names |= {name for _, name in _ENV_NAMES[1].findall(detail)}
    values: list[Any] = [m.spec.model_dump(by_alias=True) for m in manifest.modules.values()]
    values.append(manifest.engine.model_dump())
    for value in values:  # secret tokens stay tokens in the Manifest
        for _, text in strings_in(value, ""):
            names |= {name for _, name in _ENV_NAMES[0].findall(text)}
            names |= {f"{name} (default {default.strip()})" for name, default in _ENV_DEFAULT.findall(text)}
    return {f"env:{name}" for name in names}


def _engine_conf(manifest: Manifest) -> dict[str, Any]:
    conf = {str(k): v for k, v in manifest.engine.spark.conf.items()}
    if manifest.engine.spark.master_url:
        conf["master_url"] = manifest.engine.spark.master_url
    for key, value in manifest.engine.duckdb.model_dump(exclude_none=True).items():
        conf[f"duckdb.{key}"] = value
    return conf
