"""Binding the Depot into a Manifest: `@aq.depot.get(key, default)` and `${ctx._watermark}`.

The Depot is cross-run state (key/values and the watermarks of incremental Channels). Its
values come from a store outside this package; what lives here is pure: which keys a
Manifest reads, the key an incremental Channel's watermark is kept under, and the textual
binding of both, run by run, so the compiled Manifest never freezes a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aqueduct_dagster.blueprint.functions import CallSyntaxError, FunctionCall, substitute
from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.blueprint.models import GENERATED_IDS
from aqueduct_dagster.errors import BlueprintError, SourceLocation

#: What `${ctx._watermark}` reads before a Channel's first successful run: a full scan.
FIRST_RUN_WATERMARK = "1900-01-01 00:00:00"
WATERMARK_TOKEN = "${ctx._watermark}"
_RUNTIME_CONTEXT = re.compile(r"\$\{ctx\.(_[^{}]*)\}")

#: What a Depot value may not contain to be pasted into SQL or a path as text.
_UNSAFE_TEXT = re.compile(r"['\"`\\;\r\n]|--|/\*")

#: key -> committed value, or None when the Depot has none.
Lookup = Callable[[str], "str | None"]


def watermark_key(module_id: str) -> str:
    """The Depot key an incremental Channel's high-water mark is kept under."""
    return f"_watermark:{module_id}"


def uses_depot(manifest: Manifest) -> bool:
    """Whether a run of `manifest` reads or writes the Depot at all."""
    for module in manifest.modules.values():
        if module.materializes_incrementally or _is_depot_egress(module):
            return True
        if "@aq.depot." in module.spec.model_dump_json(by_alias=True):
            return True
    return False


def sql_literal(value: str) -> str:
    """`value` as a Spark SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bind_depot(manifest: Manifest, lookup: Lookup) -> Manifest:
    """A copy of `manifest` with Depot reads replaced by this run's committed values.

    `@aq.depot.get('k', 'd')` becomes k's value, else 'd'; with no value and no default it is
    an error naming the module. In an incremental Channel `${ctx._watermark}` becomes its
    last committed watermark as a SQL string literal (the first run reads
    FIRST_RUN_WATERMARK, a full scan).
    """
    if not uses_depot(manifest):
        return manifest
    data = manifest.model_dump(mode="python", by_alias=True)
    for module_id, module in manifest.modules.items():
        watermark = None
        if module.materializes_incrementally:
            watermark = sql_literal(lookup(watermark_key(module_id)) or FIRST_RUN_WATERMARK)
        spec = data["modules"][module_id]["spec"]
        data["modules"][module_id]["spec"] = _bind(spec, module, lookup, watermark)
    return Manifest.model_validate(data, context={GENERATED_IDS: True})


def _bind(value: Any, module: CompiledModule, lookup: Lookup, watermark: str | None) -> Any:
    if isinstance(value, str):
        if watermark is not None and WATERMARK_TOKEN in value:
            value = value.replace(WATERMARK_TOKEN, watermark)
        if "@aq.depot." not in value:
            return value
        try:
            return substitute(value, lambda call: _depot_value(call, module, lookup))
        except CallSyntaxError:  # prose that merely looks like a call
            return value
    if isinstance(value, dict):
        return {key: _bind(item, module, lookup, watermark) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_bind(item, module, lookup, watermark) for item in value)
    return value


def _depot_value(call: FunctionCall, module: CompiledModule, lookup: Lookup) -> str | None:
    if call.name != "depot.get":
        return None
    key = call.args[0]
    value = lookup(key)
    if value is not None:
        if _UNSAFE_TEXT.search(value):
            # Depot values often come from data (the Egress wrote a max or a file name), and
            # `@aq.depot.get` pastes its value into SQL and paths as text: a quote or a comment
            # in it would rewrite the query. Refused, never escaped: we cannot tell the context.
            raise BlueprintError(
                f"the Depot value of '{key}' contains a quote, backslash, semicolon, comment or "
                "line break, and @aq.depot.get pastes it into the module's text as it is",
                location=_where(module),
                module_id=module.id,
                hint="store plain values (dates, numbers, names) in the Depot, or read this one "
                "with ${ctx._watermark}, which is bound as an escaped SQL literal",
            )
        return value
    if len(call.args) > 1:
        return call.args[1]
    raise BlueprintError(
        f"the Depot has no value for '{key}' yet and {call.text} gives no default",
        location=_where(module),
        module_id=module.id,
        hint=f"give a default for the first run: @aq.depot.get('{key}', '...'), "
        "or write the key first with a `format: depot` Egress",
    )


def check_depot(manifest: Manifest) -> None:
    """Raise BlueprintError for Depot use the engine cannot honour (checked at compile time)."""
    for module in manifest.modules.values():
        problem = _depot_problem(module)
        if problem is not None:
            message, hint = problem
            raise BlueprintError(message, location=_where(module), module_id=module.id, hint=hint)


def _depot_problem(module: CompiledModule) -> tuple[str, str] | None:
    if module.materializes_incrementally and not module.spec.watermark_column:
        return (
            "`materialize: incremental` needs a `watermark_column` (the column whose MAX "
            "is kept in the Depot between runs)",
            "add `watermark_column: <column>` next to `materialize:` (a module-level key, "
            "not inside config)",
        )
    if _is_depot_egress(module):
        config = module.config
        if not config.key:
            return ("a `format: depot` Egress needs a `key`", "set config.key: <name>")
        if bool(config.value is not None) == bool(config.value_expr):
            return (
                "a `format: depot` Egress writes exactly one of `value` (text) and "
                "`value_expr` (an aggregate over its input, e.g. MAX(event_ts))",
                "keep one of config.value and config.value_expr",
            )
    text = module.spec.model_dump_json(by_alias=True)
    for name in sorted(set(_RUNTIME_CONTEXT.findall(text))):
        if name != "_watermark":
            return (
                f"unknown run-time context key 'ctx.{name}'",
                "the engine binds only ${ctx._watermark} (in an incremental Channel)",
            )
        if not module.materializes_incrementally:
            return (
                "${ctx._watermark} is bound only in a Channel with `materialize: incremental`",
                "add `materialize: incremental` and `watermark_column: <column>` to this "
                "module, or read a Depot key with @aq.depot.get('key', 'default')",
            )
    return None


def _is_depot_egress(module: CompiledModule) -> bool:
    return module.writes_sink and (module.config.format or "").lower() == "depot"


def _where(module: CompiledModule) -> SourceLocation | None:
    return module.location.as_source() if module.location else None
