"""What an Ingress read, recorded with each good run: the evidence a heal compares against.

A snapshot costs no Spark job: the schema comes from the analysed plan (a CSV's inference ran
with the read already), the file list from the file index Spark built for the read
(`inputFiles`), and file times from a `stat` of local files. Healing diffs the snapshot of the
last good run with one taken on the failing input (healing/drift.py).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType

#: Reader options that describe the file layout (never credentials): kept with their values.
LAYOUT_OPTIONS = frozenset(
    {"sep", "delimiter", "header", "inferschema", "multiline", "quote", "escape", "encoding", "charset",
     "linesep", "dateformat", "timestampformat", "nullvalue", "comment", "mode", "recursivefilelookup",
     "pathglobfilter", "samplingratio", "mergeschema"}
)  # fmt: skip
#: Formats read straight from files, whose listing the read has already made.
FILE_FORMATS = frozenset({"csv", "json", "parquet", "orc", "avro", "text", "xml", "binaryfile"})
#: Files whose modification time is read (the newest one is what matters).
MAX_STAT_FILES = 2000
#: Nested fields flattened per snapshot (wide structs are cut, and say so).
MAX_FIELDS = 2000


def flatten_fields(data_type: DataType, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted path, type) of every column and nested struct field; array elements as `a[]`."""
    from pyspark.sql.types import ArrayType, MapType, StructType

    found: list[tuple[str, str]] = []
    if isinstance(data_type, StructType):
        for field in data_type.fields:
            path = f"{prefix}.{field.name}" if prefix else field.name
            inner = field.dataType
            found.append((path, _type_name(inner)))
            found += flatten_fields(inner, path)
    elif isinstance(data_type, ArrayType):
        found += flatten_fields(data_type.elementType, f"{prefix}[]")
    elif isinstance(data_type, MapType):
        found += flatten_fields(data_type.valueType, f"{prefix}{{}}")
    return found[:MAX_FIELDS]


def _type_name(data_type: DataType) -> str:
    from pyspark.sql.types import ArrayType, MapType, StructType

    # Containers are named by kind only: their members are separate entries.
    if isinstance(data_type, StructType):
        return "struct"
    if isinstance(data_type, ArrayType):
        return "array"
    if isinstance(data_type, MapType):
        return "map"
    return data_type.simpleString()


def input_files(frame: DataFrame) -> list[str]:
    try:
        return list(frame.inputFiles())
    except Exception:  # noqa: BLE001 - a source without files (jdbc, table of another kind)
        return []


def files_summary(files: list[str]) -> dict[str, Any]:
    """How many files, by suffix, and the newest modification time of the local ones."""
    suffixes = Counter(_suffix(f) for f in files)
    newest = None
    for name in files[:MAX_STAT_FILES]:
        local = _local_path(name)
        if local is None:
            continue
        try:
            stamp = os.stat(local).st_mtime
        except OSError:
            continue
        newest = stamp if newest is None else max(newest, stamp)
    return {"count": len(files), "suffixes": dict(suffixes), "newest_mtime": newest}


def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base else ""


def _local_path(name: str) -> str | None:
    parts = urlsplit(name)
    if parts.scheme in ("", "file"):
        return unquote(parts.path) if parts.scheme else name
    return None


def ingress_snapshot(frame: DataFrame, *, fmt: str, options: dict[str, str], location: str | None) -> dict[str, Any]:
    """The snapshot of one Ingress read (see the module docstring); JSON-ready."""
    layout = {k: v for k, v in options.items() if k.lower() in LAYOUT_OPTIONS}
    return {
        "format": fmt,
        "options": layout,
        "location": location,
        "fields": [list(pair) for pair in flatten_fields(frame.schema)],
        # Only where Spark listed the files for the read: a Delta table's file list is a
        # Spark job of its own (its log replayed), and its schema says enough.
        "files": files_summary(input_files(frame)) if location and fmt in FILE_FORMATS else None,
    }
