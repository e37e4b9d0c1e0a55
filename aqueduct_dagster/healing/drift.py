"""Drift: what changed in a pipeline's inputs between the last good run and the failing one.

Each good run records what its modules saw (dagster/assets.py `run_evidence`): the columns
every module produced and, per Ingress, a snapshot of the read (engine/snapshot.py). At heal
time each Ingress upstream of the fault is read again on the failing input and the two are
compared. The result is evidence, never a decision by itself: a rule acts on a change only
where the evidence admits one reading (one renamed column, one folder that holds the old
schema and is not older than the old input), and defers, showing the evidence, otherwise.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest

#: Delimiters a collapsed CSV header is split on, most specific first.
DELIMITERS = (";", "|", "\t", ",")
#: Sibling entries tried as the new home of a moved input (each costs a schema read).
MAX_LOCATION_CANDIDATES = 24
#: Bytes read from the head of a file to tell its format.
SNIFF_BYTES = 4096

Fields = Sequence[Sequence[str]]  # [(dotted path, type)]


# --------------------------------------------------------------------------- schemas


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def field_diff(good: Fields, now: Fields) -> dict[str, Any]:
    """Removed, added and retyped fields; renames where one reading is possible.

    A removed field is renamed to an added one when they share a parent and a type, and
    neither has another such partner: one removed `price` with two new double columns is
    ambiguous (`rename_candidates` lists both), never a coin toss.
    """
    before = {str(p): str(t) for p, t in good}
    after = {str(p): str(t) for p, t in now}
    removed = [(p, t) for p, t in before.items() if p not in after]
    added = [(p, t) for p, t in after.items() if p not in before]
    retyped = [(p, before[p], after[p]) for p in before if p in after and before[p] != after[p]]
    # A field under a removed/added parent moves with it: only the parent counts.
    removed_paths = {p for p, _ in removed}
    added_paths = {p for p, _ in added}
    removed = [(p, t) for p, t in removed if _parent(p) not in removed_paths]
    added = [(p, t) for p, t in added if _parent(p) not in added_paths]

    def partners(field: tuple[str, str], pool: list[tuple[str, str]]) -> list[str]:
        return [p for p, t in pool if _parent(p) == _parent(field[0]) and t == field[1]]

    candidates = {p: partners((p, t), added) for p, t in removed}
    old_positions, new_positions = _positions(good), _positions(now)
    renamed = []
    for old, news in candidates.items():
        if len(news) == 1:
            new = news[0]
            back = partners((new, after[new]), removed)
            # One partner each way, and something that ties them beyond the type: a similar
            # name, or the same place among its siblings. A new column of the same type that
            # merely appeared while another vanished is no evidence of a rename.
            tied = _similar_names(old, new) or old_positions.get(old) == new_positions.get(new)
            if back == [old] and tied:
                renamed.append((old, new, before[old]))
    return {
        "removed": [list(x) for x in removed],
        "added": [list(x) for x in added],
        "retyped": [list(x) for x in retyped],
        "renamed": [list(x) for x in renamed],
        "rename_candidates": {k: v for k, v in candidates.items() if v},
    }


def _positions(fields: Fields) -> dict[str, int]:
    """Each field's place among its siblings (0 = first under its parent)."""
    seen: dict[str, int] = {}
    places: dict[str, int] = {}
    for path, _type in fields:
        parent = _parent(str(path))
        places[str(path)] = seen.get(parent, 0)
        seen[parent] = places[str(path)] + 1
    return places


