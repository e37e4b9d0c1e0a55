"""The offline diagnoser: deterministic rules for the failures that need no LLM.

Each rule looks at a `FailurePackage` and either proposes a `PatchSpec` or passes. A rule
edits the Blueprint as written (templating intact): a column typo inside a macro is fixed in
the macro, a wrong file name in the path's literal part, never by baking in compiled values.
When no rule fits, the diagnoser says so plainly; it never guesses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aqueduct_dagster.healing import blame, sql_edit
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec, new_patch_id
from aqueduct_dagster.healing.policy import ENGINE_CONFIG_ALLOWLIST, SQL_KEYS


@dataclass(frozen=True)
class Refusal:
    """A rule that recognised the failure but will not patch it: why, with the evidence."""

    reason: str


@dataclass(frozen=True)
class Diagnosis:
    patch: PatchSpec | None
    rule: str | None
    reason: str


Rule = Callable[[FailurePackage], "PatchSpec | Refusal | None"]
_RULES: list[tuple[str, Rule]] = []


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        _RULES.append((name, function))
        return function

    return register


def diagnose_with_rules(package: FailurePackage) -> Diagnosis:
    for name, function in _RULES:
        patch = function(package)
        if isinstance(patch, Refusal):
            # A rule that knows this failure and refuses outranks every later, weaker reading.
            return Diagnosis(patch=None, rule=None, reason=f"{name}: {patch.reason}")
        if patch is not None:
            patch.misc.setdefault("diagnoser", f"rules/{name}")
            return Diagnosis(patch=patch, rule=name, reason=patch.rationale)
    what = package.error.condition or package.error.exception_class or "this error"
    return Diagnosis(
        patch=None,
        rule=None,
        reason=f"no rule for {what} in module '{package.failed_module}'",
    )


# --------------------------------------------------------------------------- helpers


def _patch(package: FailurePackage, slug: str, operations: list[dict], *, rationale: str,
           root_cause: str, category: str, confidence: float) -> PatchSpec:  # fmt: skip
    return PatchSpec(
        patch_id=new_patch_id(f"{package.blueprint_id}-{slug}"),
        run_id=package.run_id,
        rationale=rationale,
        root_cause=root_cause,
        category=category,
        confidence=confidence,
        operations=operations,
    )



def _text_fields(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, text) for every SQL-bearing string in a raw config block."""
    for key, value in config.items():
        if key in SQL_KEYS and isinstance(value, str):
            yield key, value


def _rewrite_sql_sites(package: FailurePackage, edit: Callable[[str], str | None]) -> list[dict]:
    """Operations that apply `edit` where the SQL is written: module config and used macros."""
    operations: list[dict] = []
    config = package.module_raw.get("config") or {}
    for key, text in _text_fields(config):
        changed = edit(text)
        if changed is not None and changed != text:
            operations.append(
                {"op": "set_module_config_key", "module_id": package.failed_module, "key": key, "value": changed}
            )
    for key, value in config.items():
        if key in SQL_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            changed_list = [edit(v) or v for v in value]
            if changed_list != value:
                operations.append(
                    {"op": "set_module_config_key", "module_id": package.failed_module, "key": key, "value": changed_list}
                )
    for name, body in package.macros.items():
        changed = edit(body)
        if changed is not None and changed != body:
            operations.append({"op": "replace_macro", "name": name, "value": changed})
    return operations


def _param(package: FailurePackage, *names: str) -> str | None:
    for name in names:
        if package.error.message_parameters.get(name):
            return package.error.message_parameters[name]
    return None


_ABBREVIATIONS = {
    "ts": ("time", "timestamp"), "dt": ("date", "datetime"), "amt": ("amount",),
    "qty": ("quantity",), "num": ("number",), "cust": ("customer",), "id": ("key",),
    "addr": ("address",), "desc": ("description",), "cnt": ("count",),
}  # fmt: skip


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[_\W]+", name.lower()) if t]


def _expanded(name: str) -> set[str]:
    tokens = set(_tokens(name))
    for token in list(tokens):
        tokens.update(_ABBREVIATIONS.get(token, ()))
    return tokens


