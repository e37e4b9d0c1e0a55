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
import math
import os
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aqueduct_dagster.blueprint.functions import CallSyntaxError, find_calls
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

#: Settings that count something (partitions, seconds, threads): whole numbers only.
_COUNT_KEYS = frozenset({"spark.sql.shuffle.partitions", "spark.sql.broadcastTimeout", "duckdb.threads"})

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
    #: One per Egress (its id and format), also one that names no place (console, noop).
    outputs: dict[Target, str] = field(default_factory=dict)
    #: Egress module id -> how it writes (format, mode, keys, schema handling, maintenance).
    write_modes: dict[str, str] = field(default_factory=dict)
    #: Assert module id -> its rules (as dicts): the quality checks the Blueprint runs.
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Egress module id -> the Asserts every path of data into it passes.
    guards: dict[str, set[str]] = field(default_factory=dict)
    #: Where a retry policy is set -> its values (the Blueprint's, each module's).
    retry: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: `module 'x' config.key` -> a count or duration the module asks the engine for.
    amounts: dict[str, Any] = field(default_factory=dict)
    #: Module id -> its `on_failure:` block.
    on_failure: dict[str, dict[str, Any]] = field(default_factory=dict)


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
        known = {k: v for k, v in (module.spec.on_failure or {}).items() if k in _RETRY_FIELDS}
        if known:
            effect.retry[f"module '{module.id}' on_failure"] = known
    return effect


_RETRY_FIELDS = frozenset({"max_attempts", "backoff", "deadline_seconds", "on_exhaustion",
                           "transient_errors", "non_transient_errors"})  # fmt: skip


def _enabled(module: CompiledModule) -> bool:
    return module.spec.enabled is True or str(module.spec.enabled).strip().lower() == "true"


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
            if source is not None and source.type != "Probe":
                feeds.setdefault(edge.source, []).append(module.id)
                if source.type == "Assert" and (edge.port or "main") != "main":
                    sides.setdefault(edge.source, []).append(module.id)
    sources = [m.id for m in modules.values() if m.type != "Probe" and not any(
        modules.get(e.source) is not None and modules[e.source].type != "Probe" for e in m.inputs)]  # fmt: skip
    asserts = [m.id for m in modules.values() if m.type == "Assert" and _enabled(m)]
    egresses = [m.id for m in modules.values() if m.type == "Egress"]
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


def _depot_tokens(text: str) -> list[str]:
    if "@aq.depot." not in text:
        return []
    try:
        return [call.text for call in find_calls(text) if call.name.startswith("depot.")]
    except CallSyntaxError:
        return [text]  # unreadable: the whole text stands for it


