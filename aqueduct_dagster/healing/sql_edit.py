"""Surgical edits of SQL text that keep the author's formatting, macros and `${ctx.*}`.

A healed query should read like the original with one thing changed, so these helpers edit
the text (outside string literals and template markers) instead of regenerating it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Single-quoted literals, double-quoted strings, and template markers are never edited.
_PROTECTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\{\{.*?\}\}|\$\{[^}]*\}", re.S)


def _edit_outside_protected(sql: str, edit: Callable[[str], str]) -> str:
    pieces, last = [], 0
    for match in _PROTECTED.finditer(sql):
        pieces.append(edit(sql[last : match.start()]))
        pieces.append(match.group(0))
        last = match.end()
    pieces.append(edit(sql[last:]))
    return "".join(pieces)


def strip_identifier(name: str) -> str:
    """`t`.`col` / t.col / `col` -> col (the last part, unquoted)."""
    parts = [p.strip("`\" ") for p in re.split(r"\.(?=(?:[^`]*`[^`]*`)*[^`]*$)", name.strip())]
    return parts[-1] if parts else name


def split_proposals(text: str) -> list[str]:
    """Spark's proposal parameter ("`a`, `t`.`b`") -> ["a", "b"]."""
    names = re.findall(r"((?:`[^`]+`\.)*`[^`]+`|[A-Za-z_][\w.]*)", text or "")
    seen: list[str] = []
    for name in names:
        bare = strip_identifier(name)
        if bare and bare not in seen:
            seen.append(bare)
    return seen


def identifier_pattern(name: str) -> re.Pattern[str]:
    escaped = re.escape(name)
    return re.compile(rf"(?<![\w`])(`{escaped}`|{escaped})(?![\w`])", re.I)


def contains_identifier(sql: str, name: str) -> bool:
    hit = False

    def probe(segment: str) -> str:
        nonlocal hit
        hit = hit or bool(identifier_pattern(name).search(segment))
        return segment

    _edit_outside_protected(sql, probe)
    return hit


def replace_identifier(sql: str, old: str, new: str) -> str:
    """Rename column `old` to `new` wherever it is used as an identifier."""
    pattern = identifier_pattern(old)

    def rename(segment: str) -> str:
        return pattern.sub(lambda m: f"`{new}`" if m.group(1).startswith("`") else new, segment)

    return _edit_outside_protected(sql, rename)


def qualify_identifier(sql: str, name: str, qualifier: str) -> str:
    """Unqualified uses of `name` become `qualifier.name` (already qualified ones are left)."""
    pattern = re.compile(rf"(?<![\w`.])(`{re.escape(name)}`|{re.escape(name)})(?![\w`])", re.I)
    return _edit_outside_protected(sql, lambda s: pattern.sub(lambda m: f"{qualifier}.{m.group(1)}", s))


def cast_to_try_cast(sql: str) -> str:
    """CAST(...) -> TRY_CAST(...): a malformed value becomes NULL instead of failing the run."""
    pattern = re.compile(r"(?<![\w.])cast\s*\(", re.I)
    return _edit_outside_protected(sql, lambda s: pattern.sub("TRY_CAST(", s))


def divide_to_try_divide(sql: str) -> str | None:
    """a / b -> try_divide(a, b) for simple operands; None when there is no such division.

    Operands are identifiers, numbers or a parenthesised group / function call; anything more
    complex is left to a person (or the LLM) rather than guessed.
    """
    operand = r"(?:[A-Za-z_][\w.]*\s*\([^()]*\)|\([^()]*\)|`[^`]+`|[A-Za-z_][\w.]*|\d+(?:\.\d+)?)"
    pattern = re.compile(rf"(?P<a>{operand})\s*/\s*(?P<b>{operand})")
    changed = False

    def rewrite(segment: str) -> str:
        nonlocal changed

        def one(match: re.Match[str]) -> str:
            nonlocal changed
            changed = True
            return f"try_divide({match['a']}, {match['b']})"

        return pattern.sub(one, segment)

    result = _edit_outside_protected(sql, rewrite)
    return result if changed else None


def select_aliases_using(sql: str, column: str) -> list[str]:
    """Output aliases of select expressions that read `column` (`... column ... AS alias`)."""
    aliases = []
    select_list = re.split(r"\bFROM\b", sql, maxsplit=1, flags=re.I)[0]
    for expression in re.split(r",(?![^()]*\))", select_list):
        if contains_identifier(expression, column):
            match = re.search(r"\bAS\s+`?(\w+)`?\s*$", expression.strip(), re.I)
            if match:
                aliases.append(match.group(1))
    return aliases


_SELECT_LIST = re.compile(r"(\bSELECT\s+(?:DISTINCT\s+)?)(.*?)(\s+FROM\b)", re.I | re.S)


def rename_keeping_output(sql: str, old: str, new: str) -> str:
    """Rename column `old` to `new`, but keep the query's output column called `old`.

    A bare `old` in the first select list becomes `new AS old`, so downstream modules (and
    their Asserts) that read `old` keep working; every other use is renamed.
    """
    match = _SELECT_LIST.search(sql)
    if match is None:
        return replace_identifier(sql, old, new)
    items = re.split(r"(,)(?![^()]*\))", match.group(2))
    bare = re.compile(rf"^(\s*)(\w+\.)?`?{re.escape(old)}`?(\s*)$", re.I)
    kept = [
        bare.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{new} AS {old}{m.group(3)}", item) if bare.match(item) else item
        for item in items
    ]
    head = sql[: match.start(2)]
    tail = sql[match.end(2) :]
    select_list = "".join(
        item if item != original or item == "," else replace_identifier(item, old, new)
        for item, original in zip(kept, items, strict=True)
    )
    return replace_identifier(head, old, new) + select_list + replace_identifier(tail, old, new)