def _candidate_score(missing: str, candidate: str, sql: str) -> float:
    score = difflib.SequenceMatcher(None, missing.lower(), candidate.lower()).ratio()
    wanted, offered = _expanded(missing), set(_tokens(candidate))
    score += 0.4 * len(wanted & offered) / max(len(offered), 1)
    # Lineage: `CAST(event_ts AS ...) AS event_time` says which column the author meant.
    if candidate.lower() in (a.lower() for a in sql_edit.select_aliases_using(sql, missing)):
        score += 0.5
    # A column the query already reads under its own name is rarely the renamed one.
    if sql_edit.contains_identifier(sql, candidate):
        score -= 0.3
    return score


def _message_columns(message: str) -> list[str]:
    """Columns Spark names in the message: the proposal list or a `Relation [a#1,b#2]` plan."""
    names: list[str] = []
    proposal = re.search(r"Did you mean one of the following\?\s*\[([^\]]*)\]", message)
    if proposal:
        names += sql_edit.split_proposals(proposal.group(1))
    for relation in re.findall(r"Relation \[([^\]]*)\]", message):
        names += [part.split("#")[0] for part in relation.split(",")]
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


# --------------------------------------------------------------------------- drift evidence
# Rules that act on what changed since the last good run (package.drift, healing/drift.py).
# They come first: where the evidence speaks, it outranks a reading of the error text.


def _ingress_drifts(package: FailurePackage) -> list[dict[str, Any]]:
    return [d for d in package.drift.values() if d.get("kind") == "ingress"]



def _set_options(module_id: str, updates: dict[str, Any]) -> list[dict]:
    return [{"op": "set_module_config_key", "module_id": module_id, "key": f"options.{k}", "value": v}
            for k, v in updates.items()]  # fmt: skip


@rule("delimiter_changed")
def delimiter_changed(package: FailurePackage) -> PatchSpec | Refusal | None:
    for drift in _ingress_drifts(package):
        change = drift.get("delimiter")
        if not change:
            continue
        if not change.get("restores_schema"):
            return Refusal(f"'{drift['module_id']}' reads one column named {change['header']!r}: the CSV delimiter "
                           f"looks changed from {change['from']!r} to {change['to']!r}, but reading with "
                           f"{change['to']!r} does not give back the columns of {package.last_good}")  # fmt: skip
        return _patch(
            package, "csv-delimiter", _set_options(drift["module_id"], {"sep": change["to"]}),
            rationale=f"'{drift['module_id']}' now reads a single column named like the old header line: the "
            f"file is delimited by {change['to']!r}; read with sep {change['to']!r} it has the columns of {package.last_good}",
            root_cause=f"the CSV delimiter changed upstream from {change['from']!r} to {change['to']!r}",
            category="schema_drift", confidence=0.9,
        )  # fmt: skip
    return None


@rule("format_changed")
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
        return _patch(
            package, "source-format", operations,
            rationale=f"the files of '{drift['module_id']}' are {change['to']} (told from their content, {change.get('files')} "
            f"file(s)); read as {change['to']} they have the columns of {package.last_good}",
            root_cause=f"the upstream system changed its output format from {change['from']} to {change['to']}",
            category="wrong_format", confidence=0.85,
        )  # fmt: skip
    return None


