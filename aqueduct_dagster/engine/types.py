"""Type names as Blueprints write them, mapped to Spark's own spelling.

Blueprints use Spark's simple type names and a few portable aliases (`long`, `integer`,
`timestamp_tz`, `decimal(p, s)` ...). `spark_type_name` turns any of them into the string
`DataType.simpleString()` prints, so a hint compares to a schema with `==`, and a cast gets a
name Spark parses.
"""

from __future__ import annotations

import re

from aqueduct_dagster.engine.errors import ConditionError

_SIMPLE: dict[str, str] = {
    "bigint": "bigint",
    "long": "bigint",
    "int64": "bigint",
    "int": "int",
    "integer": "int",
    "int32": "int",
    "smallint": "smallint",
    "short": "smallint",
    "int16": "smallint",
    "tinyint": "tinyint",
    "byte": "tinyint",
    "int8": "tinyint",
    "double": "double",
    "float64": "double",
    "double precision": "double",
    "float": "float",
    "real": "float",
    "float32": "float",
    "string": "string",
    "str": "string",
    "text": "string",
    "boolean": "boolean",
    "bool": "boolean",
    "binary": "binary",
    "bytes": "binary",
    "date": "date",
    # Spark's TIMESTAMP is an instant (with local time zone); _ntz is the naive one.
    "timestamp": "timestamp",
    "timestamp_tz": "timestamp",
    "timestamp_ltz": "timestamp",
    "timestamptz": "timestamp",
    "timestamp_ntz": "timestamp_ntz",
    "decimal": "decimal(10,0)",
    "numeric": "decimal(10,0)",
    "dec": "decimal(10,0)",
    "void": "void",
    "null": "void",
    "variant": "variant",
}

_DECIMAL = re.compile(r"^(?:decimal|numeric|dec)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
_SIZED_TEXT = re.compile(r"^(char|varchar)\s*\(\s*(\d+)\s*\)$")
_INTERVAL = re.compile(r"^interval(\s+\w+(\s+to\s+\w+)?)?$")


def spark_type_name(name: str) -> str:
    """Spark's `simpleString()` spelling of a type name; ConditionError when unknown."""
    text = " ".join(str(name).strip().lower().split())
    if text in _SIMPLE:
        return _SIMPLE[text]
    decimal = _DECIMAL.match(text)
    if decimal:
        return f"decimal({decimal.group(1)},{decimal.group(2) or 0})"
    sized = _SIZED_TEXT.match(text)
    if sized:
        return f"{sized.group(1)}({sized.group(2)})"
    if _INTERVAL.match(text):
        return text
    for kind in ("array", "map", "struct"):
        if text.startswith(f"{kind}<") and text.endswith(">"):
            inner = text[len(kind) + 1 : -1]
            parts = split_top_level(inner)
            if kind == "array" and len(parts) == 1:
                return f"array<{spark_type_name(parts[0])}>"
            if kind == "map" and len(parts) == 2:
                return f"map<{spark_type_name(parts[0])},{spark_type_name(parts[1])}>"
            if kind == "struct":
                fields = [_struct_field(part, name) for part in parts if part.strip()]
                return f"struct<{','.join(fields)}>"
    raise ConditionError(
        "AQ_UNKNOWN_TYPE",
        f"'{name}' is not a type name the Spark engine knows",
        {"typeName": name},
        hint="use a Spark type name: string, int, bigint/long, double, boolean, date, "
        "timestamp_tz, timestamp_ntz, decimal(p,s), array<T>, map<K,V>, struct<a:T,...>",
    )


def _struct_field(part: str, whole: str) -> str:
    separator = ":" if ":" in part else " "
    name, _, kind = part.strip().partition(separator)
    if not kind.strip():
        raise ConditionError(
            "AQ_UNKNOWN_TYPE",
            f"'{whole}' has a struct field without a type: '{part.strip()}'",
            {"typeName": whole},
        )
    return f"{name.strip().strip('`')}:{spark_type_name(kind)}"


def split_top_level(text: str, separator: str = ",", *, angle_brackets: bool = True) -> list[str]:
    """`text` split at `separator`s outside brackets and quotes.

    `angle_brackets=False` for SQL expressions, where `<` is a comparison.
    """
    opening, closing = ("(<[", ")>]") if angle_brackets else ("([", ")]")
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for char in text:
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in opening:
            depth += 1
        elif char in closing:
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]