_DEPOT_READ = re.compile(r"@aq\.depot\.get\(\s*['\"]([^'\"]+)['\"]")
_ENV_DEFAULT = re.compile(r"@aq\.env\(\s*['\"]([^'\"]+)['\"]\s*,\s*([^)]*)\)")
_ENV_NAMES = (
    re.compile(r"@aq\.(env|secret)\(\s*['\"]([^'\"]+)['\"]"),
    re.compile(r"\b(env) ([A-Za-z_][A-Za-z0-9_]*)\b"),
)


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
    values = [m.spec.model_dump(by_alias=True) for m in manifest.modules.values()]
    values.append(manifest.engine.model_dump())
    for value in values:  # secret tokens stay tokens in the Manifest
        for _, text in strings_in(value, ""):
            names |= {name for _, name in _ENV_NAMES[0].findall(text)}
            names |= {f"{name} (default {default.strip()})" for name, default in _ENV_DEFAULT.findall(text)}
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
    for key, value in strings_in(spec.on_failure or {}, "on_failure"):
        leaf = key.rsplit(".", 1)[-1].lower()
        if leaf in ("url", "webhook", "endpoint"):
            effect.writes[Target("url", value)] = f"{where} {key}"
        elif leaf in ("command", "script", "module", "entry", "plugin", "class", "blueprint", "jar"):
            effect.code[Target("code", f"on_failure {leaf} {value}")] = f"{where} {key}"
    for _, text in strings_in(spec.model_dump(by_alias=True), ""):
        for depot_key in _DEPOT_READ.findall(text):
            effect.reads[Target("depot", depot_key)] = f"{where} @aq.depot.get('{depot_key}')"
        # The value (or the default) is pasted into the text as it is when the run starts, so
        # the SQL checker only ever sees a placeholder: each use, with its default, is a read
        # of its own; a patch may neither move one into another module nor change a default.
        for token in _depot_tokens(text):
            effect.reads[Target("depot use", f"{module.id}: {token}")] = f"{where} {token}"
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
                for location, note in _locations(path, base):
                    sink[Target("path", location)] = f"{where} config.path{note}"
        if config.table:
            sink[Target("table", config.table.strip().lower())] = f"{where} config.table"
        if fmt and fmt not in _FILE_FORMATS:
            # A JDBC URL, a Kafka topic, a driver, a statement run on connect: for a non-file
            # source every option but a few tuning knobs says what is read or written where.
            identity = {str(k).strip().lower(): v for k, v in (config.options or {}).items()
                        if str(k).strip().lower() not in _TUNING_OPTIONS}  # fmt: skip
            sink[Target(fmt if fmt in _KNOWN_FORMATS else "source", _canonical(identity))] = f"{where} config.options"
        for key, value in strings_in(config.options, "options"):
            leaf = key.split(".", 1)[-1].strip().lower()
            if leaf in _CODE_OPTIONS:
                effect.code[Target("code", f"{leaf} {value.strip()}")] = f"{where} config.{key}"
                continue
            if re.fullmatch(r"\s*(true|false|-?\d+(\.\d+)?)\s*", value, re.I):
                continue  # a flag or a count (ignoreCorruptFiles, maxFilesPerTrigger), not a place
            if any(word in leaf for word in _WRITTEN_OPTION_WORDS):
                for path in _paths_of(value):
                    for location, note in _locations(path, base):
                        effect.writes[Target("path", location)] = f"{where} config.{key}{note}"
            elif any(word in leaf for word in _PATH_OPTION_WORDS):
                for path in _paths_of(value):
                    for location, note in _locations(path, base):
                        sink[Target("path", location)] = f"{where} config.{key}{note}"
            elif any(word in leaf for word in _ADDRESS_OPTION_WORDS):
                kind = "jdbc" if value.strip().lower().startswith("jdbc:") or fmt == "jdbc" else "url"
                sink[Target(kind, f"{leaf}={value.strip()}")] = f"{where} config.{key}"
        if module.type == "Egress":
            # Every output counts, also one that names no place (console, noop, memory print
            # or drop the rows): a new Egress is a new write target, a removed one a lost output.
            state = "" if _enabled(module) else ", disabled"
            effect.outputs[Target("output", f"module '{module.id}' ({fmt or 'parquet'}{state})")] = where
            effect.write_modes[module.id] = _write_mode(config)
            if config.register_as_table:
                effect.writes[Target("catalog", config.register_as_table.strip().lower())] = f"{where} config.register_as_table"
            if fmt == "depot":
                effect.writes[Target("depot", str(config.key or config.watermark_key))] = f"{where} config.key"
            for rule_key in ("url",):
                value = (config.options or {}).get(rule_key)
                if isinstance(value, str) and fmt not in ("jdbc",):
                    effect.writes[Target("url", value)] = f"{where} config.options.{rule_key}"
    if spec.on_failure:
        effect.on_failure[module.id] = dict(spec.on_failure)
    data = config.model_dump(by_alias=True)
    for key in _AMOUNT_BOUNDS.get(module.type, {}):
        if data.get(key) is not None:
            effect.amounts[f"{where} config.{key}"] = data[key]
    if module.type == "Probe":
        for index, signal in enumerate(config.signals):
            if signal.n is not None:
                effect.amounts[f"{where} config.signals[{index}].n"] = signal.n
    if module.type == "Assert" and _enabled(module):
        effect.checks[module.id] = [rule.model_dump(exclude_none=True) for rule in config.rules]
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

#: Formats that read and write files at `path`; any other names a service (jdbc, kafka...).
_FILE_FORMATS = frozenset(
    {"csv", "json", "parquet", "orc", "avro", "text", "delta", "xml", "binaryfile", "iceberg",
     "hudi", "libsvm", "image", "depot"}
)  # fmt: skip

#: Options of a non-file source that tune how it reads, never what or where.
_TUNING_OPTIONS = frozenset(
    {"fetchsize", "batchsize", "numpartitions", "partitioncolumn", "lowerbound", "upperbound",
     "querytimeout", "pushdownpredicate", "pushdownaggregate", "pushdownlimit",
     "pushdownoffset", "pushdowntablesample", "maxoffsetspertrigger", "mininputpartitions"}
)  # fmt: skip

