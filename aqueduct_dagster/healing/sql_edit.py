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
    return _found_outside_protected(sql, identifier_pattern(name))


def _found_outside_protected(sql: str, pattern: re.Pattern[str]) -> bool:
    """`pattern` occurs in `sql` outside string literals and comments."""
    hit = False

    def probe(segment: str) -> str:
        nonlocal hit
        hit = hit or bool(pattern.search(segment))
        return segment

    _edit_outside_protected(sql, probe)
    return hit


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def as_identifier(name: str) -> str:
    """`name` as SQL must write it: backtick-quoted unless it is a plain word."""
    return name if _PLAIN.fullmatch(name) else "`" + name.replace("`", "``") + "`"


def replace_identifier(sql: str, old: str, new: str) -> str:
    """Rename column `old` to `new` wherever it is used as an identifier (quoted as needed)."""
    pattern = identifier_pattern(old)

    def rename(segment: str) -> str:
        return pattern.sub(lambda m: "`" + new.replace("`", "``") + "`" if m.group(1).startswith("`") else as_identifier(new), segment)

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


_AS_BEFORE = re.compile(r"\bAS\s+$", re.I)


def rename_input_column(sql: str, old: str, new: str) -> str:
    """An input column renamed upstream: every read of `old` reads `new`; what the query
    outputs keeps its names (`AS old` aliases stay, a bare `old` becomes `new AS old`)."""
    pattern = identifier_pattern(old)

    def rename(segment: str) -> str:
        def one(match: re.Match[str]) -> str:
            if _AS_BEFORE.search(segment[: match.start()]):
                return match.group(0)  # an output name, not a read
            return as_identifier(new)

        return pattern.sub(one, segment)

    renamed = _edit_outside_protected(sql, rename)
    match = _SELECT_LIST.search(renamed)
    if match is None:
        return renamed
    written = re.escape(as_identifier(new))
    bare = re.compile(rf"^(\s*)((?:\w+\.)?{written})(\s*)$")
    items = re.split(r"(,)(?![^()]*\))", match.group(2))
    kept = [bare.sub(lambda m: f"{m.group(1)}{m.group(2)} AS {as_identifier(old)}{m.group(3)}", item) for item in items]
    return renamed[: match.start(2)] + "".join(kept) + renamed[match.end(2) :]


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
        bare.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{as_identifier(new)} AS {as_identifier(old)}{m.group(3)}", item)
        if bare.match(item) else item
        for item in items
    ]
    head = sql[: match.start(2)]
    tail = sql[match.end(2) :]
    select_list = "".join(
        item if item != original or item == "," else replace_identifier(item, old, new)
        for item, original in zip(kept, items, strict=True)
    )
    return replace_identifier(head, old, new) + select_list + replace_identifier(tail, old, new)


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = [rf"(?:`{re.escape(p)}`|{re.escape(p)})" for p in path.split(".")]
    # An optional table qualifier in front (`s.device.os.name`), nothing longer around it.
    return re.compile(r"(?<![\w`.])((?:\w+\.)?)" + r"\.".join(parts) + r"(?![\w`])", re.I)


def contains_path(sql: str, path: str) -> bool:
    return _found_outside_protected(sql, _path_pattern(path))


def replace_path(sql: str, old: str, new: str) -> str:
    """A nested field reference `a.b.old` becomes `a.b.new` (each part quoted as needed)."""
    written = ".".join(as_identifier(p) for p in new.split("."))
    pattern = _path_pattern(old)
    return _edit_outside_protected(sql, lambda s: pattern.sub(lambda m: m.group(1) + written, s))


def cast_input_column(sql: str, column: str, type_name: str) -> str:
    """Every read of input `column` becomes `CAST(column AS type)`; outputs keep their names
    (a bare `column` in the select list becomes `CAST(column AS type) AS column`)."""
    pattern = identifier_pattern(column)
    written = as_identifier(column)
    cast = f"CAST({written} AS {type_name})"

    def rewrite(segment: str) -> str:
        def one(match: re.Match[str]) -> str:
            before = segment[: match.start()]
            if _AS_BEFORE.search(before) or re.search(r"\.\s*$", before):
                return match.group(0)  # an output name, or a field of something else
            return cast

        return pattern.sub(one, segment)

    rewritten = _edit_outside_protected(sql, rewrite)
    match = _SELECT_LIST.search(rewritten)
    if match is None:
        return rewritten
    bare = re.compile(rf"^(\s*){re.escape(cast)}(\s*)$")
    items = re.split(r"(,)(?![^()]*\))", match.group(2))
    kept = [bare.sub(lambda m: f"{m.group(1)}{cast} AS {written}{m.group(2)}", item) for item in items]
    return rewritten[: match.start(2)] + "".join(kept) + rewritten[match.end(2) :]
