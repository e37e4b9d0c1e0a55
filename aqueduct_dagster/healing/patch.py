"""PatchSpec: a typed, reviewable change to a Blueprint, and its pure application.

A patch is data, never code: each operation names one structural edit at a known place in
the Blueprint document. `apply_patch` works on a round-trip YAML document (comments and key
order kept) and returns a new document; it never touches the file system.
"""

from __future__ import annotations

import copy
import io
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from aqueduct_dagster.errors import AqueductError


class PatchError(AqueductError):
    """A patch cannot be applied to this Blueprint (names what and where)."""


class Op(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _dotted_key(value: str) -> str:
    """A dot-notation key: non-empty parts without surrounding blanks or control characters
    (`a..b`, ` path`, `path\n` would name a key no reviewer sees)."""
    parts = value.split(".")
    for part in parts:
        if not part or part != part.strip() or any(ord(ch) < 32 or ch == "\x7f" for ch in part):
            raise ValueError(f"key '{value}' has an empty part, blanks around a part or a control "
                             "character; write e.g. 'options.header'")  # fmt: skip
    if len(parts) > 8:
        raise ValueError(f"key '{value}' is nested more than 8 levels deep")
    return value


class SetModuleConfigKey(Op):
    """Set one (dot-notation) key inside a module's config; prefer this for one-field fixes."""

    op: Literal["set_module_config_key"]
    module_id: str
    key: str = Field(description="Dot-notation config key, e.g. 'query' or 'options.header'")
    value: Any

    @field_validator("key")
    @classmethod
    def _key_is_dotted(cls, value: str) -> str:
        return _dotted_key(value)


class ReplaceModuleConfig(Op):
    op: Literal["replace_module_config"]
    module_id: str
    config: dict[str, Any]


class ReplaceModuleLabel(Op):
    op: Literal["replace_module_label"]
    module_id: str
    label: str


class InsertModule(Op):
    op: Literal["insert_module"]
    module: dict[str, Any]
    edges_to_add: list[dict[str, Any]] = Field(default_factory=list)
    edges_to_remove: list[dict[str, Any]] = Field(default_factory=list)


class RemoveModule(Op):
    op: Literal["remove_module"]
    module_id: str
    edges_to_add: list[dict[str, Any]] = Field(default_factory=list)


class ReplaceEdge(Op):
    op: Literal["replace_edge"]
    from_id: str
    to_id: str
    new_from_id: str | None = None
    new_to_id: str | None = None
    new_port: str | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ReplaceEdge:
        if not (self.new_from_id or self.new_to_id or self.new_port):
            raise ValueError("replace_edge needs at least one of new_from_id, new_to_id, new_port")
        return self


class ReplaceContextValue(Op):
    op: Literal["replace_context_value"]
    key: str = Field(description="Dot-notation context key, e.g. 'paths.input'")
    value: Any

    @field_validator("key")
    @classmethod
    def _key_is_dotted(cls, value: str) -> str:
        return _dotted_key(value)


class ReplaceMacro(Op):
    op: Literal["replace_macro"]
    name: str
    value: str


class SetEngineConfig(Op):
    op: Literal["set_engine_config"]
    engine: Literal["spark", "duckdb"] = "spark"
    key: str
    value: str | int | float | bool


class SetModuleOnFailure(Op):
    op: Literal["set_module_on_failure"]
    module_id: str
    on_failure: dict[str, Any]


class ReplaceRetryPolicy(Op):
    op: Literal["replace_retry_policy"]
    retry_policy: dict[str, Any]


class AddProbe(Op):
    op: Literal["add_probe"]
    module: dict[str, Any]
    edges_to_add: list[dict[str, Any]] = Field(default_factory=list)


class DeferToHuman(Op):
    """The failure cannot be fixed in the Blueprint; a person must act."""

    op: Literal["defer_to_human"]
    diagnosis: str
    defer_reason: Literal[
        "infrastructure", "upstream_schema_change", "data_shape_change",
        "insufficient_context", "other",
    ]  # fmt: skip
    suggestions: list[str] = Field(default_factory=list)
    confidence_reason: str = ""


Operation = Annotated[
    SetModuleConfigKey | ReplaceModuleConfig | ReplaceModuleLabel | InsertModule | RemoveModule
    | ReplaceEdge | ReplaceContextValue | ReplaceMacro | SetEngineConfig | SetModuleOnFailure
    | ReplaceRetryPolicy | AddProbe | DeferToHuman,
    Field(discriminator="op"),
]  # fmt: skip

OPERATION_NAMES: tuple[str, ...] = (
    "set_module_config_key", "replace_module_config", "replace_module_label", "insert_module",
    "remove_module", "replace_edge", "replace_context_value", "replace_macro",
    "set_engine_config", "set_module_on_failure", "replace_retry_policy", "add_probe",
    "defer_to_human",
)  # fmt: skip


class PatchSpec(BaseModel):
    """A structured diff to a Blueprint; operations apply left to right, all or nothing."""

    model_config = ConfigDict(extra="forbid")

    patch_id: str = Field(default_factory=lambda: new_patch_id("patch"))
    run_id: str | None = None
    rationale: str
    root_cause: str | None = None
    category: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    # Older gallery files spell it `ops`.
    operations: list[Operation] = Field(min_length=1, validation_alias=AliasChoices("operations", "ops"))
    misc: dict[str, Any] = Field(default_factory=dict)

    @field_validator("patch_id")
    @classmethod
    def _patch_id_is_a_file_name(cls, value: str) -> str:
        # The id becomes a file name under patches/ (pending, applied, PR descriptions).
        if not _PATCH_ID.fullmatch(value) or ".." in value:
            raise ValueError(f"patch_id {value[:80]!r} must be 1-200 letters, digits, '_', '-' or '.' "
                             "(no '..', no '/'): it names the patch's file")  # fmt: skip
        return value

    @property
    def deferred(self) -> DeferToHuman | None:
        return next((op for op in self.operations if isinstance(op, DeferToHuman)), None)

    @property
    def touched_modules(self) -> list[str]:
        ids = []
        for op in self.operations:
            module_id = getattr(op, "module_id", None) or (getattr(op, "module", None) or {}).get("id")
            if module_id and module_id not in ids:
                ids.append(module_id)
        return ids


_PATCH_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")


def new_patch_id(slug: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{re.sub(r'[^a-z0-9]+', '-', slug.lower()).strip('-')[:40]}-{stamp}"


# --------------------------------------------------------------------------- YAML round trip


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments, quoting and key order
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def load_document(text: str) -> CommentedMap:
    document = _yaml().load(text)
    if not isinstance(document, dict):
        raise PatchError("the Blueprint is not a YAML mapping")
    return document


def dump_document(document: CommentedMap) -> str:
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- application


def apply_patch_text(blueprint_text: str, patch: PatchSpec) -> str:
    """The Blueprint text after `patch`, comments kept. Raises PatchError, changes nothing."""
    return dump_document(apply_patch(load_document(blueprint_text), patch))


def apply_patch(document: CommentedMap, patch: PatchSpec) -> CommentedMap:
    result = copy.deepcopy(document)
    for index, operation in enumerate(patch.operations):
        try:
            _APPLY[operation.op](result, operation)
        except PatchError as error:
            raise PatchError(
                f"operation {index + 1} ({operation.op}) of patch '{patch.patch_id}': {error.message}",
                module_id=error.module_id,
                hint=error.hint,
            ) from None
    return result


def _modules(document: CommentedMap) -> CommentedSeq:
    modules = document.get("modules")
    if not isinstance(modules, list):
        raise PatchError("the Blueprint has no `modules:` list")
    return modules


def _module(document: CommentedMap, module_id: str) -> CommentedMap:
    for module in _modules(document):
        if isinstance(module, dict) and module.get("id") == module_id:
            return module
    known = [m.get("id") for m in _modules(document) if isinstance(m, dict)]
    from difflib import get_close_matches

    close = get_close_matches(module_id, [k for k in known if k], n=1)
    raise PatchError(
        f"no module '{module_id}'",
        module_id=module_id,
        hint=f"did you mean '{close[0]}'?" if close else f"modules are: {', '.join(map(str, known))}",
    )


def _set_dotted(target: dict, dotted: str, value: Any, *, what: str) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = target.get(part)
        if child is None:
            child = CommentedMap()
            target[part] = child
        if not isinstance(child, dict):
            raise PatchError(f"{what} '{dotted}': '{part}' is not a mapping")
        target = child
    target[parts[-1]] = _plain(value)


def _plain(value: Any) -> Any:
    """Convert JSON-ish values to round-trip YAML nodes (literal blocks for multi-line text)."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value if value.endswith("\n") else value + "\n")
    if isinstance(value, dict):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _plain(item)
        return mapping
    if isinstance(value, list):
        return CommentedSeq([_plain(item) for item in value])
    return value


def _edges(document: CommentedMap) -> CommentedSeq:
    edges = document.get("edges")
    if edges is None:
        edges = CommentedSeq()
        document["edges"] = edges
    return edges


def _edge_matches(edge: dict, spec: dict) -> bool:
    return edge.get("from") == spec.get("from") and edge.get("to") == spec.get("to") and (
        "port" not in spec or edge.get("port", "main") == spec.get("port")
    )


def _set_module_config_key(doc: CommentedMap, op: SetModuleConfigKey) -> None:
    module = _module(doc, op.module_id)
    config = module.get("config")
    if config is None:
        config = CommentedMap()
        module["config"] = config
    _set_dotted(config, op.key, op.value, what=f"config key of module '{op.module_id}'")


def _replace_module_config(doc: CommentedMap, op: ReplaceModuleConfig) -> None:
    _module(doc, op.module_id)["config"] = _plain(op.config)


def _replace_module_label(doc: CommentedMap, op: ReplaceModuleLabel) -> None:
    _module(doc, op.module_id)["label"] = op.label


def _insert_module(doc: CommentedMap, op: InsertModule | AddProbe) -> None:
    module_id = op.module.get("id")
    if not module_id:
        raise PatchError("the inserted module has no `id`")
    if any(isinstance(m, dict) and m.get("id") == module_id for m in _modules(doc)):
        raise PatchError(f"a module '{module_id}' already exists", module_id=module_id)
    _modules(doc).append(_plain(op.module))
    edges = _edges(doc)
    for spec in getattr(op, "edges_to_remove", []):
        matches = [e for e in edges if _edge_matches(e, spec)]
        if not matches:
            raise PatchError(f"edge {spec.get('from')} -> {spec.get('to')} does not exist")
        for edge in matches:
            edges.remove(edge)
    for spec in op.edges_to_add:
        edges.append(_plain(spec))


def _remove_module(doc: CommentedMap, op: RemoveModule) -> None:
    module = _module(doc, op.module_id)
    _modules(doc).remove(module)
    edges = doc.get("edges") or []
    for edge in [e for e in edges if op.module_id in (e.get("from"), e.get("to"))]:
        edges.remove(edge)
    for spec in op.edges_to_add:
        _edges(doc).append(_plain(spec))


def _replace_edge(doc: CommentedMap, op: ReplaceEdge) -> None:
    matches = [e for e in doc.get("edges") or [] if e.get("from") == op.from_id and e.get("to") == op.to_id]
    if not matches:
        raise PatchError(
            f"edge {op.from_id} -> {op.to_id} does not exist",
            hint="replace_edge rewires an edge listed under `edges:`",
        )
    for edge in matches:
        if op.new_from_id:
            edge["from"] = op.new_from_id
        if op.new_to_id:
            edge["to"] = op.new_to_id
        if op.new_port:
            edge["port"] = op.new_port


def _replace_context_value(doc: CommentedMap, op: ReplaceContextValue) -> None:
    context = doc.get("context")
    if context is None:
        context = CommentedMap()
        doc["context"] = context
    _set_dotted(context, op.key, op.value, what="context key")


def _replace_macro(doc: CommentedMap, op: ReplaceMacro) -> None:
    macros = doc.get("macros") or {}
    if op.name not in macros:
        raise PatchError(
            f"no macro '{op.name}'",
            hint=f"replace_macro changes an existing macro; macros are: {', '.join(macros) or 'none'}",
        )
    macros[op.name] = _plain(op.value)


def _set_engine_config(doc: CommentedMap, op: SetEngineConfig) -> None:
    engine = doc.get("engine")
    if engine is None:
        engine = CommentedMap()
        doc["engine"] = engine
    block = engine.get(op.engine)
    if block is None:
        block = CommentedMap()
        engine[op.engine] = block
    if op.engine == "spark":
        conf = block.get("conf")
        if conf is None:
            conf = CommentedMap()
            block["conf"] = conf
        conf[op.key] = op.value
    else:
        block[op.key] = op.value


def _set_module_on_failure(doc: CommentedMap, op: SetModuleOnFailure) -> None:
    _module(doc, op.module_id)["on_failure"] = _plain(op.on_failure)


def _replace_retry_policy(doc: CommentedMap, op: ReplaceRetryPolicy) -> None:
    doc["retry_policy"] = _plain(op.retry_policy)


def _defer(doc: CommentedMap, op: DeferToHuman) -> None:
    raise PatchError(
        "a defer_to_human patch changes nothing and cannot be applied",
        hint="review the diagnosis and fix the cause by hand",
    )


_APPLY = {
    "set_module_config_key": _set_module_config_key,
    "replace_module_config": _replace_module_config,
    "replace_module_label": _replace_module_label,
    "insert_module": _insert_module,
    "remove_module": _remove_module,
    "replace_edge": _replace_edge,
    "replace_context_value": _replace_context_value,
    "replace_macro": _replace_macro,
    "set_engine_config": _set_engine_config,
    "set_module_on_failure": _set_module_on_failure,
    "replace_retry_policy": _replace_retry_policy,
    "add_probe": _insert_module,
    "defer_to_human": _defer,
}
