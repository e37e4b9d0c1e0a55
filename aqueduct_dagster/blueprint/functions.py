"""The `@aq.*` function table and the scanner that finds calls in text.

Functions come in four kinds, decided once here:

* compile   -- evaluated while compiling (`@aq.env`, `@aq.blueprint.*`, `@aq.version`, ...);
* secret    -- `@aq.secret('NAME')`: compile only checks that NAME exists; the token stays in
               the Manifest and is revealed by the engine at the point of use;
* runtime   -- `@aq.run.*`, `@aq.date.*`: kept verbatim and bound once per run, so that a
               long-lived Dagster code location never freezes "today" at load time;
* depot     -- `@aq.depot.get(...)`: kept verbatim, read from the depot store at run time.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

FunctionKind = Literal["compile", "secret", "runtime", "depot"]

_CALL_START = re.compile(r"@aq\.(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\(")
#: An `@aq.secret('NAME')` token as it stays in text until the point of use (group 1: NAME).
SECRET_TOKEN = re.compile(r"@aq\.secret\(\s*['\"]([^'\"]+)['\"]\s*\)")


class CallSyntaxError(ValueError):
    """An `@aq.` call whose arguments cannot be read."""


@dataclass(frozen=True)
class FunctionCall:
    """One `@aq.<name>(...)` occurrence in a string."""

    name: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    text: str  # the verbatim token, e.g. "@aq.date.offset(days=-7)"
    start: int
    end: int


@dataclass(frozen=True)
class CompileFacts:
    """What compile-time functions may read."""

    blueprint_id: str
    blueprint_name: str
    blueprint_path: str
    blueprint_dir: str
    deployment_env: str
    deployment_target: str
    version: str
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunInfo:
    """The facts of one run that runtime tokens are bound to."""

    run_id: str
    started_at: datetime
    prev_run_id: str | None = None
    #: The run's partition key; for time partitions `logical_at` is the partition's start,
    #: and date tokens bind to it (a backfilled day reads that day, not today).
    partition_key: str | None = None
    logical_at: datetime | None = None


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: FunctionKind
    #: Positional parameter names; a trailing "?" marks an optional one.
    params: tuple[str, ...] = ()
    #: Checks/normalises the arguments; returns an error text or None.
    check: Callable[[tuple[Any, ...], Mapping[str, Any]], str | None] | None = None


def _texts(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    if kwargs:
        return f"takes no keyword arguments (got {', '.join(kwargs)})"
    if not all(isinstance(a, str) and a for a in args):
        return "takes quoted, non-empty text arguments, e.g. ('NAME')"
    return None


def _offset(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    if set(kwargs) - {"days"}:
        return "takes one argument: a number of days, e.g. (-7) or (days=-7)"
    values = list(args) + list(kwargs.values())
    if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], int):
        return "takes one whole number of days, e.g. (-7) or (days=-7)"
    return None


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec("env", "compile", ("name", "default?"), _texts),
        FunctionSpec("blueprint.id", "compile"),
        FunctionSpec("blueprint.name", "compile"),
        FunctionSpec("blueprint.dir", "compile"),
        FunctionSpec("blueprint.path", "compile"),
        FunctionSpec("version", "compile"),
        FunctionSpec("deployment.env", "compile"),
        FunctionSpec("deployment.target", "compile"),
        FunctionSpec("secret", "secret", ("name",), _texts),
        FunctionSpec("run.id", "runtime"),
        FunctionSpec("run.prev_id", "runtime"),
        FunctionSpec("run.timestamp", "runtime"),
        FunctionSpec("run.partition", "runtime"),
        FunctionSpec("date.today", "runtime"),
        FunctionSpec("date.yesterday", "runtime"),
        FunctionSpec("date.now", "runtime"),
        FunctionSpec("date.month_start", "runtime"),
        FunctionSpec("date.offset", "runtime", ("days",), _offset),
        FunctionSpec("depot.get", "depot", ("key", "default?"), _texts),
    )
}


def find_calls(text: str) -> Iterator[FunctionCall]:
    """Every `@aq.<name>(...)` in `text`, in order. Raises CallSyntaxError on a bad call."""
    position = 0
    while True:
        match = _CALL_START.search(text, position)
        if match is None:
            return
        call = call_at(text, match.start())
        assert call is not None
        yield call
        position = call.end


def call_at(text: str, start: int) -> FunctionCall | None:
    """The call starting exactly at `start`, or None when no `@aq.<name>(` starts there."""
    match = _CALL_START.match(text, start)
    if match is None:
        return None
    end = _closing_paren(text, match.end() - 1)
    if end is None:
        raise CallSyntaxError(f"'{match.group(0)}' has no closing ')'")
    token = text[start : end + 1]
    args, kwargs = _arguments(text[match.end() : end], token)
    return FunctionCall(match.group("name"), args, kwargs, token, start, end + 1)


def _closing_paren(text: str, open_index: int) -> int | None:
    depth = 0
    quote: str | None = None
    for index in range(open_index, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    return None


def _arguments(inner: str, token: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if not inner.strip():
        return (), {}
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        assert isinstance(call, ast.Call)
        args = tuple(ast.literal_eval(a) for a in call.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    except (SyntaxError, ValueError, AssertionError):
        raise CallSyntaxError(
            f"cannot read the arguments of '{token}'; "
            "use quoted text or whole numbers, e.g. @aq.env('HOME')"
        ) from None
    return args, kwargs


def check_call(call: FunctionCall) -> str | None:
    """An error text when the call's arguments do not fit its function, else None."""
    spec = FUNCTIONS[call.name]
    required = [p for p in spec.params if not p.endswith("?")]
    if spec.check is None:
        if call.args or call.kwargs:
            return f"'@aq.{call.name}()' takes no arguments"
        return None
    problem = spec.check(call.args, call.kwargs)
    if problem is None and not call.kwargs:
        if not len(required) <= len(call.args) <= len(spec.params):
            names = ", ".join(p.rstrip("?") for p in spec.params)
            problem = f"takes {len(required)} to {len(spec.params)} arguments ({names})"
    return f"'@aq.{call.name}' {problem}" if problem else None


