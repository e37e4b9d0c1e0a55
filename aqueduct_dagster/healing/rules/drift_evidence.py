"""Rules that act on what changed since the last good run (`package.drift`, healing/drift.py).

They come first in the rule order: where the evidence speaks, it outranks a reading of the
error text.
"""

from __future__ import annotations

from typing import Any

from aqueduct_dagster.healing import sql_edit
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec
from aqueduct_dagster.healing.rules.common import Refusal, new_patch, rewrite_sql_sites, sql_fields


def _ingress_drifts(package: FailurePackage) -> list[dict[str, Any]]:
    return [d for d in package.drift.values() if d.get("kind") == "ingress"]


def _set_options(module_id: str, updates: dict[str, Any]) -> list[dict]:
    return [{"op": "set_module_config_key", "module_id": module_id, "key": f"options.{k}", "value": v}
            for k, v in updates.items()]  # fmt: skip


def delimiter_changed(package: FailurePackage) -> PatchSpec | Refusal | None:
    for drift in _ingress_drifts(package):
        change = drift.get("delimiter")
        if not change:
            continue
        if not change.get("restores_schema"):
            return Refusal(f"'{drift['module_id']}' reads one column named {change['header']!r}: the CSV delimiter "
                           f"looks changed from {change['from']!r} to {change['to']!r}, but reading with "
                           f"{change['to']!r} does not give back the columns of {package.last_good}")  # fmt: skip
        return new_patch(
            package, "csv-delimiter", _set_options(drift["module_id"], {"sep": change["to"]}),
            rationale=f"'{drift['module_id']}' now reads a single column named like the old header line: the "
            f"file is delimited by {change['to']!r}; read with sep {change['to']!r} it has the columns of {package.last_good}",
            root_cause=f"the CSV delimiter changed upstream from {change['from']!r} to {change['to']!r}",
            category="schema_drift", confidence=0.9,
        )  # fmt: skip
    return None


def format_changed(package: FailurePackage) -> PatchSpec | Refusal | None:
    for drift in _ingress_drifts(package):
        change = drift.get("format")
        if not change:
            continue
        if not change.get("restores_schema"):
            return Refusal(f"the files of '{drift['module_id']}' now hold {change['to']} (from their content), not "
                           f"{change['from']}, but read as {change['to']} they do not have the columns of "
                           f"{package.last_good}")  # fmt: skip
        operations = [{"op": "set_module_config_key", "module_id": drift["module_id"], "key": "format", "value": change["to"]}]
        operations += _set_options(drift["module_id"], change.get("options") or {})
        return new_patch(
            package, "source-format", operations,
            rationale=f"the files of '{drift['module_id']}' are {change['to']} (told from their content, {change.get('files')} "
            f"file(s)); read as {change['to']} they have the columns of {package.last_good}",
            root_cause=f"the upstream system changed its output format from {change['from']} to {change['to']}",
            category="wrong_format", confidence=0.85,
        )  # fmt: skip
    return None


def retyped_column(package: FailurePackage) -> PatchSpec | Refusal | None:
    """An input column whose type changed upstream while every value still casts back: reads
    cast it back, so what the pipeline publishes keeps its type. When values no longer cast
    back, the change is one of meaning (currency strings, a new format): a person decides."""
    for drift in _ingress_drifts(package):
        measured = drift.get("cast_back") or {}
        for path, old, new in drift.get("retyped") or []:
            if path not in measured or not _reads_column(package, drift["module_id"], path):
                continue
            m = measured[path]
            if new != "string" or old == "string":
                # Only text that still spells the old type is cast back: narrowing the other
                # way (a string column now read as numbers, a double as int) loses what was
                # there (leading zeros, fractions) without an error.
                return Refusal(f"'{path}' of '{drift['module_id']}' changed from {old} to {new} since "
                               f"{package.last_good}; casting it back could change values silently: a person decides")  # fmt: skip
            if m["had"] == 0 or m["kept"] < m["had"]:
                return Refusal(f"'{path}' of '{drift['module_id']}' changed from {old} to {new} since {package.last_good}, "
                               f"and {m['had'] - m['kept']} of {m['had']} sampled values no longer cast to {old}: "
                               f"the values changed meaning, a person decides")  # fmt: skip
            operations = _hint_follows(package, drift["module_id"], path, new)
            for module_id, key, text in _sql_readers(package, drift["module_id"]):
                if sql_edit.contains_identifier(text, path):
                    operations.append({"op": "set_module_config_key", "module_id": module_id, "key": key,
                                       "value": sql_edit.cast_input_column(text, path, old)})  # fmt: skip
            if not any(op["key"] != "schema_hint" and not op["key"].startswith("schema_hint.") for op in operations):
                return None
            return new_patch(
                package, "cast-back", operations,
                rationale=f"'{path}' of '{drift['module_id']}' now arrives as {new} (it was {old} in {package.last_good}); "
                f"all {m['had']} sampled values cast back to {old}, so its readers cast it and the published type stays {old}",
                root_cause=f"upstream retyped `{path}` from {old} to {new}",
                category="schema_drift", confidence=0.85,
            )  # fmt: skip
    return None


def _reads_column(package: FailurePackage, ingress: str, column: str) -> bool:
    return any(sql_edit.contains_identifier(text, column) for _, _, text in _sql_readers(package, ingress))


def _sql_readers(package: FailurePackage, ingress: str) -> list[tuple[str, str, str]]:
    """(module id, key, SQL) of the modules in the package that read `ingress`: directly, or
    on the way from it to the failure (the package carries those as "reader" neighbours)."""
    found = []
    for neighbour in package.neighbourhood:
        sources = {entry.partition(" as ")[0] for entry in neighbour.inputs}
        reads = ingress in sources or neighbour.role in ("reader", "failed", "upstream")
        if reads and neighbour.id != ingress:
            found += [(neighbour.id, key, text) for key, text in sql_fields(neighbour.config)]
    return found


def _hint_follows(package: FailurePackage, ingress: str, column: str, new_type: str) -> list[dict]:
    """The Ingress's schema_hint, if it pins `column`, now says the type the data has."""
    if package.failed_module != ingress:
        return []
    hint = (package.module_raw.get("config") or {}).get("schema_hint")
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        columns = [dict(c, type=new_type) if c.get("name") == column else c for c in hint["columns"]]
        return [{"op": "set_module_config_key", "module_id": ingress, "key": "schema_hint.columns", "value": columns}]
    if isinstance(hint, dict) and column in hint:
        return [{"op": "set_module_config_key", "module_id": ingress, "key": f"schema_hint.{column}", "value": new_type}]
    return []


def _removed_match(package: FailurePackage, missing: str) -> tuple[dict[str, Any], str] | None:
    """The drift entry and field path in which `missing` disappeared since the last good run."""
    lowered = missing.lower()
    for drift in package.drift.values():
        for path, _type in drift.get("removed") or []:
            if path.lower() == lowered or path.lower().rsplit(".", 1)[-1] == lowered:
                return drift, path
    return None


def rename_from_drift(package: FailurePackage, missing: str) -> PatchSpec | Refusal | None:
    """A column (or nested field) the last good run had: renamed only where one reading exists."""
    found = _removed_match(package, missing)
    if found is None:
        return None  # not a drift: the Blueprint asks for something no good run had (a typo)
    drift, path = found
    renamed = {old: new for old, new, _ in drift.get("renamed") or []}
    where = drift["module_id"]
    if path not in renamed:
        candidates = (drift.get("rename_candidates") or {}).get(path) or []
        added = ", ".join(f"{p} {t}" for p, t in drift.get("added") or []) or "none"
        if len(candidates) > 1:
            return Refusal(f"'{path}' of '{where}' is gone since {package.last_good}; several new fields could "
                           f"be it ({', '.join(candidates)}): a person decides which")  # fmt: skip
        if candidates:
            return Refusal(f"'{path}' of '{where}' is gone since {package.last_good}; '{candidates[0]}' appeared with "
                           f"its type, but neither its name nor its place ties it to '{path}': a person decides")  # fmt: skip
        return Refusal(f"'{path}' of '{where}' is gone since {package.last_good} and no new field of its type "
                       f"replaces it (added: {added}): nothing carries its values now")  # fmt: skip
    new = renamed[path]
    nested = "." in path
    old_name, new_name = path.rsplit(".", 1)[-1], new.rsplit(".", 1)[-1]

    def rename(text: str) -> str | None:
        if nested:
            return sql_edit.replace_path(text, path, new) if sql_edit.contains_path(text, path) else None
        if not sql_edit.contains_identifier(text, old_name):
            return None
        # The column was renamed in the input: reads follow it, the outputs keep their names.
        return sql_edit.rename_input_column(text, old_name, new_name)

    operations = rewrite_sql_sites(package, rename)
    if not operations:
        return Refusal(f"'{path}' of '{where}' was renamed '{new}', but '{package.failed_module}' does not write "
                       f"'{path}' where a patch can change it")  # fmt: skip
    return new_patch(
        package, "rename-field" if nested else "rename-column", operations,
        rationale=f"'{path}' of '{where}' became '{new}' since {package.last_good}: it is the only new field of "
        f"the same type{' under the same parent' if nested else ''}",
        root_cause=f"upstream schema drift: `{path}` was renamed `{new}` in '{where}'",
        category="schema_drift", confidence=0.9,
    )  # fmt: skip
