"""Validate resolved Blueprint data against the pydantic models, with errors that point home.

Pydantic reports a `loc` such as `("modules", 1, "Channel", "config", "querry")`; we walk it
against the data (skipping union-member labels such as "Channel") to get back to a file
position and module id, and add the "did you mean" pydantic does not give.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from aqueduct_dagster.blueprint.loader import BlueprintDocument
from aqueduct_dagster.blueprint.models import MODULE_TYPES, Blueprint, ModuleBase
from aqueduct_dagster.blueprint.suggest import article, did_you_mean, one_of
from aqueduct_dagster.errors import BlueprintError, SourceLocation

SUPPORTED_FORMAT_MAJOR = "1"
_MAX_LISTED = 10


def validate_blueprint(data: dict[str, Any], document: BlueprintDocument) -> Blueprint:
    """`Blueprint.model_validate(data)`, raising one readable BlueprintError on failure."""
    _check_format_version(data, document)
    try:
        return Blueprint.model_validate(data)
    except ValidationError as error:
        problems = _problems(error, data, document)
    problems.sort(key=lambda p: (p.location.line or 0, p.location.column or 0))
    first, rest = problems[0], problems[1:]
    if not rest:
        raise BlueprintError(
            first.message, location=first.location, module_id=first.module_id, hint=first.hint
        )
    # Several problems: the first one leads (with its hint), the others follow as a list.
    message = first.message + (f"\n  hint: {first.hint}" if first.hint else "")
    noun = "problem" if len(rest) == 1 else "problems"
    message += f"\n  {len(rest)} more {noun} in this Blueprint:"
    message += "".join(f"\n  - {p.render()}" for p in rest[:_MAX_LISTED])
    if len(rest) > _MAX_LISTED:
        message += f"\n  ... and {len(rest) - _MAX_LISTED} more"
    raise BlueprintError(message, location=first.location, module_id=first.module_id)


def _check_format_version(data: dict[str, Any], document: BlueprintDocument) -> None:
    version = data.get("aqueduct")
    if version is None:
        return  # reported as a missing field by the model
    text = str(version)
    if not text.split(".")[0] == SUPPORTED_FORMAT_MAJOR:
        raise BlueprintError(
            f"unsupported Blueprint format version aqueduct: '{text}'",
            location=document.location(("aqueduct",)),
            hint='this compiler reads the Aqueduct 1.x format; write aqueduct: "1.0"',
        )


class _Problem:
    def __init__(
        self, message: str, location: SourceLocation, module_id: str | None, hint: str | None
    ) -> None:
        self.message, self.location, self.module_id, self.hint = message, location, module_id, hint

    def render(self) -> str:
        where = f"module '{self.module_id}': " if self.module_id else ""
        return f"{self.location}: {where}{self.message}"


def _problems(
    error: ValidationError, data: dict[str, Any], document: BlueprintDocument
) -> list[_Problem]:
    entries = []
    for item in error.errors():
        data_path, present = _data_path(item["loc"], data)
        entries.append((item, data_path, present))
    # A union reports every member's complaint; the deepest ones say what is really wrong.
    paths = {p for _, p, _ in entries}
    problems: list[_Problem] = []
    seen: set[tuple[Any, ...]] = set()
    for item, data_path, present in entries:
        if item["type"] not in ("missing", "extra_forbidden") and any(
            other[: len(data_path)] == data_path and len(other) > len(data_path) for other in paths
        ):
            continue
        key = data_path + ((item["loc"][-1],) if not present else ())
        if key in seen:
            continue
        seen.add(key)
        problems.append(_describe(item, data_path, present, data, document))
    return problems


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], bool]:
    """The part of `loc` that exists in the data, and whether all of it did."""
    path: list[Any] = []
    node = data
    for segment in loc:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
            path.append(segment)
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            node = node[segment]
            path.append(segment)
    last = loc[-1] if loc else None
    present = bool(path) and path[-1] == last
    return tuple(path), present


def _module_of(data_path: tuple[Any, ...], data: dict[str, Any]) -> tuple[str | None, int]:
    """(module id, how many path segments name the module) for a path inside `modules`."""
    if len(data_path) >= 2 and data_path[0] == "modules":
        modules = data.get("modules")
        if isinstance(modules, list) and isinstance(data_path[1], int):
            module = modules[data_path[1]]
            if isinstance(module, dict) and isinstance(module.get("id"), str):
                return module["id"], 2
            return None, 2
    return None, 0


def _describe(
    item: Any,
    data_path: tuple[Any, ...],
    present: bool,
    data: dict[str, Any],
    document: BlueprintDocument,
) -> _Problem:
    module_id, skip = _module_of(data_path, data)
    kind = item["type"]
    field = ".".join(str(p) for p in data_path[skip:])
    label = f"{field}: " if field else ""
    value = item.get("input")
    location = document.location(data_path)
    hint = None
    is_module_entry = len(data_path) == 2 and data_path[0] == "modules"

    if kind == "union_tag_invalid":
        tag = item["ctx"]["tag"]
        message = f"unknown module type '{tag}'" + did_you_mean(tag, MODULE_TYPES)
        location = document.location(data_path + ("type",))
        hint = f"module types: {one_of(MODULE_TYPES)}"
    elif kind == "union_tag_not_found":
        message = "module has no 'type'"
        hint = f"add `type:` with one of {one_of(MODULE_TYPES)}"
    elif kind == "missing":
        missing = item["loc"][-1]
        if is_module_entry and missing == "id":
            message = "module has no 'id'"
            hint = "every module needs a unique `id:`, used in edges and as its asset name"
        else:
            message = f"{label}missing required key '{missing}'"
    elif kind == "extra_forbidden":
        key = data_path[-1]
        parent = ".".join(str(p) for p in data_path[skip:-1])
        model = _model_at(item["loc"][:-1])
        allowed = _field_names(model) if model else []
        where = f" in '{parent}'" if parent else ""
        owner = f" of {article(model.__name__)}" if model and model.__name__ in MODULE_TYPES else ""
        message = f"unknown key '{key}'{where}{owner}"
        location = document.key_location(data_path)
        hint = _misplaced_key_hint(str(key), model, item["loc"])
        if hint is None:
            message += did_you_mean(str(key), allowed)
            hint = f"allowed keys: {one_of(allowed, limit=20)}" if allowed else None
    elif kind in ("literal_error", "enum"):
        expected = re.findall(r"'([^']*)'", item.get("ctx", {}).get("expected", ""))
        message = f"{label}{value!r} is not allowed" + did_you_mean(str(value), expected)
        hint = f"allowed values: {one_of(expected, limit=20)}"
    elif kind in ("dict_type", "model_type", "model_attributes_type") and is_module_entry:
        message = f"a module must be a mapping with id, type and config (got {value!r})"
    elif kind == "value_error":
        message = label + str(item["msg"]).removeprefix("Value error, ")
    else:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = f"{label}{item['msg']} (got {shown})"
    return _Problem(message, location, module_id, hint)


def _misplaced_key_hint(
    key: str, model: type[BaseModel] | None, loc: tuple[Any, ...]
) -> str | None:
    """Catch the common slip of a config key at module level, or the other way round."""
    if model is None:
        return None
    if issubclass(model, ModuleBase):
        config = _model_at(tuple(loc[:-1]) + ("config",))
        if config and key in _field_names(config):
            return f"'{key}' is a config key of {article(model.__name__)}: move it under `config:`"
    elif len(loc) >= 4 and loc[0] == "modules" and loc[3] == "config":
        module = _model_at(tuple(loc[:3]))
        if module and key in _field_names(module):
            return f"'{key}' is a module-level key: move it up, next to `config:`"
    return None


# ---------------------------------------------------------------------- model lookup


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the value at pydantic error location `loc`."""
    current: Any = Blueprint
    for segment in loc:
        current = _step(current, segment)
        if current is None:
            return None
    return _single_model(current)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return tuple(_unwrap(a) for a in typing.get_args(annotation))
    return (annotation,)


def _step(annotation: Any, segment: Any) -> Any:
    members = _members(annotation)
    if isinstance(segment, str):
        for member in members:  # a union member label, e.g. "Channel" or "AssertOnFailBlock"
            if isinstance(member, type) and issubclass(member, BaseModel):
                if member.__name__ == segment:
                    return member
    for member in members:
        origin = typing.get_origin(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(segment, str):
            for name, info in member.model_fields.items():
                if segment in (name, info.alias):
                    return info.annotation
        elif origin in (list, tuple) and isinstance(segment, int):
            return typing.get_args(member)[0]
        elif origin is dict and isinstance(segment, str):
            return typing.get_args(member)[1]
    return None


def _single_model(annotation: Any) -> type[BaseModel] | None:
    models = [
        m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)
    ]
    return models[0] if len(models) == 1 else None