def substitute(text: str, replace: Callable[[FunctionCall], str | None]) -> str:
    """`text` with each call replaced by `replace(call)`; a None result keeps the token."""
    pieces: list[str] = []
    position = 0
    for call in find_calls(text):
        replacement = replace(call)
        pieces.append(text[position : call.start])
        pieces.append(call.text if replacement is None else replacement)
        position = call.end
    pieces.append(text[position:])
    return "".join(pieces)


def evaluate_compile_time(call: FunctionCall, facts: CompileFacts) -> str:
    """Value of a compile-kind call. `@aq.env` without a default raises KeyError if unset."""
    if call.name == "env":
        name = call.args[0]
        if name in facts.env:
            return facts.env[name]
        if len(call.args) > 1:
            return call.args[1]
        raise KeyError(name)
    return {
        "blueprint.id": facts.blueprint_id,
        "blueprint.name": facts.blueprint_name,
        "blueprint.dir": facts.blueprint_dir,
        "blueprint.path": facts.blueprint_path,
        "version": facts.version,
        "deployment.env": facts.deployment_env,
        "deployment.target": facts.deployment_target,
    }[call.name]


def evaluate_runtime(call: FunctionCall, run: RunInfo) -> str | None:
    """Value of a runtime-kind call for this run; None for tokens bound elsewhere (depot)."""
    at = run.logical_at or run.started_at
    today: date = at.date()
    if call.name == "run.partition":
        return run.partition_key or ""
    if call.name == "run.id":
        return run.run_id
    if call.name == "run.prev_id":
        return run.prev_run_id or ""
    if call.name == "run.timestamp":
        started = run.started_at
        if started.tzinfo is not None:
            started = started.astimezone(UTC)
        return started.replace(tzinfo=UTC).isoformat(timespec="seconds")
    if call.name == "date.today":
        return today.isoformat()
    if call.name == "date.yesterday":
        return (today - timedelta(days=1)).isoformat()
    if call.name == "date.now":
        return at.strftime("%Y-%m-%d %H:%M:%S")
    if call.name == "date.month_start":
        return today.replace(day=1).isoformat()
    if call.name == "date.offset":
        days = call.args[0] if call.args else call.kwargs["days"]
        return (today + timedelta(days=days)).isoformat()
    return None
