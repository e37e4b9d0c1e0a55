"""Read a Blueprint's YAML into plain data plus the file position of every value.

PyYAML's `safe_load` forgets positions and silently keeps the last of two duplicate keys, so
we compose the node tree ourselves: every mapping value, mapping key and sequence item gets a
1-based (line, column), keyed by its path in the data, e.g. `("modules", 2, "config", "query")`.

Any text, however hostile, ends in data or in one BlueprintError with file:line:column, after
work bounded by the limits below. So the tree is composed here from the parser's event
stream, without recursion (PyYAML's C composer recurses per level and overflows the C stack
on deep input), and turned into data with budgets on depth and on alias expansion.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aqueduct_dagster.blueprint.work import count
from aqueduct_dagster.errors import BlueprintError, SourceLocation

Path_ = tuple[Any, ...]

#: libyaml when PyYAML was built with it: the same events and marks, ~10x faster to parse.
#: Only its event parser is used (iterative, safe at any depth), never its composer.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Largest Blueprint file, in bytes of the file (characters of the text).
MAX_DOCUMENT_BYTES = 2_000_000
#: Deepest nesting of mappings and lists, aliases included. Far above any real Blueprint,
#: far below what recursion in the compiler and in JSON serialization can take.
MAX_NESTING_DEPTH = 64
#: Nodes built by expanding `*alias` references (a "billion laughs" file is a few lines).
MAX_ALIAS_NODES = 10_000
#: Values (scalars, lists, mappings, keys included) in the file, and nodes built from them,
#: aliases included. Counted while parsing, so a 2 MB file of `[1,1,1,...]` stops here after
#: a bounded number of parser events instead of being parsed whole: at roughly 10 us of
#: parsing and building per value, this keeps any file under a second. A Blueprint of 1,500
#: modules stays below it.
MAX_NODES = 30_000

#: Up to this many characters a libyaml syntax error is parsed again in pure Python, whose
#: messages are clearer; beyond it that second parse could take seconds.
_REPARSE_CHARS = 100_000

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null", "timestamp")}
_TEXT_TAGS = {_TAG + "merge", _TAG + "value"}  # `<<` or `=` as a value: just text
_COLLECTION_TAGS = {yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                    yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG}  # fmt: skip
#: What YAML forbids in a stream (yaml.reader's set), lone surrogates included.
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_SURROGATE = re.compile("[\uD800-\uDFFF]")


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
            content = [x for x in file_lines[position.line : position.end_line] if x.strip()]
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


def read_blueprint_text(path: str | Path, display: str | None = None) -> str:
    """The text of a Blueprint file; unreadable, oversized or non-UTF-8 files are located errors."""
    path = Path(path)
    shown = display or str(path)
    try:
        # Opening a FIFO waits for a writer forever, and a device never ends: only regular
        # files are read (links are followed, so a link to /dev/zero is refused too).
        kind = path.stat().st_mode
        if stat.S_ISDIR(kind):
            raise BlueprintError(
                "this is a folder, not a Blueprint file",
                location=SourceLocation(shown),
                hint="`aqueduct validate` takes folders; compile and lineage take one file",
            )
        if not stat.S_ISREG(kind):
            raise BlueprintError(
                f"this is a {_file_kind(kind)}, not a regular file, so it is not read",
                location=SourceLocation(shown),
                hint="point at the Blueprint's .yml file",
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise BlueprintError(
            f"Blueprint file not found: {shown}",
            location=SourceLocation(shown),
            hint="check the path (it is relative to the current directory)",
        ) from None
    except OSError as error:
        raise BlueprintError(
            f"cannot read the Blueprint file: {error.strerror or error}",
            location=SourceLocation(shown),
        ) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _too_large(shown, data.count(b"\n", 0, MAX_DOCUMENT_BYTES) + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        start = error.start
        line = data.count(b"\n", 0, start) + 1
        line_start = data.rfind(b"\n", 0, start) + 1
        column = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
        raise BlueprintError(
            f"the file is not UTF-8 text: byte 0x{data[start]:02x} cannot be decoded",
            location=SourceLocation(shown, line, column),
            hint="save the file as UTF-8",
        ) from None


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"


def load_document(
    text: str, source_path: str, *, what: str = "Blueprint", empty_ok: bool = False
) -> BlueprintDocument:
    """Parse Blueprint YAML text; raise BlueprintError with file:line:column on any problem.

    `what` names the kind of file in messages; `empty_ok` reads an empty file as `{}`.
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise _too_large(source_path, text.count("\n", 0, MAX_DOCUMENT_BYTES) + 1)
    _check_characters(text, source_path)
    root = _Composer(source_path).compose(text)
    if root is None and empty_ok:
        return BlueprintDocument(data={}, source_path=source_path, text=text)
    if root is None:
        raise BlueprintError(
            f"the {what} file is empty",
            location=SourceLocation(source_path, 1, 1),
            hint="start with `aqueduct: \"1.0\"`, `id:`, `name:` and `modules:`",
        )
    if not isinstance(root, yaml.MappingNode):
        raise BlueprintError(
            f"a {what} must be a YAML mapping at the top level "
            f"(found a {_node_kind(root)})",
            location=_mark(root.start_mark, source_path),
            hint="start with `aqueduct: \"1.0\"`, `id:`, `name:` and `modules:`" if what == "Blueprint" else None,
        )
    builder = _Builder(source_path, text)
    data = builder.build(root, (), 1)
    return BlueprintDocument(
        data=data, source_path=source_path, text=text, values=builder.values, keys=builder.keys
    )


