"""Resolve macros, `${ctx.*}`, `${ENV}` and `@aq.*` in a Blueprint's strings.

Every string is scanned once, left to right; substituted text is never re-scanned (an env
value containing `${...}` stays as it is), except macro bodies and context values, which are
templates themselves and are resolved with the same rules. Each final value keeps a list of
the sources it was built from, which becomes the Manifest's provenance.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aqueduct_dagster.blueprint.functions import (
    FUNCTIONS,
    CallSyntaxError,
    CompileFacts,
    FunctionCall,
    call_at,
    check_call,
    evaluate_compile_time,
)
from aqueduct_dagster.blueprint.loader import BlueprintDocument
from aqueduct_dagster.blueprint.manifest import Location, Provenance
from aqueduct_dagster.blueprint.suggest import did_you_mean, one_of
from aqueduct_dagster.blueprint.work import count
from aqueduct_dagster.errors import BlueprintError, SourceLocation

#: The scanner's tokens. Each alternative is bounded by a character it cannot contain (or, for
#: a macro, ends where its name ends), so one left-to-right pass over a string is linear;
#: a macro's arguments are found by one forward search (see _macro_call).
_TOKEN = re.compile(
    r"(?P<macro>\{\{\s*macros\.(?P<macro_name>[A-Za-z_][\w-]*)\s*)"
    r"|(?P<placeholder>\$\{(?P<inner>[^{}]*)\})"
    r"|(?P<function>@aq\.)",
    re.DOTALL,
)
#: Work the scanner may do for one Blueprint, macro expansions included: characters read and
#: written plus TEMPLATE_CALL_COST per string and TEMPLATE_TOKEN_COST per resolved token; at
#: least this, else 3x the file's length, plus TEMPLATE_CALL_COST per value in the file.
MAX_TEMPLATE_WORK = 2_000_000
TEMPLATE_CALL_COST = 64
TEMPLATE_TOKEN_COST = 256
#: Deepest chain of `${ctx.a}` -> `${ctx.b}` -> ... (nested context mappings count as levels)
#: and of macros using macros: each level is a few Python frames, so this keeps resolution
#: far from the interpreter's recursion limit.
MAX_REFERENCE_DEPTH = 64
_MACRO_CLOSE = re.compile(r"\)\s*\}\}")
_WHOLE_CONTEXT = re.compile(r"\$\{ctx\.([^{}]+)\}")
_MACRO_PARAMETER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")
_ENV_PLACEHOLDER = re.compile(r"(?P<name>[A-Za-z_]\w*)(?::-?(?P<default>.*))?", re.DOTALL)
_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")

#: Filled in by the webhook/hook runner, not by us (see the template's on_failure_webhook).
WEBHOOK_VARIABLES = frozenset(
    {
        "run_id", "blueprint_id", "blueprint_name", "module_id", "failed_module",
        "error_message", "error_type", "started_at", "module_count", "attempt",
        "root_cause", "rationale", "patch_id", "confidence", "category",
    }
)  # fmt: skip

#: Most specific first: what this run chose (CLI, profile) beats what the file says; a
#: secret always shows as a secret so nobody copies its token into a literal.
_SOURCE_RANK = (
    "secret", "context_override", "profile", "macro", "context", "env", "default",
    "function", "runtime", "literal",
)  # fmt: skip

#: Prose fields: their `${...}` text documents syntax, it is not a template.
_RAW_TOP_LEVEL = frozenset(
    {"aqueduct", "id", "description", "context", "context_profiles", "macros",
     "required_context", "healed_by"}
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    kind: str
    detail: str


@dataclass(frozen=True)
class Resolution:
    value: Any
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class _Origin:
    """Which context layer set a key, and where in the file (None for --ctx overrides)."""

    kind: str  # context | profile | context_override
    path: tuple[Any, ...] | None


@dataclass(frozen=True)
class _Where:
    """The string being resolved, for error messages and locations."""

    path: tuple[Any, ...] | None
    label: str
    module_id: str | None = None
    webhook: bool = False
    #: Offsets in the text are offsets in the document's scalar (not a macro body).
    exact: bool = True


@dataclass
class TemplatedBlueprint:
    data: dict[str, Any]
    #: Document path (tuple) of every resolved leaf -> where its value came from.
    provenance: dict[tuple[Any, ...], Provenance] = field(default_factory=dict)
    #: Dotted context key -> where its value came from.
    context_provenance: dict[str, Provenance] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateSettings:
    facts: CompileFacts
    context_overrides: Mapping[str, Any] = field(default_factory=dict)
    profile: str | None = None
    #: Resolved context below the file's own `context:` (an Arcade's parent context).
    inherited_context: Mapping[str, Any] = field(default_factory=dict)
    #: The Arcade whose `context_override` these overrides are (None: they came from --ctx).
    arcade: str | None = None


def resolve_templates(
    document: BlueprintDocument, settings: TemplateSettings
) -> TemplatedBlueprint:
    """Resolve every template in the document; raise BlueprintError on the first problem."""
    return _Templater(document, settings).run()


def as_text(value: Any) -> str:
    """How a context value reads when spliced into a longer string."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, type(None), dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def provenance_of(
    sources: tuple[Source, ...],
    location: SourceLocation | None,
    candidates: tuple[Source, ...] | None = None,
) -> Provenance:
    """One Provenance: the most specific source, with every source listed when several.

    `candidates` narrows which sources may be the primary one (default: all of them).
    """
    unique = list(dict.fromkeys(sources))
    where = (
        Location(file=location.file, line=location.line, column=location.column)
        if location
        else None
    )
    if not unique:
        return Provenance(source="literal", location=where)
    primary = min(candidates or unique, key=lambda s: _SOURCE_RANK.index(s.kind))
    if len(unique) == 1:
        detail = primary.detail
    else:
        detail = ", ".join(f"{s.kind} {s.detail}" for s in unique)
    return Provenance(source=primary.kind, detail=detail, location=where)


