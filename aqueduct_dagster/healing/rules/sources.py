"""Rules for reading and writing the outside world: a path, a file format, a Delta schema."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.rules.common import Refusal, error_param, new_patch


def path_not_found(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "PATH_NOT_FOUND":
        return None
    missing_path = error_param(package, "path") or ""
    missing = Path(re.sub(r"^file:", "", missing_path))
    moved = (package.drift.get(package.failed_module) or {}).get("location")
    if moved:
        if not moved.get("to"):
            shown = "; ".join(f"{c['path']} (schema {'matches' if c['same_schema'] else 'differs'}, "
                              f"{'not older' if c['not_older'] else 'older'})" for c in moved.get("candidates") or [])  # fmt: skip
            return Refusal(f"'{missing}' is gone and no single folder beside it holds the schema of "
                           f"{package.last_good} with input not older than it: {shown or 'no candidates'}")  # fmt: skip
        found = Path(moved["to"])
    elif package.last_good_run:
        return None  # a good run read it, yet nothing decides where it went: no name guess
    else:
        found = _nearest_existing(missing)
    if found is None:
        return None
    replacements = [
        (wrong, right) for wrong, right in zip(missing.parts, found.parts, strict=False) if wrong != right
    ]
    raw_path = str((package.module_raw.get("config") or {}).get("path") or "")
    operations: list[dict] = []
    new_raw = raw_path
    for wrong, right in replacements:
        if wrong in new_raw:
            new_raw = new_raw.replace(wrong, right)
        else:
            key = next((k for k, v in package.context.items() if isinstance(v, str) and wrong in v), None)
            if key is None:
                return None
            operations.append(
                {"op": "replace_context_value", "key": key, "value": package.context[key].replace(wrong, right)}
            )
    if new_raw != raw_path:
        operations.insert(
            0, {"op": "set_module_config_key", "module_id": package.failed_module, "key": "path", "value": new_raw}
        )
    if not operations:
        return None
    return new_patch(
        package, "fix-path", operations,
        rationale=f"'{missing}' does not exist; the nearest existing path is '{found}'",
        root_cause=f"bad path: {missing} not found (typo of {found.name})",
        category="bad_path", confidence=0.85,
    )  # fmt: skip


def _nearest_existing(missing: Path) -> Path | None:
    """Walk up to the deepest existing folder, then match each missing part by name."""
    parts = missing.parts
    base_index = len(parts)
    while base_index > 0 and not Path(*parts[:base_index]).exists():
        base_index -= 1
    if base_index == 0 or base_index == len(parts):
        return None
    current = Path(*parts[:base_index])
    for part in parts[base_index:]:
        if not current.is_dir():
            return None
        names = [p.name for p in current.iterdir() if not p.name.startswith((".", "_"))]
        close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
        if not close:
            return None
        current = current / close[0]
    return current


_FORMAT_ERRORS = ("UNABLE_TO_INFER_SCHEMA", "FAILED_READ_FILE", "CANNOT_READ_FILE_FOOTER")


def wrong_format(package: FailurePackage) -> PatchSpec | None:
    if package.module_type != "Ingress":
        return None
    text = f"{package.condition} {package.error.message}"
    if not (package.condition.startswith(_FORMAT_ERRORS) or "is not a Parquet file" in text):
        return None
    config = package.module_raw.get("config") or {}
    declared = str(config.get("format") or "").lower()
    path = str(config.get("path") or "")
    actual = next((fmt for fmt in ("csv", "json", "parquet") if path.lower().rstrip("/").endswith(f".{fmt}")), None)
    if actual is None or actual == declared:
        return None
    operations = [{"op": "set_module_config_key", "module_id": package.failed_module, "key": "format", "value": actual}]
    if actual == "csv":
        operations.append({"op": "set_module_config_key", "module_id": package.failed_module, "key": "header", "value": True})
    return new_patch(
        package, "fix-format", operations,
        rationale=f"'{path}' is a {actual.upper()} file but the Ingress reads it as {declared or 'the default format'}",
        root_cause=f"wrong format: {declared} reader on a .{actual} file, so Spark cannot infer the schema",
        category="wrong_format", confidence=0.9,
    )  # fmt: skip


_SCHEMA_CHANGED = re.compile(r"schema (?:has )?(?:been )?changed|schema mismatch|schema change", re.I)


def delta_schema_changed(package: FailurePackage) -> PatchSpec | None:
    if package.module_type not in ("Ingress", "Egress"):
        return None
    config = package.module_raw.get("config") or {}
    if str(config.get("format") or "").lower() != "delta":
        return None
    text = f"{package.error.message} {' '.join(package.error.cause_chain)}"
    options = config.get("options") or {}
    if not _SCHEMA_CHANGED.search(text) or str(options.get("mergeSchema")).lower() == "true":
        return None
    return new_patch(
        package, "merge-schema",
        [{"op": "set_module_config_key", "module_id": package.failed_module, "key": "options.mergeSchema", "value": True}],
        rationale="the Delta table's schema changed between runs; mergeSchema lets the new columns through",
        root_cause="Delta schema changed: the table gained columns, and the module does not merge the schema",
        # Schema evolution changes a table for everyone who reads it: a person approves it.
        category="schema_drift", confidence=0.6,
    )  # fmt: skip