def _too_large(source_path: str, line: int) -> BlueprintError:
    return BlueprintError(
        f"the file exceeds the document size limit of {MAX_DOCUMENT_BYTES:,} bytes "
        f"(it passes the limit on line {line})",
        location=SourceLocation(source_path, line, 1),
        hint="split it: move parts into Arcade sub-Blueprints",
    )


def _check_characters(text: str, source_path: str) -> None:
    match = _NOT_PRINTABLE.search(text)
    if match is None:
        return
    char = match.group(0)
    if _SURROGATE.match(char):
        what, hint = "an unpaired surrogate", (
            "it is half of a UTF-16 pair, not a character: write the whole character instead"
        )
    else:
        what, hint = "a control character", (
            "remove it; inside a double-quoted string a control character can be written "
            f"as an escape (\\x{ord(char) & 0xFF:02x})"
        )
    raise BlueprintError(
        f"{what} U+{ord(char):04X} is not allowed in YAML",
        location=_offset_location(text, match.start(), source_path),
        hint=hint,
    )


def _offset_location(text: str, offset: int, source_path: str) -> SourceLocation:
    line = text.count("\n", 0, offset) + 1
    return SourceLocation(source_path, line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def _error_at(mark: yaml.Mark | None, source_path: str, message: str, hint: str) -> BlueprintError:
    location = _mark(mark, source_path) if mark is not None else SourceLocation(source_path, 1, 1)
    return BlueprintError(message, location=location, hint=hint)


def _syntax_error(error: yaml.MarkedYAMLError, source_path: str) -> BlueprintError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or "could not parse"
    if error.context:
        problem = f"{problem} ({error.context})"
    return _error_at(
        mark, source_path, f"invalid YAML: {problem}",
        "check indentation and quoting around this position",
    )  # fmt: skip


def _mark(mark: yaml.Mark, source_path: str) -> SourceLocation:
    return SourceLocation(source_path, mark.line + 1, mark.column + 1)


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.ScalarNode):
        return "plain value"
    return "mapping"


class _Composer:
    """Builds the node tree from parser events with an explicit stack (no recursion).

    Same nodes as PyYAML's composer, plus: nesting deeper than MAX_NESTING_DEPTH, an alias
    inside its own anchor (a cycle) and a second document are located errors.
    """

    def __init__(self, source_path: str) -> None:
        self.source_path = source_path
        self.resolver = yaml.resolver.Resolver()

    def compose(self, text: str) -> yaml.Node | None:
        try:
            return self._compose(yaml.parse(text, Loader=_FAST_LOADER))
        except yaml.MarkedYAMLError as error:
            if _FAST_LOADER is yaml.SafeLoader or len(text) > _REPARSE_CHARS:
                # The pure-Python parser is ~10x slower: a large file keeps libyaml's words.
                raise _syntax_error(error, self.source_path) from None
        except yaml.YAMLError:
            pass
        # libyaml failed: parse again in pure Python for PyYAML's own wording and marks.
        try:
            return self._compose(yaml.parse(text, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as error:
            raise _syntax_error(error, self.source_path) from None
        except yaml.YAMLError as error:  # pragma: no cover - the pre-checks catch reader errors
            raise BlueprintError(
                f"invalid YAML: {error}", location=SourceLocation(self.source_path, 1, 1)
            ) from None

    def _compose(self, events: Any) -> yaml.Node | None:
        anchors: dict[str, yaml.Node] = {}
        open_nodes: set[int] = set()
        stack: list[list[Any]] = []  # [node, pending mapping key]
        root: yaml.Node | None = None
        documents = 0
        values = 0
        for event in events:
            count("yaml_events")
            node: yaml.Node | None = None
            if isinstance(event, _VALUE_EVENTS):
                values += 1
                if values > MAX_NODES:
                    raise _too_many_values(event.start_mark, self.source_path)
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _error_at(
                        event.start_mark, self.source_path,
                        "a Blueprint file holds one YAML document; found a second one",
                        "remove the `---` line and what follows, or move it into its own file",
                    )  # fmt: skip
                continue
            if isinstance(event, yaml.AliasEvent):
                node = anchors.get(event.anchor)
                if node is None:
                    raise _error_at(
                        event.start_mark, self.source_path,
                        f"alias '*{event.anchor}' refers to no anchor '&{event.anchor}' above it",
                        "define the anchor (`&name`) before using it",
                    )  # fmt: skip
                if id(node) in open_nodes:
                    raise _error_at(
                        event.start_mark, self.source_path,
                        f"recursive alias '*{event.anchor}': it is inside the value its anchor "
                        f"'&{event.anchor}' names (line {node.start_mark.line + 1}), so it "
                        "would expand forever",
                        "an alias may only refer to a value that is complete before it",
                    )  # fmt: skip
            elif isinstance(event, yaml.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style
                )
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                if len(stack) >= MAX_NESTING_DEPTH:
                    raise _depth_error(event.start_mark, self.source_path)
                is_mapping = isinstance(event, yaml.MappingStartEvent)
                kind = yaml.MappingNode if is_mapping else yaml.SequenceNode
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self.resolver.resolve(kind, None, event.implicit)
                collection = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                if event.anchor is not None:
                    anchors[event.anchor] = collection
                open_nodes.add(id(collection))
                stack.append([collection, None])
                continue
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node = stack.pop()[0]
                node.end_mark = event.end_mark
                open_nodes.discard(id(node))
            else:  # stream start/end, document end
                continue
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                anchors[event.anchor] = node
            if not stack:
                root = node
            elif isinstance(stack[-1][0], yaml.SequenceNode):
                stack[-1][0].value.append(node)
            elif stack[-1][1] is None:
                stack[-1][1] = node
            else:
                stack[-1][0].value.append((stack[-1][1], node))
                stack[-1][1] = None
        return root


_VALUE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def _too_many_values(mark: yaml.Mark, source_path: str) -> BlueprintError:
    return _error_at(
        mark, source_path,
        f"the document has more than {MAX_NODES:,} values (the node limit)",
        "split it: move parts into Arcade sub-Blueprints",
    )  # fmt: skip


def _depth_error(mark: yaml.Mark, source_path: str) -> BlueprintError:
    return _error_at(
        mark, source_path,
        f"mappings and lists nest deeper than the nesting depth limit of {MAX_NESTING_DEPTH} levels",
        "flatten this value; a Blueprint never needs this depth",
    )  # fmt: skip


class _Builder:
    """Turns a composed node tree into python data, recording positions on the way.

    The tree is a graph when aliases share nodes: every visit of an already built node is an
    alias expansion and counts against MAX_ALIAS_NODES, so a small "billion laughs" file stops
    after bounded work.
    """

    def __init__(self, source_path: str, text: str) -> None:
        self.source_path = source_path
        self.text = text
        self.values: dict[Path_, ScalarPosition] = {}
        self.keys: dict[Path_, SourceLocation] = {}
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        self._seen: set[int] = set()
        self._nodes = 0
        self._alias_nodes = 0

    def build(self, node: yaml.Node, path: Path_, depth: int, via_alias: bool = False) -> Any:
        if depth > MAX_NESTING_DEPTH:
            raise _depth_error(node.start_mark, self.source_path)
        via_alias = via_alias or id(node) in self._seen
        self._seen.add(id(node))
        self._count(node, via_alias)
        self.values[path] = ScalarPosition(
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            style=getattr(node, "style", None) or None,  # libyaml says '' for plain
            end_line=(node.end_mark or node.start_mark).line + 1,
        )
        if isinstance(node, yaml.MappingNode):
            self._check_collection_tag(node)
            return self._mapping(node, path, depth, via_alias)
        if isinstance(node, yaml.SequenceNode):
            self._check_collection_tag(node)
            return [
                self.build(item, path + (index,), depth + 1, via_alias)
                for index, item in enumerate(node.value)
            ]
        return self._scalar(node)

    def _count(self, node: yaml.Node, via_alias: bool) -> None:
        count("nodes_built")
        self._nodes += 1
        if via_alias:
            self._alias_nodes += 1
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _error_at(
                    node.start_mark, self.source_path,
                    f"aliases expand to more than {MAX_ALIAS_NODES:,} values (the alias "
                    "expansion budget); this file is an alias bomb or needs fewer `*alias` uses",
                    "repeat small values instead of nesting aliases of aliases",
                )  # fmt: skip
        if self._nodes > MAX_NODES:
            raise _too_many_values(node.start_mark, self.source_path)

    def _check_collection_tag(self, node: yaml.Node) -> None:
        if node.tag not in _COLLECTION_TAGS:
            raise _tag_error(node, self.source_path)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise _tag_error(node, self.source_path)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except Exception as error:  # noqa: BLE001 - PyYAML's constructors raise ValueError,
            # KeyError, AttributeError (`!!timestamp text`), ...: each is about this value.
            raise self._value_error(node, error) from None
        if isinstance(value, str) and (surrogate := _SURROGATE.search(value)):
            raise self._surrogate_error(node, surrogate.group(0))
        return value

    def _value_error(self, node: yaml.ScalarNode, error: Exception) -> BlueprintError:
        kind = node.tag.rsplit(":", 1)[-1]
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        reason = getattr(error, "problem", None) or str(error) or type(error).__name__
        if kind == "timestamp" and isinstance(error, AttributeError):
            reason = "it is not written as a date or time"  # PyYAML's regex did not match
        if kind == "timestamp":
            message = f"'{shown}' reads as a date but is not a valid one ({reason})"
            hint = "fix the date, or quote it to keep it as text"
        elif kind == "bool":
            message = f"'{shown}' is not a boolean"
            hint = "write true or false"
        else:
            message = f"'{shown}' is not a valid {kind} ({reason})"
            hint = f"remove the !!{kind} tag, or write a valid {kind}"
        return _error_at(node.start_mark, self.source_path, message, hint)

    def _surrogate_error(self, node: yaml.ScalarNode, char: str) -> BlueprintError:
        escape = f"\\u{ord(char):04x}"
        # Marks count lines reliably in both parsers; search the scalar's lines for the escape.
        lines = self.text.split("\n")
        first, last = node.start_mark.line, (node.end_mark or node.start_mark).line
        start = sum(len(line) + 1 for line in lines[:first]) + node.start_mark.column
        end = sum(len(line) + 1 for line in lines[: last + 1])
        found = self.text.lower().find(escape, start, end)
        location = (
            _offset_location(self.text, found, self.source_path)
            if found >= 0
            else _mark(node.start_mark, self.source_path)
        )
        return BlueprintError(
            f"the escape {escape} is an unpaired surrogate (half of a UTF-16 pair), "
            "which is not a Unicode character",
            location=location,
            hint="write the character itself, or its \\U0001xxxx escape",
        )

    def _mapping(
        self, node: yaml.MappingNode, path: Path_, depth: int, via_alias: bool
    ) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _TAG + "merge":
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
        result: dict[Any, Any] = {}
        # `<<: *anchor` merge keys: merged values first, explicit keys win.
        for key_node, value_node in self._merged_pairs(node, depth) + [
            pair for pair in node.value if pair[0].tag != _TAG + "merge"
        ]:
            key = self._key(key_node)
            self.keys[path + (key,)] = _mark(key_node.start_mark, self.source_path)
            result[key] = self.build(value_node, path + (key,), depth + 1, via_alias)
        return result

    def _merged_pairs(self, node: yaml.MappingNode, depth: int) -> list[tuple[Any, Any]]:
        """The pairs `<<` merge keys bring in; the first source listed wins, as in PyYAML."""
        pairs: list[tuple[Any, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _TAG + "merge":
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in reversed(sources):
                if not isinstance(source, yaml.MappingNode) or source.tag not in _COLLECTION_TAGS:
                    raise _error_at(
                        source.start_mark, self.source_path,
                        f"the merge key `<<` needs a mapping or a list of mappings, "
                        f"found a {_node_kind(source)}",
                        "write `<<: *anchor` where the anchor names a mapping",
                    )  # fmt: skip
                if depth > MAX_NESTING_DEPTH:
                    raise _depth_error(source.start_mark, self.source_path)
                inherited = self._merged_pairs(source, depth + 1) + [
                    pair for pair in source.value if pair[0].tag != _TAG + "merge"
                ]
                for _ in inherited:
                    self._count(source, via_alias=True)
                pairs.extend(inherited)
        return pairs

    def _key(self, key_node: yaml.Node) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            raise BlueprintError(
                "mapping keys must be plain values, not lists or mappings",
                location=_mark(key_node.start_mark, self.source_path),
            )
        key = self._scalar(key_node)
        # `on: ...` or `1: ...` keys become bools/ints in YAML 1.1; field names are text, so
        # keep what the user wrote.
        return key if isinstance(key, str) else key_node.value


def _tag_error(node: yaml.Node, source_path: str) -> BlueprintError:
    tag = node.tag
    shown = "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag
    return _error_at(
        node.start_mark, source_path,
        f"the YAML tag '{shown}' is not allowed in a Blueprint",
        "remove the tag: a Blueprint holds plain text, numbers, true/false, null, dates, "
        "lists and mappings",
    )  # fmt: skip
