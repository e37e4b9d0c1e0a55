"""What one compiled module adds to its Blueprint's effect.

Every module: its SQL and inputs, failure webhooks and handlers, Depot reads, checkpoint,
retry block and engine amounts. Then what its own type's config names (`TYPE_EFFECTS`):
the places an Ingress reads and an Egress writes, an Assert's checks, a Probe's plugins, an
incremental Channel's watermark.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aqueduct_dagster.blueprint.functions import CallSyntaxError, find_calls
from aqueduct_dagster.blueprint.lineage import SINGLE_INPUT_ALIAS
from aqueduct_dagster.blueprint.manifest import CompiledModule
from aqueduct_dagster.healing.effect.bounds import AMOUNT_BOUNDS
from aqueduct_dagster.healing.effect.config_values import (
    canonical,
    is_enabled,
    strings_in,
    webhook_url,
)
from aqueduct_dagster.healing.effect.locations import (
    ADDRESS_OPTION_WORDS,
    PATH_OPTION_WORDS,
    WRITTEN_OPTION_WORDS,
    expanded,
    locations_of,
    paths_of,
)
from aqueduct_dagster.healing.effect.records import Effect, Target
from aqueduct_dagster.healing.effect.sql_values import sql_values

_DEPOT_READ = re.compile(r"@aq\.depot\.get\(\s*['\"]([^'\"]+)['\"]")

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


def module_effect(effect: Effect, module: CompiledModule, base: str, checkpoint_all: bool) -> None:
    """Add what `module` reads, writes and loads to `effect` (paths normalized against `base`)."""
    spec, config = module.spec, module.spec.config
    where = f"module '{module.id}'"
    aliases = {i.alias.lower() for i in module.inputs}
    if len(module.inputs) == 1:
        aliases.add(SINGLE_INPUT_ALIAS)
    effect.inputs[module.id] = aliases
    effect.sql[module.id] = list(sql_values(module))
    if spec.on_failure_webhook:
        effect.writes[Target("url", webhook_url(spec.on_failure_webhook))] = f"{where} on_failure_webhook"
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
    if (checkpoint_all or spec.checkpoint) and module.checkpointable:
        effect.writes[Target("checkpoint", module.id)] = f"{where} checkpoint"
    if spec.on_failure:
        effect.on_failure[module.id] = dict(spec.on_failure)
    data = config.model_dump(by_alias=True)
    for key in AMOUNT_BOUNDS.get(module.type, {}):
        if data.get(key) is not None:
            effect.amounts[f"{where} config.{key}"] = data[key]
    type_effect = TYPE_EFFECTS.get(module.type)
    if type_effect is not None:
        type_effect(effect, module, base, where)


def _depot_tokens(text: str) -> list[str]:
    if "@aq.depot." not in text:
        return []
    try:
        return [call.text for call in find_calls(text) if call.name.startswith("depot.")]
    except CallSyntaxError:
        return [text]  # unreadable: the whole text stands for it


# --------------------------------------------------------------------------- by module type


def _ingress_effect(effect: Effect, module: CompiledModule, base: str, where: str) -> None:
    _data_location(effect, module, base, where, effect.reads)


def _egress_effect(effect: Effect, module: CompiledModule, base: str, where: str) -> None:
    config = module.spec.config
    fmt = _data_location(effect, module, base, where, effect.writes)
    # Every output counts, also one that names no place (console, noop, memory print or
    # drop the rows): a new Egress is a new write target, a removed one a lost output.
    state = "" if is_enabled(module) else ", disabled"
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


def _data_location(effect: Effect, module: CompiledModule, base: str, where: str,
                   sink: dict[Target, str]) -> str:  # fmt: skip
    """Where an Ingress reads or an Egress writes (into `sink`), and the code its format or
    options load; answers the format (lower case)."""
    config = module.spec.config
    fmt = (config.format or "").lower()
    if getattr(config, "class_", None):
        # A custom data source is the author's Python class (engine/modules/ingress.py),
        # counted per module: a patch may not hand one to another module either.
        scope = f" in module '{module.id}'" if fmt == "custom" else ""
        effect.code[Target("code", f"class {config.class_}{scope}")] = f"{where} config.class"
    if fmt and fmt not in _KNOWN_FORMATS:
        # Spark loads a data source named by its class: an unknown format is code.
        effect.code[Target("code", f"data source format {fmt}")] = f"{where} config.format"
    if config.path:
        for path in expanded(config.path):
            for location, note in locations_of(path, base):
                sink[Target("path", location)] = f"{where} config.path{note}"
    if config.table:
        sink[Target("table", config.table.strip().lower())] = f"{where} config.table"
    if fmt and fmt not in _FILE_FORMATS:
        # A JDBC URL, a Kafka topic, a driver, a statement run on connect: for a non-file
        # source every option but a few tuning knobs says what is read or written where.
        identity = {str(k).strip().lower(): v for k, v in (config.options or {}).items()
                    if str(k).strip().lower() not in _TUNING_OPTIONS}  # fmt: skip
        sink[Target(fmt if fmt in _KNOWN_FORMATS else "source", canonical(identity))] = f"{where} config.options"
    for key, value in strings_in(config.options, "options"):
        leaf = key.split(".", 1)[-1].strip().lower()
        if leaf in _CODE_OPTIONS:
            effect.code[Target("code", f"{leaf} {value.strip()}")] = f"{where} config.{key}"
            continue
        if re.fullmatch(r"\s*(true|false|-?\d+(\.\d+)?)\s*", value, re.I):
            continue  # a flag or a count (ignoreCorruptFiles, maxFilesPerTrigger), not a place
        if any(word in leaf for word in WRITTEN_OPTION_WORDS):
            for path in paths_of(value):
                for location, note in locations_of(path, base):
                    effect.writes[Target("path", location)] = f"{where} config.{key}{note}"
        elif any(word in leaf for word in PATH_OPTION_WORDS):
            for path in paths_of(value):
                for location, note in locations_of(path, base):
                    sink[Target("path", location)] = f"{where} config.{key}{note}"
        elif any(word in leaf for word in ADDRESS_OPTION_WORDS):
            kind = "jdbc" if value.strip().lower().startswith("jdbc:") or fmt == "jdbc" else "url"
            sink[Target(kind, f"{leaf}={value.strip()}")] = f"{where} config.{key}"
    return fmt


def _write_mode(config: Any) -> str:
    data = config.model_dump(by_alias=True, exclude_none=True)
    mode = {key: data.get(key) for key in _WRITE_MODE_KEYS if data.get(key) is not None}
    options = {str(k).strip().lower(): v for k, v in (config.options or {}).items()
               if str(k).strip().lower() not in _HARMLESS_WRITE_OPTIONS}  # fmt: skip
    if options:
        mode["options"] = options
    return canonical(mode)


def _assert_effect(effect: Effect, module: CompiledModule, base: str, where: str) -> None:
    config = module.spec.config
    if is_enabled(module):
        effect.checks[module.id] = [rule.model_dump(exclude_none=True) for rule in config.rules]
    for index, rule in enumerate(config.rules):
        if rule.fn:
            # The author's function (engine/modules/assertion.py), counted per module: a patch
            # may not run it on another module's frame either.
            effect.code[Target("code", f"assert fn {rule.fn} in module '{module.id}'")] = f"{where} rules[{index}].fn"
        on_fail = rule.on_fail
        if on_fail is not None and not isinstance(on_fail, str) and on_fail.url:
            effect.writes[Target("url", on_fail.url)] = f"{where} rules[{index}].on_fail.url"


def _probe_effect(effect: Effect, module: CompiledModule, base: str, where: str) -> None:
    signals = module.spec.config.signals
    for index, signal in enumerate(signals):
        if signal.n is not None:
            effect.amounts[f"{where} config.signals[{index}].n"] = signal.n
    for index, signal in enumerate(signals):
        for attr in ("module", "entry", "plugin"):
            value = getattr(signal, attr)
            if value:
                effect.code[Target("code", f"probe {attr} {value}")] = f"{where} signals[{index}].{attr}"


def _channel_effect(effect: Effect, module: CompiledModule, base: str, where: str) -> None:
    if module.materializes_incrementally:
        effect.writes[Target("depot", f"watermark of {module.id}")] = f"{where} materialize"


#: Module type -> what its own config adds to the effect. A type whose config names places,
#: code or checks adds one line here; Junction, Funnel and Regulator add nothing of their own.
TYPE_EFFECTS: dict[str, Callable[[Effect, CompiledModule, str, str], None]] = {
    "Ingress": _ingress_effect,
    "Channel": _channel_effect,
    "Egress": _egress_effect,
    "Assert": _assert_effect,
    "Probe": _probe_effect,
}