class _Templater:
    def __init__(self, document: BlueprintDocument, settings: TemplateSettings) -> None:
        self.document = document
        self.settings = settings
        self.facts = settings.facts
        self.macros = self._mapping_field("macros")
        for name, body in self.macros.items():
            if not isinstance(body, str):
                raise BlueprintError(
                    f"macro '{name}' must be text (a SQL fragment), not {type(body).__name__}",
                    location=document.location(("macros", name)),
                )
        self.context: dict[str, Any] = {}
        self.origins: dict[tuple[str, ...], _Origin] = {}
        self._merge_context_layers()
        self._resolved: dict[tuple[str, ...], Resolution] = {}
        self._context_stack: list[tuple[str, ...]] = []
        self._macro_stack: list[str] = []
        self._scanned = 0
        # Every string of the file costs its length plus TEMPLATE_CALL_COST once: a file of
        # many short strings (a 3,000-module Blueprint) is not a template bomb.
        self._budget = max(MAX_TEMPLATE_WORK, 3 * len(document.text)) + TEMPLATE_CALL_COST * len(
            document.values
        )
        self._keep_resolved_values(self.context, ())

    def _keep_resolved_values(self, node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        """Inherited context and an Arcade's context_override were resolved by the parent;
        like any substituted text, they are not scanned again."""
        for key, value in node.items():
            parts = prefix + (key,)
            if isinstance(value, dict) and value:
                self._keep_resolved_values(value, parts)
                continue
            origin = self._origin(parts)
            if origin.path is None and (origin.kind == "context" or self.settings.arcade):
                self._resolved[parts] = Resolution(copy.deepcopy(value))

    # ------------------------------------------------------------------ entry point

    def run(self) -> TemplatedBlueprint:
        self._check_required_context()
        result = TemplatedBlueprint(data={})
        resolved_context = {}
        for key in self.context:
            resolved_context[key] = self._context_path((key,)).value
        self._record_context_provenance(result, (), self.context)
        for key, value in self.document.data.items():
            if key in _RAW_TOP_LEVEL:
                result.data[key] = value
            else:
                result.data[key] = self._tree(value, (key,), result)
        # Overrides and profiles may supply context the file itself does not declare.
        result.data["context"] = resolved_context
        return result

    # ------------------------------------------------------------------ document walk

    def _tree(self, value: Any, path: tuple[Any, ...], result: TemplatedBlueprint) -> Any:
        if isinstance(value, dict):
            return {
                key: (
                    item
                    if self._is_prose(path + (key,))
                    else self._tree(item, path + (key,), result)
                )
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._tree(item, path + (index,), result) for index, item in enumerate(value)]
        location = self.document.location(path)
        if isinstance(value, str):
            resolution = self._text(value, self._where(path))
            result.provenance[path] = provenance_of(resolution.sources, location)
            return resolution.value
        result.provenance[path] = provenance_of((), location)
        return value

    @staticmethod
    def _is_prose(path: tuple[Any, ...]) -> bool:
        if path[0] == "modules" and len(path) == 3:
            return path[2] == "description"
        return path == ("agent", "prompt_context")

    def _where(self, path: tuple[Any, ...]) -> _Where:
        module_id = None
        label = ".".join(str(p) for p in path)
        webhook = path[0] == "hooks"
        if path[0] == "modules" and len(path) > 2:
            modules = self.document.data.get("modules")
            candidate = modules[path[1]].get("id") if isinstance(modules[path[1]], dict) else None
            module_id = candidate if isinstance(candidate, str) else None
            label = ".".join(str(p) for p in path[2:])
            webhook = path[2] in ("on_failure_webhook", "on_failure")
        return _Where(path=path, label=label, module_id=module_id, webhook=webhook)

    # ------------------------------------------------------------------ one string

    def _charge(self, characters: int, where: _Where) -> None:
        """Count characters read or written against the template expansion budget."""
        count("template_chars", characters)
        self._scanned += characters
        if self._scanned > self._budget:
            raise self._error(
                f"templates expand past the template expansion budget ({self._budget:,} "
                f"units: characters read or written, plus {TEMPLATE_TOKEN_COST} per "
                "placeholder, macro or @aq call)",
                where,
                hint="macros or context values that use each other several times grow "
                "exponentially: use each once per string, or inline the repeated text; write "
                "long repeated text once instead of thousands of @aq calls",
            )

    def _text(self, text: str, where: _Where) -> Resolution:
        self._charge(len(text) + TEMPLATE_CALL_COST, where)
        whole = _WHOLE_CONTEXT.fullmatch(text)
        if whole and not whole.group(1).startswith("_"):
            # `enabled: ${ctx.flag}` keeps the context value's type (a bool stays a bool).
            return self._context_reference(whole.group(1), where, 0)
        pieces: list[str] = []
        sources: list[Source] = []
        position = 0
        while (match := _TOKEN.search(text, position)) is not None:
            # A resolved token (parsing an @aq call's arguments, a macro's parameters) costs
            # far more than reading a character: 50,000 `@aq.env('X')` in one value took
            # seconds while reading only 800,000 characters.
            self._charge(TEMPLATE_TOKEN_COST, where)
            pieces.append(text[position : match.start()])
            end = match.end()
            if match.group("macro"):
                args, end = self._macro_call(text, match, where)
                resolution = self._macro(match.group("macro_name"), args, where, match.start())
            elif match.group("placeholder"):
                resolution = self._placeholder(match.group("inner"), where, match.start())
            else:
                try:
                    call = call_at(text, match.start())
                except CallSyntaxError as error:
                    raise self._error(str(error), where, match.start()) from None
                if call is None:  # "@aq." not followed by a call: plain text
                    resolution = Resolution(match.group(0))
                else:
                    resolution = self._function(call, where)
                    end = call.end
            pieces.append(as_text(resolution.value))
            sources.extend(resolution.sources)
            position = end
        pieces.append(text[position:])
        if len(pieces) == 1:
            return Resolution(text, tuple(sources))
        # Cached context values are substituted without being read again, so what is written
        # counts too: `a: ${ctx.b}${ctx.b}`, `b: ${ctx.c}${ctx.c}`, ... doubles per key.
        result = "".join(pieces)
        self._charge(len(result), where)
        return Resolution(result, tuple(sources))

    def _macro_call(self, text: str, match: re.Match[str], where: _Where) -> tuple[str | None, int]:
        """The arguments text (None without parentheses) and the end of `{{ macros.x(...) }}`.

        A call that does not close is an error at once: scanning on for another `}}` from
        every unclosed `{{ macros.x(` made the scanner quadratic.
        """
        name, position = match.group("macro_name"), match.end()
        if text.startswith("}}", position):
            return None, position + 2
        if text.startswith("(", position):
            close = _MACRO_CLOSE.search(text, position + 1)
            if close is not None:
                return text[position + 1 : close.start()], close.end()
            problem = f"the macro call '{{{{ macros.{name}(' has no closing ') }}}}'"
        else:
            problem = f"cannot read the macro call '{{{{ macros.{name}' here"
        raise self._error(
            problem, where, match.start(),
            hint=f"write {{{{ macros.{name} }}}} or {{{{ macros.{name}(arg=value) }}}}",
        )  # fmt: skip

    def _error(
        self, message: str, where: _Where, offset: int | None = None, hint: str | None = None
    ) -> BlueprintError:
        if where.path is None:
            location = SourceLocation(self.document.source_path)
            arcade = self.settings.arcade
            source = f"Arcade '{arcade}' context_override" if arcade else "--ctx override"
            message = f"{message} (in {source} {where.label})"
        elif where.exact and offset is not None:
            location = self.document.location_within(where.path, offset)
        else:
            location = self.document.location(where.path)
        prefix = f"{where.label}: " if where.label else ""
        return BlueprintError(
            prefix + message, location=location, module_id=where.module_id, hint=hint
        )

    # ------------------------------------------------------------------ ${...}

    def _placeholder(self, inner: str, where: _Where, offset: int) -> Resolution:
        token = "${" + inner + "}"
        if inner.startswith("ctx.") or inner == "ctx":
            key = inner[4:]
            if key.split(".")[0].startswith("_"):
                # `${ctx._watermark}` and friends are bound by the engine at run time.
                return Resolution(token, (Source("runtime", token),))
            return self._context_reference(key, where, offset)
        env_match = _ENV_PLACEHOLDER.fullmatch(inner)
        if env_match:
            name, default = env_match.group("name"), env_match.group("default")
            env = self.facts.env
            if name in env:
                return Resolution(env[name], (Source("env", name),))
            if default is not None:
                return Resolution(default, (Source("default", f"{token} ({name} is not set)"),))
            if where.webhook and name in WEBHOOK_VARIABLES:
                return Resolution(token)
            raise self._error(
                f"environment variable '{name}' is not set (used as '{token}')",
                where,
                offset,
                hint=f"export {name}=..., or give a fallback: '${{{name}:-default}}'",
            )
        if where.webhook and _DOTTED_NAME.fullmatch(inner):
            return Resolution(token)  # hook command variables such as ${run.id}
        raise self._error(
            f"cannot read the placeholder '{token}'",
            where,
            offset,
            hint="write ${ctx.key} for a context value or ${ENV_VAR} / ${ENV_VAR:-default} "
            "for an environment variable",
        )

    def _context_reference(self, dotted: str, where: _Where, offset: int) -> Resolution:
        parts = tuple(dotted.split("."))
        if not all(p.strip() for p in parts):
            raise self._error(
                f"'${{ctx.{dotted}}}' is not a valid context reference", where, offset
            )
        if not self._context_has(parts):
            known = self._flat_context_keys()
            raise self._error(
                f"unknown context key '{dotted}' in '${{ctx.{dotted}}}'"
                + did_you_mean(dotted, known),
                where,
                offset,
                hint=f"defined keys: {one_of(known)}; add it under `context:` or "
                + (
                    f"to Arcade '{self.settings.arcade}'s context_override"
                    if self.settings.arcade
                    else f"pass --ctx {dotted}=..."
                ),
            )
        resolution = self._context_path(parts)
        origin = self._origin(parts)
        return Resolution(
            resolution.value, (Source(origin.kind, f"ctx.{dotted}"),) + resolution.sources
        )

    # ------------------------------------------------------------------ @aq.*

    def _function(self, call: FunctionCall, where: _Where) -> Resolution:
        spec = FUNCTIONS.get(call.name)
        if spec is None:
            known = [f"@aq.{name}" for name in FUNCTIONS]
            raise self._error(
                f"unknown function '@aq.{call.name}'" + did_you_mean(f"@aq.{call.name}", known),
                where,
                call.start,
                hint=f"known functions: {one_of(known, limit=len(known))}",
            )
        problem = check_call(call)
        if problem:
            raise self._error(problem, where, call.start)
        if spec.kind == "secret":
            name = call.args[0]
            if name not in self.facts.env:
                raise self._error(
                    f"secret '{name}' is not available: environment variable '{name}' is not set "
                    f"(used by {call.text})",
                    where,
                    call.start,
                    hint=f"export {name} where the pipeline runs; its value is read only at the "
                    "point of use and never stored in the Manifest",
                )
            return Resolution(call.text, (Source("secret", call.text),))
        if spec.kind in ("runtime", "depot"):
            return Resolution(call.text, (Source("runtime", call.text),))
        try:
            value = evaluate_compile_time(call, self.facts)
        except KeyError:
            raise self._error(
                f"environment variable '{call.args[0]}' is not set (used by {call.text})",
                where,
                call.start,
                hint=f"export {call.args[0]}=..., or give a default: "
                f"@aq.env('{call.args[0]}', 'fallback')",
            ) from None
        if call.name == "env":
            kind = "env" if call.args[0] in self.facts.env else "default"
            return Resolution(value, (Source(kind, call.text),))
        return Resolution(value, (Source("function", call.text),))

    # ------------------------------------------------------------------ macros

    def _macro(self, name: str, args_text: str | None, where: _Where, offset: int) -> Resolution:
        if name not in self.macros:
            raise self._error(
                f"unknown macro 'macros.{name}'" + did_you_mean(name, self.macros),
                where,
                offset,
                hint=f"defined macros: {one_of(self.macros)}",
            )
        if name in self._macro_stack:
            chain = " -> ".join(self._macro_stack + [name])
            raise self._error(f"macro '{name}' expands itself: {chain}", where, offset)
        if len(self._macro_stack) >= MAX_REFERENCE_DEPTH:
            chain = " -> ".join(self._macro_stack[:4])
            raise self._error(
                f"macros use each other more than {MAX_REFERENCE_DEPTH} levels deep (the "
                f"reference depth limit): {chain} -> ... -> {name}",
                where,
                offset,
                hint="inline some of these macros",
            )
        body = self.macros[name]
        parameters = set(_MACRO_PARAMETER.findall(body))
        try:
            arguments = _macro_arguments(args_text) if args_text is not None else {}
        except ValueError as error:
            raise self._error(f"macro 'macros.{name}': {error}", where, offset) from None
        for argument in arguments:
            if argument not in parameters:
                raise self._error(
                    f"macro 'macros.{name}' has no parameter '{argument}'"
                    + did_you_mean(argument, parameters),
                    where,
                    offset,
                    hint=f"its parameters: {one_of(parameters)}",
                )
        missing = sorted(parameters - set(arguments))
        if missing:
            raise self._error(
                f"macro 'macros.{name}' needs argument(s) {one_of(missing)}",
                where,
                offset,
                hint=f"call it as {{{{ macros.{name}("
                + ", ".join(f"{p}=..." for p in sorted(parameters))
                + ") }}",
            )
        expanded = _MACRO_PARAMETER.sub(lambda m: arguments.get(m.group(1), m.group(0)), body)
        self._macro_stack.append(name)
        try:
            inner = self._text(
                expanded,
                _Where(
                    path=("macros", name),
                    label=f"macros.{name} (used by {where.label})",
                    module_id=where.module_id,
                    exact=False,
                ),
            )
        finally:
            self._macro_stack.pop()
        return Resolution(inner.value, (Source("macro", f"macros.{name}"),) + inner.sources)

    # ------------------------------------------------------------------ context

    def _mapping_field(self, key: str) -> dict[str, Any]:
        value = self.document.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise BlueprintError(
                f"'{key}' must be a mapping, not a {type(value).__name__}",
                location=self.document.location((key,)),
            )
        return value

    def _merge_context_layers(self) -> None:
        for key, value in self.settings.inherited_context.items():
            self.context[str(key)] = copy.deepcopy(value)
            self.origins[(str(key),)] = _Origin("context", None)
        _merge(self.context, self._mapping_field("context"), "context", ("context",), self.origins)
        profile = self.settings.profile
        if profile is not None:
            profiles = self._mapping_field("context_profiles")
            if profile not in profiles:
                raise BlueprintError(
                    f"unknown context profile '{profile}'" + did_you_mean(profile, profiles),
                    location=self.document.key_location(("context_profiles",)),
                    hint=f"defined profiles: {one_of(profiles)}",
                )
            layer = profiles[profile]
            if not isinstance(layer, dict):
                raise BlueprintError(
                    f"context profile '{profile}' must be a mapping of context keys",
                    location=self.document.location(("context_profiles", profile)),
                )
            _merge(self.context, layer, "profile", ("context_profiles", profile), self.origins)
        for dotted, value in (self.settings.context_overrides or {}).items():
            parts = tuple(str(dotted).split("."))
            target = self.context
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
            _forget_below(self.origins, parts, target.get(parts[-1]))
            target[parts[-1]] = copy.deepcopy(value)
            self.origins[parts] = _Origin("context_override", None)

    def _check_required_context(self) -> None:
        required = self.document.data.get("required_context") or []
        if not isinstance(required, list):
            raise BlueprintError(
                "'required_context' must be a list of context keys",
                location=self.document.location(("required_context",)),
            )
        missing = [
            (index, key)
            for index, key in enumerate(required)
            if not self._context_has(tuple(str(key).split(".")))
        ]
        if missing:
            names = ", ".join(f"'{key}'" for _, key in missing)
            if self.settings.arcade:
                hint = (
                    f"set them in Arcade '{self.settings.arcade}'s context_override "
                    f"({', '.join(f'{key}: ...' for _, key in missing)}) or in the parent's context"
                )
            else:
                hint = "set them under `context:`, in the selected context profile, or pass " + (
                    " ".join(f"--ctx {key}=..." for _, key in missing)
                )
            raise BlueprintError(
                f"required context key(s) missing: {names}",
                location=self.document.location(("required_context", missing[0][0])),
                hint=hint,
            )

    def _context_has(self, parts: tuple[str, ...]) -> bool:
        node: Any = self.context
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def _flat_context_keys(self) -> list[str]:
        keys: list[str] = []

        def walk(node: dict[str, Any], prefix: str) -> None:
            for key, value in node.items():
                keys.append(prefix + key)
                if isinstance(value, dict):
                    walk(value, prefix + key + ".")

        walk(self.context, "")
        return keys

    def _origin(self, parts: tuple[str, ...]) -> _Origin:
        for length in range(len(parts), 0, -1):
            origin = self.origins.get(parts[:length])
            if origin is not None:
                if origin.path is None:
                    return origin
                return _Origin(origin.kind, origin.path + parts[length:])
        return _Origin("context", ("context",) + parts)

    def _context_path(self, parts: tuple[str, ...]) -> Resolution:
        """The fully resolved value at a context path (cached, loop-checked)."""
        if parts in self._resolved:
            return self._resolved[parts]
        dotted = ".".join(parts)
        if parts in self._context_stack:
            cycle = self._context_stack[self._context_stack.index(parts) :] + [parts]
            chain = " -> ".join("ctx." + ".".join(p) for p in cycle)
            origin = self._origin(parts)
            raise self._error(
                f"context key '{dotted}' refers to itself: {chain}",
                _Where(path=origin.path, label=f"context.{dotted}"),
                hint="break the loop by giving one of these keys a plain value",
            )
        if len(self._context_stack) >= MAX_REFERENCE_DEPTH:
            chain = " -> ".join("ctx." + ".".join(p) for p in self._context_stack[:4])
            origin = self._origin(parts)
            raise self._error(
                f"context values refer to each other (or nest) more than {MAX_REFERENCE_DEPTH} "
                f"levels deep (the reference depth limit): {chain} -> ... -> ctx.{dotted}",
                _Where(path=origin.path, label=f"context.{dotted}"),
                hint="give one of these keys a plain value instead of a chain of ${ctx...}",
            )
        self._context_stack.append(parts)
        try:
            raw = self.context
            for part in parts:
                raw = raw[part]
            if isinstance(raw, dict):
                value: dict[str, Any] = {}
                sources: list[Source] = []
                for key in raw:
                    child = self._context_path(parts + (key,))
                    value[key] = child.value
                    sources.extend(child.sources)
                resolution = Resolution(value, tuple(sources))
            else:
                origin = self._origin(parts)
                resolution = self._context_leaf(raw, origin, f"context.{dotted}")
        finally:
            self._context_stack.pop()
        self._resolved[parts] = resolution
        return resolution

    def _context_leaf(self, raw: Any, origin: _Origin, label: str) -> Resolution:
        where = _Where(path=origin.path, label=label, exact=origin.path is not None)
        if isinstance(raw, str):
            return self._text(raw, where)
        if isinstance(raw, list):
            items, sources = [], []
            for index, item in enumerate(raw):
                child_origin = _Origin(
                    origin.kind, origin.path + (index,) if origin.path else None
                )
                child = self._context_leaf(item, child_origin, f"{label}.{index}")
                items.append(child.value)
                sources.extend(child.sources)
            return Resolution(items, tuple(sources))
        if isinstance(raw, dict):
            items_map, sources = {}, []
            for key, item in raw.items():
                child_origin = _Origin(origin.kind, origin.path + (key,) if origin.path else None)
                child = self._context_leaf(item, child_origin, f"{label}.{key}")
                items_map[key] = child.value
                sources.extend(child.sources)
            return Resolution(items_map, tuple(sources))
        return Resolution(raw)

    def _record_context_provenance(
        self, result: TemplatedBlueprint, prefix: tuple[str, ...], node: dict[str, Any]
    ) -> None:
        for key, value in node.items():
            parts = prefix + (key,)
            if isinstance(value, dict) and value:
                self._record_context_provenance(result, parts, value)
                continue
            origin = self._origin(parts)
            own = Source(origin.kind, "ctx." + ".".join(parts))
            location = (
                self.document.location(origin.path)
                if origin.path is not None
                else SourceLocation("<context_overrides>")
            )
            # The layer that set the key is implied by the key; what its text was built
            # from (an env var, a function) says more, so it is the primary source if any.
            inner = self._context_path(parts).sources
            result.context_provenance[".".join(parts)] = provenance_of(
                (own,) + inner, location, candidates=inner or None
            )


def _merge(
    into: dict[str, Any],
    layer: dict[str, Any],
    kind: str,
    base: tuple[Any, ...],
    origins: dict[tuple[str, ...], _Origin],
    prefix: tuple[str, ...] = (),
) -> None:
    """Deep-merge one context layer; nested mappings merge key by key."""
    for key, value in layer.items():
        parts = prefix + (str(key),)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, kind, base, origins, parts)
            continue
        _forget_below(origins, parts, into.get(key))
        into[key] = copy.deepcopy(value)
        origins[parts] = _Origin(kind, base + parts)


def _forget_below(
    origins: dict[tuple[str, ...], _Origin], parts: tuple[str, ...], replaced: Any
) -> None:
    """Drop the origins of `parts` and of everything inside the value it had (`replaced`).

    Origins only exist at paths of the context tree, so walking the replaced value finds them
    all, in time proportional to that value rather than to every origin known (which made a
    context of many keys quadratic).
    """
    pending = [(parts, replaced)]
    while pending:
        path, value = pending.pop()
        origins.pop(path, None)
        if isinstance(value, dict):
            pending.extend((path + (str(key),), item) for key, item in value.items())


def _macro_arguments(text: str) -> dict[str, str]:
    """`period='day', col=order_ts` -> {"period": "day", "col": "order_ts"}."""
    arguments: dict[str, str] = {}
    for piece in _split_top_level(text):
        if not piece.strip():
            continue
        name, equals, value = piece.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(
                f"cannot read the argument '{piece.strip()}'; write name=value, e.g. period='day'"
            )
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        arguments[name] = value
    return arguments


def _split_top_level(text: str) -> list[str]:
    pieces, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces
