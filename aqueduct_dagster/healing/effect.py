"""What a compiled Blueprint does to the world, and whether a patch may change it.

A patch can name a location in many ways: `path`, `options.path`, a context value, an
`@aq.env(...)` or a macro, an Egress `table:`, a whole new module. Judging the patch text
misses some of them; judging the compiled Manifest cannot, because every route ends there.
`compiled_effect` lists every location a Manifest reads and writes (normalized: absolute,
`..` and symlinks resolved), the code it loads and its engine conf; `judge_effect` compares
the unpatched with the patched effect under the guardrail policy and answers the problems,
each naming the location and what would pass.

Default policy (no configuration): no new write target of any kind, a new read lies under a
folder the Blueprint already reads from, no new code location, engine conf changes only for
allowlisted keys with values under a ceiling.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aqueduct_dagster.blueprint.lineage import SINGLE_INPUT_ALIAS, analysable_sql
from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.healing.sql_policy import SqlKind, sql_problem, tables_read

#: Spark settings a patch may change, with the largest value it may set (operators change
#: a ceiling with `agent.guardrails.engine_conf_ceilings` in aqueduct.yml). A bool ceiling
#: means "true or false"; a size is bytes ("16g"); None means any value of the key's kind.
DEFAULT_ENGINE_CEILINGS: dict[str, Any] = {
    "spark.sql.shuffle.partitions": 4000,
    "spark.driver.maxResultSize": "8g",
    "spark.sql.autoBroadcastJoinThreshold": "1g",
    "spark.sql.broadcastTimeout": 3600,
    "spark.sql.adaptive.enabled": True,
    "spark.sql.adaptive.skewJoin.enabled": True,
    "spark.sql.files.maxPartitionBytes": "2g",
    "spark.executor.memory": "64g",
    "spark.executor.memoryOverhead": "16g",
    "spark.driver.memory": "32g",
    "duckdb.memory_limit": "64g",
    "duckdb.threads": 64,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.I)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_RUNTIME = re.compile(r"@aq\.(run|date)\.[\w.]*\([^)]*\)|\$\{ctx\._[^{}]*\}")


@dataclass(frozen=True)
class Target:
    """One location: `kind` (path, table, jdbc, url, catalog, checkpoint, depot, code, hook)."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class SqlValue:
    where: str
    text: str
    kind: SqlKind


@dataclass
class Effect:
    """Every location a compiled Blueprint touches; each maps to where it is configured."""

    reads: dict[Target, str] = field(default_factory=dict)
    writes: dict[Target, str] = field(default_factory=dict)
    code: dict[Target, str] = field(default_factory=dict)
    engine_conf: dict[str, Any] = field(default_factory=dict)
    #: module id -> its SQL-bearing values, compiled.
    sql: dict[str, list[SqlValue]] = field(default_factory=dict)
    #: module id -> names its SQL may read (input aliases).
    inputs: dict[str, set[str]] = field(default_factory=dict)
    udfs: set[str] = field(default_factory=set)
    #: Environment variables and secrets the compiled values were made from (names only).
    env: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class EffectPolicy:
    allowed_paths: Sequence[str] = ()
    denied_paths: Sequence[str] = ()
    engine_ceilings: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_ENGINE_CEILINGS))

    @classmethod
    def from_settings(cls, agent_guardrails: Any = None, operator: Any = None) -> EffectPolicy:
        """The Blueprint's `agent.guardrails` and the operator's (aqueduct.yml) combined.

        Denials add up; allowed paths narrow (both must allow); ceilings are the operator's.
        """
        allowed = list(getattr(agent_guardrails, "allowed_paths", None) or [])
        allowed += list(getattr(operator, "allowed_paths", None) or [])
        denied = list(getattr(agent_guardrails, "deny_patterns", None) or [])
        denied += list(getattr(agent_guardrails, "denied_paths", None) or [])
        denied += list(getattr(operator, "denied_paths", None) or [])
        # The operator moves ceilings; which keys a patch may set at all is fixed in code.
        ceilings = dict(DEFAULT_ENGINE_CEILINGS)
        for key, value in (getattr(operator, "engine_conf_ceilings", None) or {}).items():
            if key in ceilings:
                ceilings[key] = value
        return cls(tuple(allowed), tuple(denied), ceilings)


# --------------------------------------------------------------------------- effect


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
             ("jar", udf.jar), ("path", _norm(udf.path, base) if udf.path else None))
            if value
        )  # fmt: skip
        effect.code[Target("code", f"udf {udf.id}: {described}")] = f"udf_registry '{udf.id}'"
    for kind, hooks in manifest.hooks:
        for index, hook in enumerate(hooks):
            where = f"hooks.{kind}[{index}]"
            if hook.command:
                effect.code[Target("code", f"hook command: {hook.command}")] = where
            if hook.blueprint:
                effect.code[Target("code", f"hook blueprint: {_norm(hook.blueprint, base)}")] = where
            if hook.webhook:
                effect.writes[Target("url", _webhook(hook.webhook))] = where
    for module in manifest.modules.values():
        _module_effect(effect, module, base, manifest.checkpoint)
    effect.env = _environment_names(manifest)
    return effect


_DEPOT_READ = re.compile(r"@aq\.depot\.get\(\s*['\"]([^'\"]+)['\"]")
_ENV_NAMES = (
    re.compile(r"@aq\.(env|secret)\(\s*['\"]([^'\"]+)['\"]"),
    re.compile(r"\b(env) ([A-Za-z_][A-Za-z0-9_]*)\b"),
)


def _environment_names(manifest: Manifest) -> set[str]:
    """`env:NAME` for each variable a value came from or a secret token names (names only)."""
    names: set[str] = set()
    for provenance in manifest.provenance.values():
        detail = provenance.detail or ""
        if provenance.source in ("env", "secret") and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", detail):
            names.add(detail)  # a value from one `${NAME}`: the detail is the bare name
        names |= {name for _, name in _ENV_NAMES[0].findall(detail)}
        names |= {name for _, name in _ENV_NAMES[1].findall(detail)}
    values = [m.spec.model_dump(by_alias=True) for m in manifest.modules.values()]
    values.append(manifest.engine.model_dump())
    for value in values:  # secret tokens stay tokens in the Manifest
        for _, text in _strings(value, ""):
            names |= {name for _, name in _ENV_NAMES[0].findall(text)}
    return {f"env:{name}" for name in names}


def _module_effect(effect: Effect, module: CompiledModule, base: str, checkpoint_all: bool) -> None:
    spec, config = module.spec, module.spec.config
    where = f"module '{module.id}'"
    aliases = {i.alias.lower() for i in module.inputs}
    if len(module.inputs) == 1:
        aliases.add(SINGLE_INPUT_ALIAS)
    effect.inputs[module.id] = aliases
    effect.sql[module.id] = list(_sql_values(module))
    if spec.on_failure_webhook:
        effect.writes[Target("url", _webhook(spec.on_failure_webhook))] = f"{where} on_failure_webhook"
    for key, value in _strings(spec.on_failure or {}, "on_failure"):
        leaf = key.rsplit(".", 1)[-1].lower()
        if leaf in ("url", "webhook", "endpoint"):
            effect.writes[Target("url", value)] = f"{where} {key}"
        elif leaf in ("command", "script", "module", "entry", "plugin", "class", "blueprint", "jar"):
            effect.code[Target("code", f"on_failure {leaf} {value}")] = f"{where} {key}"
    for _, text in _strings(spec.model_dump(by_alias=True), ""):
        for depot_key in _DEPOT_READ.findall(text):
            effect.reads[Target("depot", depot_key)] = f"{where} @aq.depot.get('{depot_key}')"
    if (checkpoint_all or spec.checkpoint) and module.type not in ("Egress", "Probe"):
        effect.writes[Target("checkpoint", module.id)] = f"{where} checkpoint"
    if module.type in ("Ingress", "Egress"):
        sink = effect.reads if module.type == "Ingress" else effect.writes
        fmt = (config.format or "").lower()
        if getattr(config, "class_", None):
            effect.code[Target("code", f"class {config.class_}")] = f"{where} config.class"
        if fmt and fmt not in _KNOWN_FORMATS:
            # Spark loads a data source named by its class: an unknown format is code.
            effect.code[Target("code", f"data source format {fmt}")] = f"{where} config.format"
        if config.path:
            for path in _expanded(config.path):
                sink[Target("path", _norm(path, base))] = f"{where} config.path"
        if config.table:
            sink[Target("table", config.table.strip().lower())] = f"{where} config.table"
        for key, value in _strings(config.options, "options"):
            leaf = key.split(".", 1)[-1].lower()
            if re.fullmatch(r"\s*(true|false|-?\d+(\.\d+)?)\s*", value, re.I):
                continue  # a flag or a count (ignoreCorruptFiles, maxFilesPerTrigger), not a place
            if any(word in leaf for word in _WRITTEN_OPTION_WORDS):
                for path in _paths_of(value):
                    effect.writes[Target("path", _norm(path, base))] = f"{where} config.{key}"
            elif any(word in leaf for word in _PATH_OPTION_WORDS):
                for path in _paths_of(value):
                    sink[Target("path", _norm(path, base))] = f"{where} config.{key}"
            elif any(word in leaf for word in _ADDRESS_OPTION_WORDS):
                kind = "jdbc" if value.strip().lower().startswith("jdbc:") or fmt == "jdbc" else "url"
                sink[Target(kind, f"{leaf}={value.strip()}")] = f"{where} config.{key}"
        if module.type == "Egress":
            if config.register_as_table:
                effect.writes[Target("catalog", config.register_as_table.strip().lower())] = f"{where} config.register_as_table"
            if fmt == "depot":
                effect.writes[Target("depot", str(config.key or config.watermark_key))] = f"{where} config.key"
            for rule_key in ("url",):
                value = (config.options or {}).get(rule_key)
                if isinstance(value, str) and fmt not in ("jdbc",):
                    effect.writes[Target("url", value)] = f"{where} config.options.{rule_key}"
    if module.type == "Assert":
        for index, rule in enumerate(config.rules):
            if rule.fn:
                effect.code[Target("code", f"assert fn {rule.fn}")] = f"{where} rules[{index}].fn"
            on_fail = rule.on_fail
            if on_fail is not None and not isinstance(on_fail, str) and on_fail.url:
                effect.writes[Target("url", on_fail.url)] = f"{where} rules[{index}].on_fail.url"
    if module.type == "Probe":
        for index, signal in enumerate(config.signals):
            for attr in ("module", "entry", "plugin"):
                value = getattr(signal, attr)
                if value:
                    effect.code[Target("code", f"probe {attr} {value}")] = f"{where} signals[{index}].{attr}"
    if module.type == "Channel" and getattr(module.spec, "materialize", None) == "incremental":
        effect.writes[Target("depot", f"watermark of {module.id}")] = f"{where} materialize"