#: Options that name a class or a library to load (a JDBC driver, a codec, a plugin).
_CODE_OPTIONS = frozenset(
    {"driver", "class", "classname", "driverclass", "plugin", "jar", "jars", "codecclass",
     "connectionprovider", "kafka.sasl.login.callback.handler.class", "serializer",
     "deserializer", "key.serializer", "value.serializer", "partitioner.class"}
)  # fmt: skip

#: Egress keys that decide how rows replace, merge into or delete what is there.
_WRITE_MODE_KEYS = ("format", "mode", "merge_key", "replace_where", "partition_by",
                    "overwrite_schema", "maintenance", "key", "value", "value_expr",
                    "watermark_key")  # fmt: skip


#: Writer options that shape the files' text, never what is replaced or kept (lower case).
#: `mergeSchema` adds columns (the delta_schema_changed rule's fix); `overwriteSchema`,
#: `replaceWhere`, `partitionOverwriteMode`, `txnAppId`... change what survives: a person.
_HARMLESS_WRITE_OPTIONS = frozenset(
    {"mergeschema", "compression", "codec", "header", "sep", "delimiter", "quote", "escape",
     "quoteall", "escapequotes", "encoding", "charset", "nullvalue", "emptyvalue", "dateformat",
     "timestampformat", "timestampntzformat", "linesep", "ignoreleadingwhitespace",
     "ignoretrailingwhitespace", "maxrecordsperfile", "usermetadata"}
)  # fmt: skip


def _write_mode(config: Any) -> str:
    data = config.model_dump(by_alias=True, exclude_none=True)
    mode = {key: data.get(key) for key in _WRITE_MODE_KEYS if data.get(key) is not None}
    options = {str(k).strip().lower(): v for k, v in (config.options or {}).items()
               if str(k).strip().lower() not in _HARMLESS_WRITE_OPTIONS}  # fmt: skip
    if options:
        mode["options"] = options
    return _canonical(mode)