def _similar_names(old: str, new: str) -> bool:
    """Names that say the same thing: most of their words shared (`unit_price` ~
    `price_per_unit`, `signup_date` ~ `signup date`) or nearly the same spelling. One shared
    suffix is not enough: `humidity_pct` and `battery_pct` are different measures."""
    a, b = old.rsplit(".", 1)[-1].lower(), new.rsplit(".", 1)[-1].lower()
    words_a = {t for t in re.split(r"[^a-z0-9]+", a) if t}
    words_b = {t for t in re.split(r"[^a-z0-9]+", b) if t}
    shared = len(words_a & words_b) / max(len(words_a | words_b), 1)
    return shared >= 0.5 or difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def columns_of(columns: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    return [(str(c["name"]), str(c["type"])) for c in columns or [] if "name" in c]


def delimiter_change(good: Mapping[str, Any], now_fields: Fields) -> dict[str, str] | None:
    """A CSV read with the wrong delimiter: one column named like the old header line."""
    good_names = [p for p, _ in good.get("fields") or [] if "." not in p and "[" not in p]
    top = [p for p, _ in now_fields if "." not in p and "[" not in p]
    if str(good.get("format")) != "csv" or len(good_names) < 2 or len(top) != 1:
        return None
    header = top[0]
    old = _option(good.get("options") or {}, "sep", "delimiter") or ","
    for delimiter in DELIMITERS:
        if delimiter == old or delimiter not in header:
            continue
        parts = [p.strip().strip('"') for p in header.split(delimiter)]
        known = sum(1 for p in parts if p.lower() in {n.lower() for n in good_names})
        if len(parts) >= 2 and known * 2 >= len(good_names):
            return {"from": old, "to": delimiter, "header": header, "columns_recognised": f"{known} of {len(good_names)}"}
    return None


def _option(options: Mapping[str, Any], *names: str) -> str | None:
    lowered = {str(k).lower(): v for k, v in options.items()}
    return next((str(lowered[n]) for n in names if n in lowered), None)


# --------------------------------------------------------------------------- files


def local_path(location: str | None) -> Path | None:
    if not location:
        return None
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme:
        return None  # object stores and HDFS: not sniffed from here
    return Path(os.path.abspath(location))


def data_files(path: Path, limit: int = 64) -> list[Path]:
    """The data files at `path` (itself, or under it, skipping `_`/`.` names as Spark does)."""
    if path.is_file():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(("_", "."))]
        if len(found) >= limit:
            break
    return found[:limit]


def sniff_format(path: Path) -> dict[str, Any] | None:
    """The format the files hold, told from their first bytes (not their names)."""
    files = data_files(path)
    if not files:
        return None
    kinds = set()
    sep = None
    for file in files[:8]:
        try:
            with file.open("rb") as handle:
                head = handle.read(SNIFF_BYTES)
        except OSError:
            return None
        kind, found_sep = _kind(head)
        if kind is None:
            return None
        kinds.add(kind)
        sep = sep or found_sep
    if len(kinds) != 1:
        return None  # a folder of mixed formats: nothing to say
    kind = kinds.pop()
    return {"format": kind, "files": len(files), **({"sep": sep} if sep else {})}


def _kind(head: bytes) -> tuple[str | None, str | None]:
    if head.startswith(b"PAR1"):
        return "parquet", None
    if head.startswith(b"ORC"):
        return "orc", None
    if head.startswith(b"Obj\x01"):
        return "avro", None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None, None
    stripped = text.lstrip("\ufeff \r\n\t")
    if stripped.startswith(("{", "[")):
        return "json", None
    lines = [line for line in stripped.splitlines() if line.strip()][:5]
    if len(lines) < 2:
        return None, None
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(DELIMITERS))
    except csv.Error:
        return None, None
    return "csv", dialect.delimiter


def newest_mtime(path: Path) -> float | None:
    stamps = []
    for file in data_files(path, limit=2000):
        try:
            stamps.append(file.stat().st_mtime)
        except OSError:
            continue
    return max(stamps) if stamps else None


# --------------------------------------------------------------------------- reading


Reader = Callable[[CompiledModule], dict[str, Any]]


def with_config(module: CompiledModule, **changes: Any) -> CompiledModule:
    config = module.spec.config.model_copy(update=changes)
    return module.model_copy(update={"spec": module.spec.model_copy(update={"config": config})})


#: Rows of the failing input a cast-back is measured on.
MEASURE_ROWS = 1000