#: Data source formats Spark and this project ship; any other name is a class to load.
_KNOWN_FORMATS = frozenset(
    {"csv", "json", "parquet", "orc", "avro", "text", "delta", "jdbc", "xml", "binaryfile",
     "depot", "iceberg", "hudi", "kafka", "console", "noop", "memory", "libsvm", "image", "table"}
)  # fmt: skip

#: Reader/writer option names (lower case, by substring) that name a location.
_WRITTEN_OPTION_WORDS = ("checkpoint", "badrecord", "archive", "output", "staging", "tempdir")
_PATH_OPTION_WORDS = ("path", "dir", "location", "file", "folder", "prefix", "glob")
_ADDRESS_OPTION_WORDS = (
    "url", "uri", "dbtable", "table", "query", "host", "endpoint", "server", "bucket",
    "topic", "subscribe", "assign", "address", "port", "catalog", "database", "collection",
)  # fmt: skip

_MAX_EXPANSIONS = 64


def names_a_location(option_key: str) -> bool:
    """Whether a reader/writer option (by name) names a place to read or write."""
    key = str(option_key).lower()
    return any(word in key for word in _WRITTEN_OPTION_WORDS + _PATH_OPTION_WORDS + _ADDRESS_OPTION_WORDS)


def _paths_of(value: str) -> list[str]:
    """The paths an option names: a JSON list (Spark's `paths`), comma-separated, or one."""
    text = value.strip()
    if text.startswith("["):
        import json

        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [p for item in items for p in _expanded(str(item))]
    parts = [p.strip() for p in text.split(",") if p.strip()] if "{" not in text else [text]
    return [p for part in parts for p in _expanded(part)]


def _expanded(path: str) -> list[str]:
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


def _strings(value: Any, prefix: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{prefix}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, prefix)


def _webhook(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("url") or sorted(value.items()))
    return str(value)


def _engine_conf(manifest: Manifest) -> dict[str, Any]:
    conf = {str(k): v for k, v in manifest.engine.spark.conf.items()}
    if manifest.engine.spark.master_url:
        conf["master_url"] = manifest.engine.spark.master_url
    for key, value in manifest.engine.duckdb.model_dump(exclude_none=True).items():
        conf[f"duckdb.{key}"] = value
    return conf


def _norm(path: str, base: str) -> str:
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


def _is_under(path: str, folder: str) -> bool:
    """`path` is `folder` or inside it, compared component by component (globs allowed in `folder`)."""
    inner, outer = _components(path), _components(folder)
    return len(inner) >= len(outer) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(inner, outer, strict=False))


