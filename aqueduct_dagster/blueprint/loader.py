"""Read a Blueprint's YAML into plain data plus the file position of every value.

PyYAML's `safe_load` forgets positions and silently keeps the last of two duplicate keys, so
we compose the node tree ourselves: every mapping value, mapping key and sequence item gets a
1-based (line, column), keyed by its path in the data, e.g. `("modules", 2, "config", "query")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from aqueduct_dagster.errors import BlueprintError, SourceLocation

Path_ = tuple[Any, ...]

#: libyaml when PyYAML was built with it: the same nodes and marks, ~10x faster to compose.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ScalarPosition:
    """Where a scalar starts and how it is written, to locate text inside it."""

    line: int  # 1-based
    column: int  # 1-based
    style: str | None  # None (plain), "'", '"', "|" or ">"
    end_line: int


@dataclass
class BlueprintDocument:
    """Plain YAML data plus the positions of its values and keys."""

    data: dict[str, Any]
    source_path: str
    text: str
    values: dict[Path_, ScalarPosition] = field(default_factory=dict)
    keys: dict[Path_, SourceLocation] = field(default_factory=dict)

    def location(self, path: Path_) -> SourceLocation:
        """Position of the value at `path`, or of its nearest located ancestor."""
        path = tuple(path)
        while path:
            position = self.values.get(path)
            if position is not None:
                return SourceLocation(self.source_path, position.line, position.column)
            path = path[:-1]
        return SourceLocation(self.source_path, 1, 1)

    def key_location(self, path: Path_) -> SourceLocation:
        """Position of the mapping key whose value is at `path` (falls back to the value)."""
        location = self.keys.get(tuple(path))
        return location if location is not None else self.location(path)

    def location_within(self, path: Path_, offset: int) -> SourceLocation:
        """Position of character `offset` of the string at `path`, as exactly as YAML allows.

        Exact for single-line plain/quoted scalars and for literal (`|`) blocks; other styles
        fold or escape text, so we fall back to where the scalar starts.
        """
        position = self.values.get(tuple(path))
        if position is None:
            return self.location(path)
        value = _get(self.data, path)
        if not isinstance(value, str) or offset < 0 or offset > len(value):
            return SourceLocation(self.source_path, position.line, position.column)
        before = value[:offset]
        if position.style == "|":
            line = position.line + 1 + before.count("\n")
            # Content lines share the block's indentation: that of its first non-blank line.
            file_lines = self.text.splitlines()
            content = [l for l in file_lines[position.line : position.end_line] if l.strip()]
            if content and line - 1 < len(file_lines):
                indent = len(content[0]) - len(content[0].lstrip(" "))
                column_in_line = offset - (before.rfind("\n") + 1)
                return SourceLocation(self.source_path, line, indent + column_in_line + 1)
        elif position.style in (None, "'", '"') and position.line == position.end_line:
            quote = 0 if position.style is None else 1
            if position.style != '"' or "\\" not in value:
                return SourceLocation(
                    self.source_path, position.line, position.column + quote + offset
                )
        return SourceLocation(self.source_path, position.line, position.column)


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def load_document(text: str, source_path: str) -> BlueprintDocument:
    """Parse Blueprint YAML text; raise BlueprintError with file:line:column on any problem."""
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, source_path) from None
    except yaml.YAMLError as error:  # pragma: no cover - unmarked errors are rare
        raise BlueprintError(f"invalid YAML: {error}", location=SourceLocation(source_path))
    if root is None:
        raise BlueprintError(
            "the Blueprint file is empty",
            location=SourceLocation(source_path, 1, 1),
            hint="start with `aqueduct: \"1.0\"`, `id:`, `name:` and `modules:`",
        )
    if not isinstance(root, yaml.MappingNode):
        raise BlueprintError(
            "a Blueprint must be a YAML mapping at the top level "
            f"(found a {_node_kind(root)})",
            location=_mark(root.start_mark, source_path),
            hint="start with `aqueduct: \"1.0\"`, `id:`, `name:` and `modules:`",
        )
    builder = _Builder(source_path)
    data = builder.build(root, ())
    return BlueprintDocument(
        data=data, source_path=source_path, text=text, values=builder.values, keys=builder.keys
    )


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        # Errors are rare: re-parse in pure Python for PyYAML's own wording and marks.
        return yaml.compose(text, Loader=yaml.SafeLoader)


def _syntax_error(error: yaml.MarkedYAMLError, source_path: str) -> BlueprintError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or "could not parse"
    if error.context:
        problem = f"{problem} ({error.context})"
    return BlueprintError(
        f"invalid YAML: {problem}",
        location=_mark(mark, source_path) if mark else SourceLocation(source_path),
        hint="check indentation and quoting around this position",
    )


def _mark(mark: yaml.Mark, source_path: str) -> SourceLocation:
    return SourceLocation(source_path, mark.line + 1, mark.column + 1)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.ScalarNode):
        return "plain value"
    return "mapping"


class _Builder:
    """Turns a composed node tree into python data, recording positions on the way."""

    def __init__(self, source_path: str) -> None:
        self.source_path = source_path
        self.values: dict[Path_, ScalarPosition] = {}
        self.keys: dict[Path_, SourceLocation] = {}
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.values[path] = ScalarPosition(
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            style=getattr(node, "style", None) or None,  # libyaml says '' for plain
            end_line=node.end_mark.line + 1,
        )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as error:
            raise BlueprintError(
                f"invalid YAML value: {error.problem}",
                location=_mark(node.start_mark, self.source_path),
            ) from None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node)
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise BlueprintError(
                    f"duplicate key '{key}' in this mapping (first defined on line {first})",
                    location=_mark(key_node.start_mark, self.source_path),
                    hint="YAML would silently keep only the last one; remove or rename one",
                )
            seen[key] = key_node
        # `<<: *anchor` merge keys: let PyYAML flatten them; explicit keys still win.
        self._constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            self.keys[path + (key,)] = _mark(key_node.start_mark, self.source_path)
            result[key] = self.build(value_node, path + (key,))
        return result

    def _key(self, key_node: yaml.Node) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            raise BlueprintError(
                "mapping keys must be plain values, not lists or mappings",
                location=_mark(key_node.start_mark, self.source_path),
            )
        key = self._constructor.construct_object(key_node, deep=True)
        # `on: ...` or `1: ...` keys become bools/ints in YAML 1.1; field names are text, so
        # keep what the user wrote.
        return key if isinstance(key, str) else key_node.value