def _canonical(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


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


_GLOB = re.compile(r"[*?\[]")
#: Files looked at under one local folder when checking where its symlinks lead.
_MAX_WALK = 5000
_MAX_PATH = 4096


#: Marks a location reached through a link under a folder (it never widens what may be read).
_VIA_LINK = " (through a symlink under it)"


def _locations(path: str, base: str) -> list[tuple[str, str]]:
    """Every normalized location `path` can reach on this machine.

    Also its percent-decoded form (Hadoop and URL handling may decode `%2e%2e`), what a glob
    matches now (`data/*/x` can match a symlink leading out), and where each symlink under a
    local folder leads (Spark lists a folder and follows links). A folder too large to look
    through gives a marker under no folder, so a new one is refused.
    """
    from urllib.parse import unquote

    variants = [path]
    decoded = unquote(path)
    if decoded != path:
        variants.append(decoded)
    found: list[tuple[str, str]] = []
    for variant in variants:
        if "\x00" in variant or len(variant) > _MAX_PATH:
            found.append((f"unjudgeable path (a NUL character or over {_MAX_PATH} characters): {variant[:200]!r}", ""))
            continue
        location = _norm(variant, base)
        found.append((location, ""))
        if "://" in location or location.startswith("unexpandable"):
            continue
        matches = _glob_matches(location) if _GLOB.search(location) else [location]
        for match in matches:
            resolved, *links = _links_under(match)
            found.append((resolved, ""))
            found.extend((link, _VIA_LINK) for link in links)
    return list(dict.fromkeys(found))


def _glob_matches(pattern: str) -> list[str]:
    import glob

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


def strings_in(value: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    """(dotted key, text) for every string in nested config (lists keep their parent's key)."""
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(item, f"{prefix}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings_in(item, prefix)


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
            # op: select runs `selectExpr` on the names of a mapping as well: each is SQL.
            columns = list(config.columns) if isinstance(config.columns, dict) else config.columns
            yield from exprs("columns", columns)
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
            if "(default " not in name else
            f"the patch changes an @aq.env default to {name.split(':', 1)[1]}; where the variable "
            "is unset the Blueprint would read and write elsewhere: a patch may not change one"
            for name in new_env
        ]  # fmt: skip
    problems: list[str] = []
    for target, where in after.writes.items():
        if target not in before.writes:
            problems.append(
                f"{where}: writes to a new {target.kind} '{target.value}'; a patch may not add a "
                f"write target (the Blueprint writes to: {_listing(before.writes)})"
            )
    # The folder a read reads from: a folder read is that folder, a file read the file's folder.
    # Locations found through links under a folder never widen it (a link to /etc/passwd in
    # the data folder must not make all of /etc readable).
    read_folders = [
        t.value if t.value == "/" or os.path.isdir(t.value) else os.path.dirname(t.value)
        for t, where in before.reads.items() if t.kind == "path" and not where.endswith(_VIA_LINK)
    ]  # fmt: skip
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
    problems += _output_problems(before, after)
    problems += _check_problems(before, after)
    problems += _failure_problems(before, after)
    problems += _amount_problems(before, after)
    return problems


# --------------------------------------------------------------------------- outputs and checks


def _output_problems(before: Effect, after: Effect) -> list[str]:
    """No output lost, none written in a new way (a new mode, merge key or schema handling)."""
    problems = []
    for target, where in after.outputs.items():
        if target not in before.outputs:
            problems.append(f"{where}: adds the output {target.value}; a patch may not add a write target "
                            f"(the Blueprint's outputs: {_listing(before.outputs)})")  # fmt: skip
    for target, where in {**before.writes, **before.outputs}.items():
        if target not in after.writes and target not in after.outputs and target.kind != "checkpoint":
            problems.append(f"{where}: the patch removes the write target {target.kind} '{target.value}'; "
                            "a patch may not remove or move an output: a person must")  # fmt: skip
    for module_id, mode in after.write_modes.items():
        old = before.write_modes.get(module_id)
        if old is not None and old != mode:
            problems.append(f"module '{module_id}': the patch changes how it writes ({old} -> {mode}); a "
                            "patch may not change an Egress's format, mode, keys, replace_where, "
                            "partitioning, schema overwrite or maintenance: a person must")  # fmt: skip
    return problems


#: on_fail actions from the strictest (stops the run) to the weakest.
_ACTION_RANK = {"abort": 4, "quarantine": 3, "trigger_agent": 3, "webhook": 1, "warn": 1}
#: Rule fields where a larger value lets more data through, and where a smaller one does.
_LOOSER_WHEN_LARGER = ("max", "max_age_hours", "fraction")
_LOOSER_WHEN_SMALLER = ("min", "min_pass_rate")


def _check_problems(before: Effect, after: Effect) -> list[str]:
    """Quality checks may be fixed (a renamed column), never removed, loosened or bypassed."""
    problems = []
    for module_id, rules in before.checks.items():
        new_rules = after.checks.get(module_id)
        if new_rules is None:
            problems.append(f"module '{module_id}': the patch removes (or disables) the Assert; a patch "
                            "may not remove a quality check: a person must")  # fmt: skip
            continue
        if len(new_rules) < len(rules):
            problems.append(f"module '{module_id}': the patch removes {len(rules) - len(new_rules)} of its "
                            "rules; a patch may not remove a quality check: a person must")  # fmt: skip
            continue
        for index, (old, new) in enumerate(zip(rules, new_rules, strict=False)):
            problem = _looser_rule(old, new)
            if problem:
                problems.append(f"module '{module_id}' rules[{index}]: {problem}; a patch may not loosen a "
                                "quality check: a person must")  # fmt: skip
    for egress, guards in before.guards.items():
        if egress not in after.guards:
            continue
        bypassed = sorted((guards & set(after.checks)) - after.guards[egress])
        if bypassed:
            problems.append(f"module '{egress}': after the patch, data reaches it without passing the "
                            f"Assert {', '.join(repr(b) for b in bypassed)}; a patch may not route data "
                            "around a quality check")  # fmt: skip
    return problems


def _looser_rule(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    if old.get("type") != new.get("type"):
        return f"its type changes from {old.get('type')} to {new.get('type')}"
    old_action, new_action = _action(old.get("on_fail")), _action(new.get("on_fail"))
    if _ACTION_RANK.get(new_action, 0) < _ACTION_RANK.get(old_action, 0):
        return f"its on_fail changes from {old_action} to {new_action}"
    for key in _LOOSER_WHEN_LARGER + _LOOSER_WHEN_SMALLER:
        if old.get(key) == new.get(key):
            continue
        if new.get(key) is None or old.get(key) is None:
            return f"its `{key}` changes from {old.get(key)} to {new.get(key)}"
        larger = _number(new[key]) > _number(old[key])
        if larger == (key in _LOOSER_WHEN_LARGER):
            return f"its `{key}` loosens from {old[key]} to {new[key]}"
    expr = new.get("expr")
    if isinstance(expr, str) and expr != old.get("expr") and not _reads_a_column(expr):
        return f"its expression `{expr}` reads no column (it checks nothing)"
    if old.get("column") and not new.get("column"):
        return "its `column` is dropped"
    return None


def _action(on_fail: Any) -> str:
    if isinstance(on_fail, Mapping):
        return str(on_fail.get("action") or "abort")
    return str(on_fail or "abort")


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number


def _reads_a_column(expr: str) -> bool:
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(f"SELECT ({expr})", read="spark")
        if tree is not None:
            # `MIN(amount) > 0 OR TRUE` reads a column and still checks nothing.
            from sqlglot.optimizer.simplify import simplify

            tree = simplify(tree)
    except Exception:  # noqa: BLE001 - the SQL policy names a parse error; here: not a check
        return False
    return tree is not None and any(True for _ in tree.find_all(exp.Column))


#: Counts and durations a module asks the engine for, with the range a patch may write
#: (`num_partitions: 1000000000` or a Regulator waiting a year stalls the sandbox and the run).
_AMOUNT_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {
    "Channel": {"num": (1, 10_000), "num_partitions": (1, 10_000)},
    "Egress": {"coalesce": (1, 10_000), "repartition": (1, 10_000)},
    "Regulator": {"timeout_seconds": (0, 86_400), "poll_seconds": (0.1, 3_600)},
}
_SIGNAL_SAMPLE_BOUNDS = (1, 1_000_000)


def _amount_problems(before: Effect, after: Effect) -> list[str]:
    problems = []
    for where, value in after.amounts.items():
        if before.amounts.get(where) == value or isinstance(value, bool):
            continue
        key = where.rsplit(".", 1)[-1]
        low, high = _SIGNAL_SAMPLE_BOUNDS if key == "n" else next(
            (bounds[key] for bounds in _AMOUNT_BOUNDS.values() if key in bounds), (0, math.inf))  # fmt: skip
        if not low <= _number(value) <= high:
            problems.append(f"{where} = {value!r} is outside {low}..{high}; a patch may only set it within these bounds")
    return problems


#: Bounds on retry settings a patch may write (a retry storm is a denial of service).
_RETRY_BOUNDS = {"max_attempts": (1, 10), "base_seconds": (0, 3600), "max_seconds": (0, 86400),
                 "deadline_seconds": (1, 86400)}  # fmt: skip


def _failure_problems(before: Effect, after: Effect) -> list[str]:
    """`on_failure:` holds retry fields only; retry values within bounds."""
    problems = []
    for module_id, block in after.on_failure.items():
        if before.on_failure.get(module_id) == block:
            continue
        others = sorted(str(k) for k in block if k not in _RETRY_FIELDS)
        if others:
            problems.append(f"module '{module_id}' on_failure: keys {', '.join(others)} are not retry "
                            f"settings; a patch may set only {', '.join(sorted(_RETRY_FIELDS))}")  # fmt: skip
    for where, values in after.retry.items():
        if before.retry.get(where) == values:
            continue
        flat = {**values, **(values.get("backoff") or {})} if isinstance(values.get("backoff"), Mapping) else dict(values)
        for key, (low, high) in _RETRY_BOUNDS.items():
            value = flat.get(key)
            if value is None:
                continue
            number = _number(value)
            if isinstance(value, bool) or not (low <= number <= high) or number != int(number):
                problems.append(f"{where}: {key} = {value!r} is outside {low}..{high}; a patch may "
                                "only set retry values within these bounds")  # fmt: skip
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
    if amount is None or not math.isfinite(amount):
        return f"engine config '{key}' = {value!r}: not a number or size (e.g. 200, 4g)"
    if key in _COUNT_KEYS and not (isinstance(value, int) or re.fullmatch(r"\s*-?\d+\s*", str(value))):
        return f"engine config '{key}' = {value!r}: must be a whole number"
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
        try:
            return float(value)
        except OverflowError:
            return math.inf
    text = str(value).strip()
    if len(text) > 64:
        return None
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