def _denied_by(path: str, pattern: str, base: str) -> bool:
    """A denied pattern: absolute -> a prefix; with a '/' -> a run of components; else any component."""
    components = _components(path)
    if os.path.isabs(pattern) or "://" in pattern:
        return _is_under(path, _norm_pattern(pattern, base))
    wanted = [p for p in pattern.split("/") if p]
    if not wanted:
        return False
    return any(
        all(fnmatch.fnmatchcase(components[start + i], wanted[i]) for i in range(len(wanted)))
        for start in range(len(components) - len(wanted) + 1)
    )


def _norm_pattern(pattern: str, base: str) -> str:
    if any(ch in pattern for ch in "*?["):
        # Resolve the literal head only; the glob components match as written.
        head, _, tail = pattern.partition("*")
        folder = head.rsplit("/", 1)[0] if "/" in head else ""
        rest = pattern[len(folder):].lstrip("/")
        return os.path.join(_norm(folder or ".", base), rest)
    return _norm(pattern, base)


# --------------------------------------------------------------------------- SQL values

_SORT_SUFFIX = re.compile(r"\s+(asc|desc)?(\s+nulls\s+(first|last))?\s*$", re.I)


def _sql_values(module: CompiledModule) -> Iterable[SqlValue]:
    """Every SQL-bearing value of a compiled module (a query, or an expression)."""
    config, where = module.spec.config, f"module '{module.id}' config"
    data = config.model_dump(by_alias=True)

    def exprs(key: str, value: Any, *, strip_sort: bool = False) -> Iterable[SqlValue]:
        if isinstance(value, str) and value.strip() and value.strip() != "_else_":
            text = _SORT_SUFFIX.sub("", value) if strip_sort else value
            yield SqlValue(f"{where}.{key}", analysable_sql(text), "expression")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from exprs(f"{key}[{index}]", item, strip_sort=strip_sort)

    if module.spec.spillway:
        yield from exprs("spillway", module.spec.spillway)
    if module.type == "Channel":
        if config.query:
            yield SqlValue(f"{where}.query", analysable_sql(config.query), "query")
        for key in ("condition", "expr", "spillway_condition", "col", "column"):
            yield from exprs(key, data.get(key))
        op = config.op
        if op == "select" or isinstance(config.columns, list):
            yield from exprs("columns", config.columns if not isinstance(config.columns, dict) else None)
            yield from exprs("cols", config.cols)
        if op in ("sort",):
            yield from exprs("order_by", config.order_by, strip_sort=True)
        yield from exprs("key", config.key)
    elif module.type == "Ingress":
        yield from exprs("partition_filters", config.partition_filters)
    elif module.type == "Egress":
        yield from exprs("value_expr", config.value_expr)
        yield from exprs("replace_where", config.replace_where)
    elif module.type == "Junction":
        yield from exprs("partition_key", config.partition_key)
        for index, branch in enumerate(config.branches):
            yield from exprs(f"branches[{index}].condition", branch.condition)
    elif module.type == "Assert":
        for index, rule in enumerate(config.rules):
            yield from exprs(f"rules[{index}].expr", rule.expr)
    elif module.type == "Probe":
        for index, signal in enumerate(config.signals):
            for key in ("expr", "sql", "passed_when"):
                yield from exprs(f"signals[{index}].{key}", getattr(signal, key))


def _tables_read(values: Sequence[SqlValue]) -> set[str]:
    """Tables a module's queries already read (catalog tables its author wired in)."""
    found: set[str] = set()
    for value in values:
        if value.kind == "query":
            found |= tables_read(value.text)
    return found


# --------------------------------------------------------------------------- judging


def judge_effect(before: Effect, after: Effect, policy: EffectPolicy | None = None,
                 base_dir: str | Path | None = None) -> list[str]:  # fmt: skip
    """Problems with going from `before` to `after` (empty: the patch may have this effect)."""
    policy = policy or EffectPolicy()
    base = str(base_dir) if base_dir is not None else os.getcwd()
    new_env = sorted(after.env - before.env)
    if new_env:
        # Alone, and by name only: another message could quote the value it resolved to.
        return [
            f"the patch makes the Blueprint read environment variable or secret "
            f"'{name.split(':', 1)[1]}', which it did not use before; a patch may not add one"
            for name in new_env
        ]
    problems: list[str] = []
    for target, where in after.writes.items():
        if target not in before.writes:
            problems.append(
                f"{where}: writes to a new {target.kind} '{target.value}'; a patch may not add a "
                f"write target (the Blueprint writes to: {_listing(before.writes)})"
            )
    read_folders = [os.path.dirname(t.value) if t.value != "/" else "/" for t in before.reads if t.kind == "path"]
    for target, where in after.reads.items():
        if target in before.reads:
            continue
        if target.kind != "path":
            problems.append(f"{where}: reads a new {target.kind} '{target.value}'; a patch may only read "
                            f"what the Blueprint already reads ({_listing(before.reads)})")  # fmt: skip
            continue
        if not any(_is_under(target.value, folder) for folder in read_folders):
            problems.append(
                f"{where}: reads '{target.value}', outside every folder the Blueprint already reads "
                f"from ({', '.join(sorted(set(read_folders))) or 'none'}); keep the new path inside one of them"
            )
        elif policy.allowed_paths and not any(_is_under(target.value, _norm_pattern(p, base)) for p in policy.allowed_paths):
            problems.append(f"{where}: reads '{target.value}', outside agent.guardrails.allowed_paths "
                            f"({', '.join(policy.allowed_paths)})")  # fmt: skip
    for targets, old in ((after.reads, before.reads), (after.writes, before.writes)):
        for target, where in targets.items():
            if target in old or target.kind != "path":
                continue
            for pattern in policy.denied_paths:
                if _denied_by(target.value, pattern, base):
                    problems.append(f"{where}: '{target.value}' matches the denied path pattern '{pattern}'")
    for target, where in after.code.items():
        if target not in before.code:
            problems.append(f"{where}: loads new code ({target.value}); a patch may not add or change "
                            "code locations (UDFs, classes, hooks, plugins): a person must")  # fmt: skip
    problems += _engine_problems(before.engine_conf, after.engine_conf, policy.engine_ceilings)
    problems += _sql_problems(before, after)
    return problems


def _engine_problems(before: Mapping[str, Any], after: Mapping[str, Any], ceilings: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        if key not in ceilings:
            problems.append(f"engine config '{key}' may not be changed by a patch (allowed keys: "
                            f"{', '.join(sorted(ceilings))})")  # fmt: skip
            continue
        if key not in after:
            continue  # back to the engine default
        problem = _bounded(key, after[key], ceilings[key])
        if problem:
            problems.append(problem)
    return problems


def _bounded(key: str, value: Any, ceiling: Any) -> str | None:
    if isinstance(ceiling, bool) or ceiling is None:
        if ceiling is None or str(value).strip().lower() in ("true", "false"):
            return None
        return f"engine config '{key}' = {value!r}: must be true or false"
    limit = _size(ceiling)
    amount = _size(value)
    if limit is None:
        return f"engine config '{key}': the ceiling {ceiling!r} in aqueduct.yml is not a number or size"
    if amount is None:
        return f"engine config '{key}' = {value!r}: not a number or size (e.g. 200, 4g)"
    if amount == -1 and key == "spark.sql.autoBroadcastJoinThreshold":
        return None  # -1 switches broadcasting off
    if amount <= 0 or amount > limit:
        return (f"engine config '{key}' = {value!r} is outside 1..{ceiling} (the ceiling; an operator "
                "raises it with agent.guardrails.engine_conf_ceilings in aqueduct.yml)")  # fmt: skip
    return None


def _size(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return float(text)
    match = _SIZE.match(text)
    if not match:
        return None
    return float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def _sql_problems(before: Effect, after: Effect) -> list[str]:
    """The SQL policy on every module whose compiled SQL-bearing values changed."""
    problems = []
    for module_id, values in after.sql.items():
        old_values = before.sql.get(module_id)
        if old_values == values and before.inputs.get(module_id) == after.inputs.get(module_id):
            continue
        tables = after.inputs.get(module_id, set()) | _tables_read(old_values or [])
        for value in values:
            if old_values and value in old_values:
                continue
            problem = sql_problem(value.text, kind=value.kind, tables=tables, udfs=after.udfs)
            if problem:
                problems.append(f"{value.where}: {problem}")
    return problems


def sql_problems_of(manifest: Manifest, baseline: Manifest | None = None) -> list[str]:
    """The SQL policy on every SQL value of `manifest`, before anything executes it.

    Tables allowed: each module's inputs, plus what the same module read in `baseline` (the
    unpatched Manifest, already trusted) and catalog names its own Egresses register.
    """
    after = compiled_effect(manifest)
    before = compiled_effect(baseline) if baseline is not None else Effect()
    registered = {t.value for t in after.writes if t.kind == "catalog"}
    problems = []
    for module_id, values in after.sql.items():
        tables = after.inputs.get(module_id, set()) | registered | _tables_read(before.sql.get(module_id, []))
        for value in values:
            problem = sql_problem(value.text, kind=value.kind, tables=tables, udfs=after.udfs)
            if problem:
                problems.append(f"{value.where}: {problem}")
    return problems


def _listing(targets: Mapping[Target, str]) -> str:
    return ", ".join(sorted(f"{t.kind} {t.value}" for t in targets)) or "nothing"