class SparkReader:
    """Read an Ingress as a run would, minus its schema_hint (the question is what the data
    holds now, not whether it fits the hint): its snapshot, or the error it raised. It also
    measures, on sampled rows, whether every value of a retyped column casts back to the old
    type (`cast_back`); a plain function reader (tests) simply has no measure."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def __call__(self, module: CompiledModule) -> dict[str, Any]:
        from aqueduct_dagster.engine import ModuleFailed, execute_module

        try:
            result = execute_module(self.spark, with_config(module, schema_hint=None), {})
        except ModuleFailed as failure:
            return {"error": failure.error.condition or failure.error.exception_class or "error",
                    "message": str(failure.error.message)[:300]}  # fmt: skip
        snapshot = dict(result.metadata.get("snapshot") or {})
        snapshot["_frame"] = result.outputs["main"]
        return snapshot

    def cast_back(self, frame: Any, column: str, old_type: str) -> dict[str, Any]:
        from pyspark.sql import functions as F

        sample = frame.limit(MEASURE_ROWS)
        quoted = "`" + column.replace("`", "``") + "`"
        row = sample.agg(
            F.count(F.lit(1)).alias("rows"), F.count(F.col(quoted)).alias("had"),
            F.count(F.expr(f"try_cast({quoted} AS {old_type})")).alias("kept"),
        ).collect()[0]  # fmt: skip
        return {"rows": int(row["rows"]), "had": int(row["had"]), "kept": int(row["kept"])}


def _matches(good_fields: Fields, fields: Fields, *, loose: bool = False) -> bool:
    """Every field the last good read had is there with its type (new ones may come along).

    `loose`: the type's family is enough (int/bigint, float/double/decimal, date/timestamp):
    another file format infers other widths; the output contract judges what is published.
    """
    have = {str(p): str(t) for p, t in fields}
    same = _family if loose else str
    return bool(good_fields) and all(p in have and same(have[p]) == same(str(t)) for p, t in good_fields)


_FAMILIES = {"tinyint": "integral", "smallint": "integral", "int": "integral", "bigint": "integral",
             "float": "fractional", "double": "fractional", "date": "temporal", "timestamp": "temporal",
             "timestamp_ntz": "temporal"}  # fmt: skip


def _family(type_name: str) -> str:
    base = type_name.split("(")[0].lower()
    return "fractional" if base == "decimal" else _FAMILIES.get(base, base)


def moved_location(module: CompiledModule, good: Mapping[str, Any], read: Reader) -> dict[str, Any] | None:
    """Where the input went when its location is gone: the one sibling that holds the last
    good schema and is not older than the last good input; every candidate is shown."""
    missing = local_path(module.config.path)
    if missing is None or missing.exists():
        return None
    parts = missing.parts
    base = len(parts)
    while base > 0 and not Path(*parts[:base]).exists():
        base -= 1
    if base == 0:
        return None
    folder, rest = Path(*parts[:base]), parts[base + 1 :]
    want_file = bool(Path(parts[-1]).suffix)  # `stores.csv` was a file, `refunds_2026` a folder
    newest_before = (good.get("files") or {}).get("newest_mtime")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))[:MAX_LOCATION_CANDIDATES]
    shown, fitting = [], []
    for entry in entries:
        candidate = entry.joinpath(*rest)
        if not candidate.exists() or candidate.is_file() != want_file:
            continue
        snapshot = read(with_config(module, path=str(candidate)))
        same_schema = "error" not in snapshot and _matches(good.get("fields") or [], snapshot.get("fields") or [])
        newest = newest_mtime(candidate)
        not_older = newest_before is None or newest is None or newest >= newest_before - 1
        shown.append({"path": str(candidate), "same_schema": same_schema, "not_older": not_older})
        if same_schema and not_older:
            fitting.append(str(candidate))
    return {"from": str(missing), "to": fitting[0] if len(fitting) == 1 else None, "candidates": shown}


def ingress_drift(module: CompiledModule, good: Mapping[str, Any], read: Reader) -> dict[str, Any]:
    """The drift of one Ingress: its read on the failing input against the last good one."""
    now = read(module)
    drift: dict[str, Any] = {"module_id": module.id, "kind": "ingress"}
    if "error" in now:
        drift["read_error"] = now["error"]
        moved = moved_location(module, good, read)
        if moved is not None:
            drift["location"] = moved
    else:
        drift.update(field_diff(good.get("fields") or [], now.get("fields") or []))
        measure = getattr(read, "cast_back", None)
        if measure is not None and now.get("_frame") is not None:
            drift["cast_back"] = {
                path: measure(now["_frame"], path, old) for path, old, _new in drift["retyped"] if "." not in path and "[" not in path
            }
        collapsed = delimiter_change(good, now.get("fields") or [])
        if collapsed is not None:
            trial = read(with_config(module, options={**module.config.options, "sep": collapsed["to"]}))
            collapsed["restores_schema"] = "error" not in trial and _matches(good.get("fields") or [], trial.get("fields") or [])
            drift["delimiter"] = collapsed
    declared = str(module.config.format or good.get("format") or "")
    path = local_path(module.config.path)
    sniffed = sniff_format(path) if path is not None and path.exists() else None
    if sniffed is not None and sniffed["format"] != declared:
        drift["format"] = {"from": declared, "to": sniffed["format"], **{k: v for k, v in sniffed.items() if k != "format"}}
        # Read the way the content says: does that bring the last good schema back?
        options = {"header": "true", "inferSchema": "true"} if sniffed["format"] == "csv" else {}
        if sniffed.get("sep") and sniffed["sep"] != ",":
            options["sep"] = sniffed["sep"]
        changes: dict[str, Any] = {"format": sniffed["format"], "options": {**module.config.options, **options}}
        trial = read(with_config(module, **changes))
        drift["format"]["options"] = options
        drift["format"]["restores_schema"] = "error" not in trial and _matches(
            good.get("fields") or [], trial.get("fields") or [], loose=True
        )
    drift["changed"] = any(drift.get(k) for k in ("read_error", "removed", "added", "retyped", "delimiter", "format", "location"))
    return drift


# --------------------------------------------------------------------------- a heal's drift


def upstream_ingresses(manifest: Manifest, module_id: str) -> list[str]:
    return sorted(m for m in manifest.ancestors(module_id) if manifest.module(m).reads_source)


def compute_drift(manifest: Manifest, failed_module: str, evidence: Mapping[str, Mapping[str, Any]],
                  input_schemas: Mapping[str, Sequence[Sequence[str]]] | None, read: Reader | None) -> dict[str, Any]:  # fmt: skip
    """Drift of the failed module's direct inputs (columns) and of every Ingress upstream of it.

    `evidence` is the last good run's (store.run_evidence); `input_schemas` the columns the
    failed module's inputs had when it failed (by alias); `read` reads an Ingress now (None:
    no Spark, the Ingress drift is left out).
    """
    module = manifest.module(failed_module)
    drift: dict[str, Any] = {}
    for edge in module.inputs:
        good = columns_of((evidence.get(edge.source) or {}).get("columns"))
        now = [(str(c[0]), str(c[1])) for c in (input_schemas or {}).get(edge.alias) or []]
        if good and now:
            drift[edge.source] = {"module_id": edge.source, "kind": "columns", "alias": edge.alias,
                                  "columns_before": [n for n, _ in good], **field_diff(good, now)}  # fmt: skip
    if read is not None:
        for ingress in upstream_ingresses(manifest, failed_module) + ([failed_module] if module.reads_source else []):
            snapshot = (evidence.get(ingress) or {}).get("snapshot")
            if snapshot:
                deep = ingress_drift(manifest.module(ingress), snapshot, read)
                # Keep the direct-input view (its alias) and add what only the read can tell.
                drift[ingress] = {**drift.get(ingress, {}), **deep}
    return drift