@rule("retyped_column")
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
            return _patch(
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
            found += [(neighbour.id, key, text) for key, text in _text_fields(neighbour.config)]
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


def _rename_from_drift(package: FailurePackage, missing: str) -> PatchSpec | Refusal | None:
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

    operations = _rewrite_sql_sites(package, rename)
    if not operations:
        return Refusal(f"'{path}' of '{where}' was renamed '{new}', but '{package.failed_module}' does not write "
                       f"'{path}' where a patch can change it")  # fmt: skip
    return _patch(
        package, "rename-field" if nested else "rename-column", operations,
        rationale=f"'{path}' of '{where}' became '{new}' since {package.last_good}: it is the only new field of "
        f"the same type{' under the same parent' if nested else ''}",
        root_cause=f"upstream schema drift: `{path}` was renamed `{new}` in '{where}'",
        category="schema_drift", confidence=0.9,
    )  # fmt: skip


# --------------------------------------------------------------------------- rules


@rule("unresolved_column")
def unresolved_column(package: FailurePackage) -> PatchSpec | None:
    if not package.condition.startswith(("UNRESOLVED_COLUMN", "FIELD_NOT_FOUND")):
        return None
    object_name = _param(package, "objectName", "fieldName")
    if object_name is None:
        match = re.search(r"name `([^`]+)`(?:\.`([^`]+)`)?\s+cannot be resolved", package.error.message)
        object_name = (match.group(2) or match.group(1)) if match else None
    if not object_name:
        return None
    missing = sql_edit.strip_identifier(object_name)
    # Where the column disappeared since the last good run, the drift decides; where no good
    # run had it either, the Blueprint has a typo and the reading below applies.
    evidence = _rename_from_drift(package, missing)
    if evidence is not None:
        return evidence
    candidates = sql_edit.split_proposals(_param(package, "proposal") or "")
    candidates += [c for c in _message_columns(package.error.message) if c not in candidates]
    upstream = {c for cols in package.upstream_columns().values() for c in cols}
    if upstream:
        candidates += sorted(c for c in upstream if c not in candidates)
        candidates = [c for c in candidates if c in upstream]
    candidates = [c for c in candidates if c.lower() != missing.lower()]
    if not candidates:
        return None
    sql = "\n".join(text for _, text in _text_fields(package.module_raw.get("config") or {}))
    sql += "\n" + "\n".join(package.macros.values())
    ranked = sorted(((_candidate_score(missing, c, sql), c) for c in candidates), reverse=True)
    best_score, best = ranked[0]
    if best_score < 0.6 or (len(ranked) > 1 and best_score - ranked[1][0] < 0.05):
        return None  # too close to call: a person (or the LLM) should pick
    # Upstream drift: downstream still reads the old name, so the query keeps emitting it
    # (`new AS old`). A typo in this module: downstream reads the right name; rename plainly.
    downstream = yaml.safe_dump([n.config for n in package.neighbourhood if n.role == "downstream"])
    keep_output = sql_edit.contains_identifier(downstream, missing) or not sql_edit.contains_identifier(
        downstream, best
    )

    def rename(text: str) -> str | None:
        if not sql_edit.contains_identifier(text, missing):
            return None
        if keep_output and re.search(r"\bSELECT\b", text, re.I):
            return sql_edit.rename_keeping_output(text, missing, best)
        return sql_edit.replace_identifier(text, missing, best)

    operations = _rewrite_sql_sites(package, rename)
    if not operations:
        return None
    return _patch(
        package, "rename-column", operations,
        rationale=f"column '{missing}' no longer exists upstream; '{best}' is the column it became",
        root_cause=f"upstream schema drift: `{missing}` cannot be resolved, `{best}` is available "
        f"(candidates: {', '.join(c for _, c in ranked[:4])})",
        category="schema_drift", confidence=round(min(0.95, 0.5 + best_score / 3), 2),
    )  # fmt: skip


@rule("path_not_found")
def path_not_found(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "PATH_NOT_FOUND":
        return None
    missing_path = _param(package, "path") or ""
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
    return _patch(
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


@rule("wrong_format")
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
    return _patch(
        package, "fix-format", operations,
        rationale=f"'{path}' is a {actual.upper()} file but the Ingress reads it as {declared or 'the default format'}",
        root_cause=f"wrong format: {declared} reader on a .{actual} file, so Spark cannot infer the schema",
        category="wrong_format", confidence=0.9,
    )  # fmt: skip


# Lazy data faults (CAST_INVALID_INPUT, DIVIDE_BY_ZERO) are patched in the module that holds
# them, which blame (healing/blame.py, run by the heal job) names as `failed_module`, even
# when they surfaced downstream (`surfaced_in`). What is checked where:
# - here, from the package alone: the failing expression (Spark's fragment) or, without one,
#   the cast target is written in that module's SQL; a patch in another module than the
#   surfacing one needs the fragment;
# - in the heal job, on a sample of the real input (blame.measure_safe_rewrite): how many
#   values the expression had and how many its try_ form keeps (`package.fault.evidence`).
#   Here a rewrite that keeps none of them is refused, and so is one whose measure failed;
#   a package nobody measured (built by hand) goes on to the gates.


def _fault_evidence(package: FailurePackage) -> dict[str, Any] | None:
    evidence = package.fault.get("evidence")
    return evidence if isinstance(evidence, dict) else None


def _evidence_refusal(package: FailurePackage, safe_form: str) -> Refusal | None:
    evidence = _fault_evidence(package)
    if evidence is None:
        return None
    if not evidence.get("measured"):
        return Refusal(f"{safe_form} not proposed for '{package.failed_module}': its effect could not be "
                       f"measured on sampled input ({evidence.get('why', 'no sample')})")  # fmt: skip
    if blame.nulls_whole_column(evidence):
        return Refusal(
            f"{safe_form} would turn every value of {evidence.get('expression')!r} in '{package.failed_module}' "
            f"into NULL: {evidence.get('had_values')} of {evidence.get('rows')} sampled rows had a value, "
            f"{evidence.get('kept_values')} would keep one; the data changed shape, a person decides"
        )  # fmt: skip
    lost = blame.lost_data_values(evidence)
    if lost > 0:
        return Refusal(
            f"{safe_form} in '{package.failed_module}' would turn {lost} of {evidence.get('had_values')} sampled values "
            f"of {evidence.get('expression')!r} into NULL that are not empty markers (N/A, -, null...): they look "
            f"like data in a new shape (another format, a unit or currency sign); a person decides"
        )  # fmt: skip
    return None


def _fragment_pattern(fragment: str) -> re.Pattern[str]:
    """`fragment` as written in SQL, whatever its spacing, quoting and case."""
    parts = re.split(r"(\s+|[(),/*+<>=-])", fragment.strip())
    pieces = []
    for part in parts:
        if not part:
            continue
        if part.isspace():
            pieces.append(r"\s*")
        elif re.fullmatch(r"[(),/*+<>=-]", part):
            pieces.append(rf"\s*{re.escape(part)}\s*")
        else:
            pieces.append("`?" + re.escape(part.strip("`")) + "`?")
    # Not inside a longer name: CAST(...) must not match the tail of TRY_CAST(...).
    return re.compile(r"(?<![\w.])" + "".join(pieces), re.I)


def _rewrite_fragment(text: str, fragment: str, rewrite: Callable[[str], str | None]) -> str | None:
    """`text` with each occurrence of the failing expression (outside literals) rewritten."""
    pattern = _fragment_pattern(fragment)
    if not pattern.search(text):
        return None
    return sql_edit._edit_outside_protected(text, lambda segment: pattern.sub(lambda m: rewrite(m.group(0)) or m.group(0), segment))


def _located_fragment(package: FailurePackage) -> str | None:
    fragment = blame.fault_fragment(package.error.model_dump())
    return fragment or package.fault.get("fragment") or None


def _surfaced_elsewhere(package: FailurePackage) -> bool:
    return bool(package.surfaced_in) and package.surfaced_in != package.failed_module


@rule("cast_invalid_input")
def cast_invalid_input(package: FailurePackage) -> PatchSpec | Refusal | None:
    if package.condition != "CAST_INVALID_INPUT":
        return None
    target = (_param(package, "targetType") or "").strip('"').strip()
    if not target:
        return None
    fragment = _located_fragment(package)
    if fragment is not None and not re.match(r"\s*cast\s*\(", fragment, re.I):
        fragment = None  # a DataFrame context names the function, not the expression
    if fragment is None and _surfaced_elsewhere(package):
        return None  # which CAST, in a module other than the failing one, is not known
    if fragment is not None:
        operations = _rewrite_sql_sites(package, lambda t: _rewrite_fragment(t, fragment, sql_edit.cast_to_try_cast))
    else:
        to_target = re.compile(rf"(?<![\w.])cast\s*\((?:[^()]|\([^()]*\))+?\s+as\s+{_type_pattern(target)}\s*\)", re.I)
        operations = _rewrite_sql_sites(
            package, lambda t: to_target.sub(lambda m: sql_edit.cast_to_try_cast(m.group(0)), t) if to_target.search(t) else None
        )  # fmt: skip
    if not operations:
        return None
    refusal = _evidence_refusal(package, "TRY_CAST")
    if refusal is not None:
        return refusal
    where = f" (it surfaced in '{package.surfaced_in}')" if _surfaced_elsewhere(package) else ""
    return _patch(
        package, "try-cast", operations,
        rationale=f"malformed values cannot be cast to {target}; TRY_CAST in '{package.failed_module}' turns them "
        f"into NULL{where}{_measured(package)}",
        root_cause=f"CAST_INVALID_INPUT: some source values are not valid {target} under ANSI mode",
        category="data_quality", confidence=0.8,
    )  # fmt: skip


def _type_pattern(target: str) -> str:
    """A type name as SQL may write it: `DECIMAL(12,2)` matches `decimal(12, 2)`."""
    return re.escape(target.replace(" ", "")).replace(",", r"\s*,\s*")


def _measured(package: FailurePackage) -> str:
    evidence = _fault_evidence(package)
    if not evidence or not evidence.get("measured"):
        return ""
    lost = evidence["had_values"] - evidence["kept_values"]
    return f"; on {evidence['rows']} sampled rows {lost} of {evidence['had_values']} values become NULL"


@rule("divide_by_zero")
def divide_by_zero(package: FailurePackage) -> PatchSpec | Refusal | None:
    if package.condition != "DIVIDE_BY_ZERO":
        return None
    fragment = _located_fragment(package)
    if fragment is not None and "/" not in fragment:
        fragment = None
    if fragment is None and _surfaced_elsewhere(package):
        return None
    if fragment is not None:
        operations = _rewrite_sql_sites(package, lambda t: _rewrite_fragment(t, fragment, sql_edit.divide_to_try_divide))
    else:
        operations = _rewrite_sql_sites(package, sql_edit.divide_to_try_divide)
    if not operations:
        return None
    refusal = _evidence_refusal(package, "try_divide")
    if refusal is not None:
        return refusal
    where = f" (it surfaced in '{package.surfaced_in}')" if _surfaced_elsewhere(package) else ""
    return _patch(
        package, "try-divide", operations,
        rationale=f"a divisor is zero for some rows; try_divide in '{package.failed_module}' returns NULL for those "
        f"rows instead of failing{where}{_measured(package)}",
        root_cause="DIVIDE_BY_ZERO under ANSI mode: a denominator column holds zeros",
        category="data_quality", confidence=0.8,
    )  # fmt: skip


@rule("schema_hint_mismatch")
def schema_hint_mismatch(package: FailurePackage) -> PatchSpec | None:
    message = package.error.message
    column = _param(package, "column")
    actual = _param(package, "actual")
    if package.condition != "AQ_SCHEMA_HINT_MISMATCH":
        match = re.search(r"schema_hint type mismatch on '([^']+)': expected '[^']+', actual '([^']+)'", message)
        if not match:
            return None
        column, actual = match.groups()
    if not column or not actual or package.module_type != "Ingress":
        return None
    hint = (package.module_raw.get("config") or {}).get("schema_hint")
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        columns = [dict(c, type=actual) if c.get("name") == column else c for c in hint["columns"]]
        operation = {"op": "set_module_config_key", "module_id": package.failed_module,
                     "key": "schema_hint.columns", "value": columns}  # fmt: skip
    elif isinstance(hint, dict) and column in hint:
        operation = {"op": "set_module_config_key", "module_id": package.failed_module,
                     "key": f"schema_hint.{column}", "value": actual}  # fmt: skip
    else:
        return None
    return _patch(
        package, "schema-hint", [operation],
        rationale=f"the data's '{column}' is {actual}; the schema_hint now says so",
        root_cause=f"schema_hint for '{column}' expects another type than the source's {actual}",
        category="schema_drift", confidence=0.75,
    )  # fmt: skip


@rule("ambiguous_reference")
def ambiguous_reference(package: FailurePackage) -> PatchSpec | None:
    if not package.condition.startswith("AMBIGUOUS_REFERENCE"):
        return None
    name = sql_edit.strip_identifier(_param(package, "name") or "")
    references = re.findall(r"`([^`]+)`\.`[^`]+`", _param(package, "referenceNames") or "")
    if not name or not references:
        return None
    # The side that had the column in the last good run is the one the query meant; the
    # side listed first by Spark is only the first in the plan (often the one that gained it).
    sides = _qualifier_sources(package)
    had = [q for q in references if name.lower() in _columns_before(package, sides.get(q.lower(), q))]
    if len(had) != 1:
        before = {q: sorted(_columns_before(package, sides.get(q.lower(), q)))[:12] for q in references}
        return Refusal(f"'{name}' is in {', '.join(references)}; {'none' if not had else 'more than one'} of them "
                       f"had it in {package.last_good} (columns then: {before}): a person picks the side")  # fmt: skip
    qualifier = had[0]
    operations = _rewrite_sql_sites(
        package,
        lambda t: sql_edit.qualify_identifier(t, name, qualifier) if sql_edit.contains_identifier(t, name) else None,
    )
    if not operations:
        return None
    return _patch(
        package, "qualify", operations,
        rationale=f"'{name}' exists in several joined inputs; it is now read from '{qualifier}'",
        root_cause=f"AMBIGUOUS_REFERENCE: `{name}` is in {', '.join(references)}",
        category="sql", confidence=0.7,
    )  # fmt: skip


def _qualifier_sources(package: FailurePackage) -> dict[str, str]:
    """Table alias in the failed module's SQL -> the module it reads (`s` -> `shipments`)."""
    import sqlglot
    from sqlglot import exp

    inputs = {}
    for neighbour in package.neighbourhood:
        if neighbour.role == "failed":
            for entry in neighbour.inputs:
                source, _, alias = entry.partition(" as ")
                inputs[(alias or source).lower()] = source
    sides: dict[str, str] = {}
    for _key, text in _text_fields(package.module_raw.get("config") or {}):
        try:
            tree = sqlglot.parse_one(text, read="spark")
        except Exception:  # noqa: BLE001 - templated or partial SQL: no aliases from it
            continue
        for table in tree.find_all(exp.Table):
            source = inputs.get(table.name.lower(), table.name)
            sides[table.alias_or_name.lower()] = source
            sides[table.name.lower()] = source
    return sides


def _columns_before(package: FailurePackage, module_id: str) -> set[str]:
    drift = package.drift.get(module_id) or {}
    return {c.lower() for c in drift.get("columns_before") or []}


def _engine_patch(package: FailurePackage, slug: str, key: str, value: str, *, rationale: str,
                  root_cause: str, category: str) -> PatchSpec:  # fmt: skip
    assert key in ENGINE_CONFIG_ALLOWLIST
    return _patch(
        package, slug, [{"op": "set_engine_config", "engine": "spark", "key": key, "value": value}],
        rationale=rationale, root_cause=root_cause, category=category, confidence=0.75,
    )  # fmt: skip


@rule("driver_max_result_size")
def driver_max_result_size(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.error.message} {' '.join(package.error.cause_chain)}"
    if "spark.driver.maxResultSize" not in text and package.condition != "SPARK_DRIVER_RESULT_TOO_LARGE":
        return None
    return _engine_patch(
        package, "max-result-size", "spark.driver.maxResultSize", "4g",
        rationale="results sent to the driver exceed spark.driver.maxResultSize; raise the cap",
        root_cause="driver result too large: serialized task results are bigger than spark.driver.maxResultSize",
        category="oom_config",
    )  # fmt: skip


_SHUFFLE_OOM = re.compile(r"ExecutorLostFailure|exceeding memory limits|Too large frame|OutOfMemoryError", re.I)


@rule("shuffle_oom")
def shuffle_oom(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.condition} {package.error.message} {' '.join(package.error.cause_chain)}"
    if "GC overhead" in text or package.condition == "SPARK_GC_OVERHEAD_LIMIT":
        return _engine_patch(
            package, "executor-memory", "spark.executor.memory", "8g",
            rationale="executors spend their time in garbage collection; give them more heap",
            root_cause="GC overhead limit exceeded: the executor heap is too small for this aggregation",
            category="oom_config",
        )  # fmt: skip
    if "Container killed" in text and "Exit code is 143" in text:
        return _engine_patch(
            package, "memory-overhead", "spark.executor.memoryOverhead", "2g",
            rationale="executors are killed for exceeding their container memory; raise the overhead",
            root_cause="executor lost: container memory (heap + overhead) exceeded during a skewed shuffle",
            category="oom_config",
        )  # fmt: skip
    if not (_SHUFFLE_OOM.search(text) or package.condition == "SPARK_EXECUTOR_OOM"):
        return None
    return _engine_patch(
        package, "shuffle-partitions", "spark.sql.shuffle.partitions", "800",
        rationale="shuffle partitions are too large for executor memory; split the shuffle into more partitions",
        root_cause="executor OOM during shuffle: too few shuffle partitions for the data volume",
        category="oom_config",
    )  # fmt: skip


@rule("broadcast_timeout")
def broadcast_timeout(package: FailurePackage) -> PatchSpec | None:
    text = f"{package.condition} {package.error.message}"
    if "broadcast" not in text.lower() or not re.search(r"timeout|Could not execute broadcast|larger than", text, re.I):
        return None
    return _engine_patch(
        package, "no-broadcast", "spark.sql.autoBroadcastJoinThreshold", "-1",
        rationale="the broadcast side is too large to broadcast in time; let Spark use a shuffle join",
        root_cause="broadcast join timeout: the table chosen for broadcast is too large",
        category="oom_config",
    )  # fmt: skip


_RESERVED = {"user", "order", "group", "select", "from", "where", "table", "date", "timestamp",
             "limit", "end", "case", "when", "values", "current_user", "desc", "asc", "by"}  # fmt: skip


@rule("reserved_identifier")
def reserved_identifier(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "PARSE_SYNTAX_ERROR":
        return None
    token = (_param(package, "error") or "").strip("'\"`")
    if not token:
        match = re.search(r"Syntax error at or near '([^']+)'", package.error.message)
        token = match.group(1) if match else ""
    if token.lower() not in _RESERVED:
        return None
    pattern = re.compile(rf"(?<![\w`.]){re.escape(token)}(?=\s*(,|$|\n|\bAS\b))", re.I | re.M)
    operations = _rewrite_sql_sites(package, lambda t: pattern.sub(f"`{token}`", t) if pattern.search(t) else None)
    if not operations:
        return None
    return _patch(
        package, "quote-reserved", operations,
        rationale=f"'{token}' is a reserved word in Spark SQL; quoting it as `{token}` makes it a column name",
        root_cause=f"syntax error: the column name {token} is a reserved keyword and must be backtick-quoted",
        category="sql", confidence=0.8,
    )  # fmt: skip


_NUMERIC_REQUIRED = re.compile(r"\bNUMERIC\b|\b(?:BIG|SMALL|TINY)?INT\b|\bDOUBLE\b|\bDECIMAL\b", re.I)


@rule("string_where_numeric_expected")
def string_where_numeric_expected(package: FailurePackage) -> PatchSpec | None:
    if package.condition != "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE":
        return None
    message = package.error.message
    input_type = _param(package, "inputType") or _search(r'has the type ("[^"]+")', message) or ""
    required = _param(package, "requiredType") or _search(r"requires the (.+?) type, however", message) or ""
    input_sql = (_param(package, "inputSql") or _search(r'however ("[^"]+") has the type', message) or "").strip('"')
    call = (_param(package, "sqlExpr") or _search(r'Cannot resolve ("[^"]+")', message) or "").strip('"')
    if input_type.strip('"').upper() != "STRING" or not _NUMERIC_REQUIRED.search(required):
        return None
    function = re.match(r"(\w+)\s*\(", call)
    if function is None or not re.fullmatch(r"[A-Za-z_]\w*", input_sql):
        return None  # only a plain column given straight to a function; anything else is a guess
    # SUM(event_id) / sum(t.`event_id`) / avg(DISTINCT event_id): the argument becomes a DOUBLE.
    argument = rf"(?:\w+\.)?`?{re.escape(input_sql)}`?"
    pattern = re.compile(rf"(?<![\w.])({re.escape(function.group(1))}\s*\(\s*(?:DISTINCT\s+)?)({argument})(\s*\))", re.I)
    operations = _rewrite_sql_sites(
        package, lambda t: pattern.sub(r"\1CAST(\2 AS DOUBLE)\3", t) if pattern.search(t) else None
    )
    if not operations:
        return None
    return _patch(
        package, "cast-numeric", operations,
        rationale=f"'{input_sql}' is read as STRING; {function.group(1)}() needs a number, so it is cast to DOUBLE",
        root_cause=f"type mismatch: {function.group(1)}({input_sql}) needs a numeric input, "
        f"but the column {input_sql} has the type string",
        category="type_mismatch", confidence=0.75,
    )  # fmt: skip


def _search(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


_SCHEMA_CHANGED = re.compile(r"schema (?:has )?(?:been )?changed|schema mismatch|schema change", re.I)


@rule("delta_schema_changed")
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
    return _patch(
        package, "merge-schema",
        [{"op": "set_module_config_key", "module_id": package.failed_module, "key": "options.mergeSchema", "value": True}],
        rationale="the Delta table's schema changed between runs; mergeSchema lets the new columns through",
        root_cause="Delta schema changed: the table gained columns, and the module does not merge the schema",
        # Schema evolution changes a table for everyone who reads it: a person approves it.
        category="schema_drift", confidence=0.6,
    )  # fmt: skip
