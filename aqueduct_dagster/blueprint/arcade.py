"""Arcade: a module standing for a whole sub-Blueprint, flattened away at compile time.

An Arcade `A` with `ref: sub.yml` is replaced by sub.yml's modules, their ids namespaced
`A__<child>` (`__` is reserved for this; user-written ids may not hold it). Wiring across the
boundary:

* Entries receive every data edge into `A`. An entry is a sub-Blueprint module with no data
  input of its own that is not an Ingress (an Ingress reads its own source). The input keeps
  the alias the parent edge gives it (its `as:`, else the upstream id), so a reusable
  sub-Blueprint reads a name of its choosing, e.g. `SELECT ... FROM source`, and the parent
  wires `{from: orders, to: A, as: source}`.
* Exits feed every data edge out of `A`: sub-Blueprint modules nothing inside it reads
  (Probes aside, they emit signals). With several exits the parent names one with
  `port: <child id>` (or `<child id>.<port>` for a branch or spillway; a Funnel input is
  written `A.<child id>`). Consumers read `A` under the alias `A` (or `A_<child id>`).
* `depends_on: [A]` waits for all of A; A's own `depends_on` holds back A's first modules.

The sub-Blueprint is a normal Blueprint file compiled with its own macros and context; its
context is, lowest first: the parent's context, its own `context:`, the Arcade's
`context_override` (resolved in the parent). Errors inside it point at its own file:line and
name the Arcade chain (`A -> B`).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from aqueduct_dagster.blueprint.graph import MAIN, SPILLWAY, ModuleGraph
from aqueduct_dagster.blueprint.loader import BlueprintDocument
from aqueduct_dagster.blueprint.manifest import ModuleInput
from aqueduct_dagster.blueprint.models import Blueprint, Edge
from aqueduct_dagster.blueprint.suggest import did_you_mean, one_of
from aqueduct_dagster.blueprint.templating import TemplatedBlueprint
from aqueduct_dagster.errors import BlueprintError

SEPARATOR = "__"


@dataclass
class BlueprintUnit:
    """One Blueprint file after templating, validation and wiring, its Arcades still whole."""

    document: BlueprintDocument
    templated: TemplatedBlueprint
    blueprint: Blueprint
    graph: ModuleGraph
    #: Where the file is, to resolve `ref:`s (None: compiled from text, refs follow the cwd).
    absolute_path: Path | None = None
    #: Arcade ids from the root Blueprint down to this file (empty for the root).
    chain: tuple[str, ...] = ()
    #: Resolved files from the root down to this one, to catch Arcade files that loop.
    files: tuple[Path, ...] = ()
    #: Arcade id -> its sub-Blueprint, filled in by the compiler.
    children: dict[str, BlueprintUnit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._positions = {m.id: i for i, m in enumerate(self.blueprint.modules)}

    def position(self, module_id: str) -> int:
        return self._positions[module_id]

    def spec(self, module_id: str) -> Any:
        return self.blueprint.modules[self._positions[module_id]]

    def arcades(self) -> list[str]:
        """The enabled Arcades of this file, in graph order."""
        return [m for m in self.graph.order if self.spec(m).expands_into_modules]


@dataclass(frozen=True)
class PlacedModule:
    """A module of the flattened graph, with the file and document path it was written at."""

    id: str
    spec: Any
    inputs: tuple[ModuleInput, ...]
    after: tuple[str, ...]
    document: BlueprintDocument
    path: tuple[Any, ...]
    arcade: tuple[str, ...]
    #: Declaration position, file by file (`(arcade position, child position)`): tie-breaker
    #: of the topological order, so a Blueprint without Arcades keeps its usual order.
    rank: tuple[int, ...]


@dataclass
class FlatGraph:
    order: list[str]
    modules: dict[str, PlacedModule]
    edges: tuple[Edge, ...]
    warnings: list[str]


def chain_text(chain: tuple[str, ...]) -> str:
    return " -> ".join(chain)


def inside(error: BlueprintError, chain: tuple[str, ...]) -> BlueprintError:
    """`error`, saying which Arcade chain it happened in (as is for the root Blueprint)."""
    if not chain or "(inside Arcade " in error.message:
        return error
    return BlueprintError(
        f"{error.message} (inside Arcade {chain_text(chain)})",
        location=error.location,
        module_id=error.module_id,
        hint=error.hint,
    )


# -------------------------------------------------------------------------- ref files


def arcade_file(unit: BlueprintUnit, arcade_id: str) -> tuple[str, Path]:
    """(display path, resolved path) of the file an Arcade refers to; checks it exists and
    does not loop back to a file it is expanded from."""
    spec = unit.spec(arcade_id)
    ref = str(spec.ref)
    ref_path = ("modules", unit.position(arcade_id), "ref")
    base = unit.absolute_path.parent if unit.absolute_path else Path.cwd()
    shown_base = Path(unit.document.source_path).parent if unit.absolute_path else Path()
    display = os.path.normpath(shown_base / ref)
    try:
        resolved = (base / ref).resolve()
        is_file = resolved.is_file()
    except (OSError, RuntimeError, ValueError) as error:  # a symlink loop, a NUL in the name
        raise inside(
            BlueprintError(
                f"Arcade file '{ref}' cannot be opened: {error}",
                location=unit.document.location(ref_path),
                module_id=arcade_id,
                hint="`ref:` must name a Blueprint file, relative to the Blueprint that holds "
                "the Arcade",
            ),
            unit.chain,
        ) from None
    if not is_file and resolved.exists():
        raise inside(
            BlueprintError(
                f"Arcade file '{ref}' is "
                + ("a folder" if resolved.is_dir() else "not a regular file (a device or pipe)"),
                location=unit.document.location(ref_path),
                module_id=arcade_id,
                hint="`ref:` must name a Blueprint .yml file",
            ),
            unit.chain,
        )
    if not is_file:
        folder = resolved.parent
        siblings = _blueprint_siblings(folder, unit.files) if folder.is_dir() else []
        ref_folder = os.path.dirname(ref)
        candidates = [os.path.join(ref_folder, name) for name in siblings]
        where = f"folder {folder}" if folder.is_dir() else f"folder {folder} (it does not exist)"
        raise inside(
            BlueprintError(
                f"Arcade file '{ref}' not found (looked for {display})"
                + did_you_mean(ref, candidates),
                location=unit.document.location(ref_path),
                module_id=arcade_id,
                hint=f"`ref:` is relative to the Blueprint that holds the Arcade; Blueprint "
                f"files in that {where}: {one_of(candidates)}",
            ),
            unit.chain,
        )
    if resolved in unit.files:
        loop = [*unit.files[unit.files.index(resolved) :], resolved]
        root = unit.files[0].parent
        shown = " -> ".join(_relative(p, root) for p in loop)
        raise inside(
            BlueprintError(
                f"Arcade files refer to each other in a cycle: {shown}",
                location=unit.document.location(ref_path),
                module_id=arcade_id,
                hint="a sub-Blueprint cannot contain itself; break the cycle by removing one "
                "of these Arcades",
            ),
            unit.chain,
        )
    return display, resolved


def _blueprint_siblings(folder: Path, exclude: tuple[Path, ...]) -> list[str]:
    """YAML file names in `folder` for a did-you-mean: a bounded look, and a name that cannot
    be resolved (a symlink loop) is passed over rather than failing the message."""
    names = []
    for number, path in enumerate(folder.iterdir()):
        if number >= 1_000:
            break
        if path.suffix not in (".yml", ".yaml"):
            continue
        try:
            if path.resolve() in exclude:
                continue
        except (OSError, RuntimeError):
            continue
        names.append(path.name)
    return sorted(names)


def _relative(path: Path, root: Path) -> str:
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive on Windows
        return str(path)


def dotted_overrides(values: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """`{a: {b: 1}}` -> `{"a.b": 1}`: an override sets leaves, keeping sibling keys."""
    result: dict[str, Any] = {}
    for key, value in (values or {}).items():
        if isinstance(value, dict) and value:
            result.update(dotted_overrides(value, f"{prefix}{key}."))
        else:
            result[f"{prefix}{key}"] = value
    return result


# -------------------------------------------------------------------------- flattening


def flatten(root: BlueprintUnit) -> FlatGraph:
    """Replace every Arcade by its sub-Blueprint's modules, recursively, and order the result."""
    expansion = _Expansion(root, prefix="", rank=())
    expansion.run()
    order = _topological_order(expansion.placed)
    return FlatGraph(
        order=order,
        modules={m: expansion.placed[m] for m in order},
        edges=tuple(expansion.edges),
        warnings=expansion.warnings,
    )


class _Expansion:
    """One file's modules placed under `prefix`, its Arcades expanded into it."""

    def __init__(self, unit: BlueprintUnit, prefix: str, rank: tuple[int, ...]) -> None:
        self.unit = unit
        self.prefix = prefix
        self.rank = rank
        self.graph = unit.graph
        self.children: dict[str, _Expansion] = {}
        self.placed: dict[str, PlacedModule] = {}
        self.edges: list[Edge] = []
        self.warnings: list[str] = []

    def _is_arcade(self, module_id: str) -> bool:
        return self.unit.spec(module_id).expands_into_modules

    def _error(
        self, message: str, path: tuple[Any, ...], module_id: str, hint: str
    ) -> NoReturn:
        raise inside(
            BlueprintError(
                message, location=self.unit.document.location(path), module_id=module_id,
                hint=hint,
            ),
            self.unit.chain,
        )  # fmt: skip

    def run(self) -> None:
        unit, graph = self.unit, self.graph
        for arcade_id in unit.arcades():
            child = _Expansion(
                unit.children[arcade_id],
                prefix=f"{self.prefix}{arcade_id}{SEPARATOR}",
                rank=self.rank + (unit.position(arcade_id),),
            )
            child.run()
            self.children[arcade_id] = child
        for module_id in graph.order:
            inputs = tuple(self._input(i, module_id) for i in graph.inputs[module_id])
            after = self._after(module_id)
            if self._is_arcade(module_id):
                self._feed(module_id, inputs, after)
            else:
                self._place(module_id, inputs, after)
        for arcade_id, child in self.children.items():
            for flat_id, placed in child.placed.items():
                if flat_id in self.placed:
                    self._error(
                        f"Arcade '{arcade_id}' expands to module id '{flat_id}', which another "
                        "module already has",
                        ("modules", unit.position(arcade_id)),
                        arcade_id,
                        "rename the Arcade or the sub-Blueprint module (ids that start or end "
                        "with '_' can meet at the '__' separator)",
                    )
                self.placed[flat_id] = placed
        self.edges = self._edges()
        self.warnings = [
            f"Arcade {chain_text(unit.chain)}: {w}" if unit.chain else w for w in graph.warnings
        ]
        for child in self.children.values():
            self.edges.extend(child.edges)
            self.warnings.extend(child.warnings)

    # ------------------------------------------------------------------ this file's modules

    def _place(self, module_id: str, inputs: tuple[ModuleInput, ...], after: tuple[str, ...]):
        spec = self.unit.spec(module_id)
        position = self.unit.position(module_id)
        update: dict[str, Any] = {}
        flat_id = self.prefix + module_id
        if flat_id != spec.id:
            update["id"] = flat_id
        depends_on = self._flat_ids(spec.depends_on)
        if depends_on != spec.depends_on:
            update["depends_on"] = depends_on
        if spec.emits_signals and spec.attach_to:
            attach_to = self._resolve(spec.attach_to, MAIN, module_id)[0]
            if attach_to != spec.attach_to:
                update["attach_to"] = attach_to
        if spec.merges_inputs and spec.config.inputs:
            entries = []
            for entry in spec.config.inputs:
                source, _, port = entry.partition(".")
                flat_source, flat_port = self._resolve(source, port or MAIN, module_id)
                entries.append(flat_source if flat_port == MAIN else f"{flat_source}.{flat_port}")
            if entries != spec.config.inputs:
                update["config"] = spec.config.model_copy(update={"inputs": entries})
        # model_copy skips validation: the spec was validated as written; only the
        # compiler-made names (which may hold `__`) change.
        self.placed[flat_id] = PlacedModule(
            id=flat_id,
            spec=spec.model_copy(update=update) if update else spec,
            inputs=inputs,
            after=after,
            document=self.unit.document,
            path=("modules", position),
            arcade=self.unit.chain,
            rank=self.rank + (position,),
        )

    def _input(self, item: ModuleInput, consumer: str) -> ModuleInput:
        source, port = self._resolve(item.source, item.port, consumer)
        if (source, port) == (item.source, item.port):
            return item
        return item.model_copy(update={"source": source, "port": port})

    def _resolve(self, source: str, port: str, consumer: str) -> tuple[str, str]:
        """(flat id, port) of what `consumer` reads when it reads `source`'s `port`."""
        if not self._is_arcade(source):
            return self.prefix + source, port

        def fail(message: str, hint: str) -> NoReturn:
            self._error(message, self._reference_path(source, consumer, port), consumer, hint)

        return self.children[source].exit(port, source, consumer, fail)

    def _after(self, module_id: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._flat_ids(self.graph.after[module_id])))

    def _flat_ids(self, module_ids: Any) -> list[str]:
        """Flat ids to wait for: a module's, or every last module of an Arcade."""
        flat: list[str] = []
        for module_id in module_ids:
            if module_id in self.children:
                flat.extend(self.children[module_id].sinks())
            else:
                flat.append(self.prefix + module_id)
        return flat

    def _feed(self, arcade_id: str, inputs: tuple[ModuleInput, ...], after: tuple[str, ...]):
        """Give an Arcade's inputs to its entries and its `depends_on` to its first modules."""
        child = self.children[arcade_id]
        entries = child.entries()
        if inputs and not entries:
            first = self.graph.inputs[arcade_id][0]
            self._error(
                f"edge {first.source} -> {arcade_id}: Arcade '{arcade_id}' takes no data "
                f"input: every module of {child.unit.document.source_path} without inputs is "
                "an Ingress",
                self._reference_path(first.source, arcade_id, first.port),
                arcade_id,
                f"remove the edge, or use depends_on: [{first.source}] on the Arcade to only "
                "run after it; to pass data in, give the sub-Blueprint a module without inputs "
                "that reads the parent's frame (e.g. a Channel `SELECT ... FROM <alias>`)",
            )
        for flat_id in entries:
            child.update(flat_id, inputs=inputs)
        for flat_id in child.roots():
            placed = child.find(flat_id)
            child.update(flat_id, after=tuple(dict.fromkeys(placed.after + after)))

    # ------------------------------------------------------------------ as seen from the parent

    def find(self, flat_id: str) -> PlacedModule:
        if flat_id in self.placed:
            return self.placed[flat_id]
        return next(c.find(flat_id) for c in self.children.values() if c.owns(flat_id))

    def owns(self, flat_id: str) -> bool:
        return flat_id in self.placed or any(c.owns(flat_id) for c in self.children.values())

    def update(self, flat_id: str, **changes: Any) -> None:
        if flat_id in self.placed:
            self.placed[flat_id] = replace(self.placed[flat_id], **changes)
        else:
            next(c for c in self.children.values() if c.owns(flat_id)).update(flat_id, **changes)

    def entries(self) -> list[str]:
        """Flat ids of the modules that take the Arcade's data inputs."""
        result: list[str] = []
        for module_id in self.graph.order:
            if self.graph.inputs[module_id]:
                continue
            spec = self.unit.spec(module_id)
            if spec.expands_into_modules:
                result.extend(self.children[module_id].entries())
            elif not spec.reads_source:
                result.append(self.prefix + module_id)
        return result

    def roots(self) -> list[str]:
        """Flat ids of the modules that wait on nothing inside the Arcade."""
        result: list[str] = []
        for module_id in self.graph.order:
            if self.graph.inputs[module_id] or self.graph.after[module_id]:
                continue
            if self._is_arcade(module_id):
                result.extend(self.children[module_id].roots())
            else:
                result.append(self.prefix + module_id)
        return result

    def sinks(self) -> list[str]:
        """Flat ids of the modules nothing inside the Arcade waits on (all done = Arcade done)."""
        used = {i.source for inputs in self.graph.inputs.values() for i in inputs}
        used |= {a for after in self.graph.after.values() for a in after}
        result: list[str] = []
        for module_id in self.graph.order:
            if module_id in used:
                continue
            if self._is_arcade(module_id):
                result.extend(self.children[module_id].sinks())
            else:
                result.append(self.prefix + module_id)
        return result

    def exit_ids(self) -> list[str]:
        """Local ids of the modules whose output leaves the Arcade: those whose main output
        nothing inside reads (a Probe observing it, or a spillway edge, does not count)."""
        read = {
            i.source
            for module_id, inputs in self.graph.inputs.items()
            if not self.unit.spec(module_id).emits_signals
            for i in inputs
            if i.port != SPILLWAY
        }
        return [
            m for m in self.graph.order if m not in read and not self.unit.spec(m).emits_signals
        ]

    def exit(
        self, port: str, arcade_id: str, consumer: str, fail: Callable[[str, str], NoReturn]
    ) -> tuple[str, str]:
        """(flat id, port) that `consumer` reads when it reads this Arcade's `port`; `fail`
        raises at the place the consumer names the Arcade."""
        exits = self.exit_ids()
        head, dot, rest = port.partition(".")
        if port in exits:
            child, child_port = port, MAIN
        elif dot and head in exits:
            child, child_port = head, rest
        elif len(exits) == 1:
            child, child_port = exits[0], port
        else:
            file = self.unit.document.source_path
            if not exits:
                message = f"Arcade '{arcade_id}' has no output: every module of {file} is a Probe"
            elif port == MAIN:
                message = (
                    f"'{consumer}' reads Arcade '{arcade_id}', which has {len(exits)} exits "
                    f"(modules of {file} nothing inside it reads): {one_of(exits)}; name one"
                )
            else:
                message = (
                    f"'{consumer}' reads port '{port}' of Arcade '{arcade_id}', which is none "
                    f"of its exits" + did_you_mean(port, exits)
                )
            fail(
                message,
                f"on the edge write `port: <exit>` (or `<exit>.<port>`); in a Funnel's inputs "
                f"'{arcade_id}.<exit>'; exits: {one_of(exits)}",
            )
        if self._is_arcade(child):
            return self.children[child].exit(child_port, child, consumer, fail)
        spec = self.unit.spec(child)
        valid = [*spec.output_ports, SPILLWAY]
        if child_port not in valid:
            fail(
                f"'{consumer}' reads port '{port}' of Arcade '{arcade_id}', but its exit "
                f"'{child}' ({spec.type}) has no port '{child_port}'"
                + did_you_mean(child_port, valid),
                f"ports of '{child}': {one_of(valid)}",
            )
        return self.prefix + child, child_port

    def _reference_path(self, source: str, consumer: str, port: str) -> tuple[Any, ...]:
        """Where `consumer`'s reading of `source` is written: the edge, attach_to or inputs."""
        for number, edge in enumerate(self.unit.blueprint.edges or []):
            if (edge.from_, edge.to, edge.port) == (source, consumer, port):
                return ("edges", number)
        position = self.unit.position(consumer)
        spec = self.unit.spec(consumer)
        if spec.emits_signals and spec.attach_to == source:
            return ("modules", position, "attach_to")
        if spec.merges_inputs and spec.config.inputs:
            return ("modules", position, "config", "inputs")
        return ("modules", position)

    # ------------------------------------------------------------------ edges

    def _edges(self) -> list[Edge]:
        edges: list[Edge] = []
        for edge in self.graph.edges:
            source, port = self._resolve(edge.from_, edge.port, edge.to)
            alias = edge.as_
            if alias is None and self._is_arcade(edge.from_):
                # What the consumer's SQL calls it: the Arcade's name, not the exit's.
                alias = edge.from_ if edge.port == MAIN else f"{edge.from_}_{edge.port}"
            if self._is_arcade(edge.to):
                targets = self.children[edge.to].entries()
            else:
                targets = [self.prefix + edge.to]
            for target in targets:
                edges.append(
                    Edge.model_validate(
                        {"from": source, "to": target, "port": port, "as": alias,
                         "error_types": list(edge.error_types)}
                    )
                )  # fmt: skip
        return edges


def _topological_order(modules: dict[str, PlacedModule]) -> list[str]:
    """Every module after its inputs and `after`s; declaration order among ready ones."""
    waiting = {m: 0 for m in modules}
    successors: dict[str, list[str]] = {m: [] for m in modules}
    for module_id, placed in modules.items():
        for source in [i.source for i in placed.inputs] + list(placed.after):
            successors[source].append(module_id)
            waiting[module_id] += 1
    ready = [(modules[m].rank, m) for m in modules if waiting[m] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, module_id = heapq.heappop(ready)
        order.append(module_id)
        for nxt in successors[module_id]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, (modules[nxt].rank, nxt))
    if len(order) != len(modules):  # pragma: no cover - each file's graph is acyclic
        stuck = sorted(set(modules) - set(order))
        raise BlueprintError(f"the expanded pipeline has a cycle among: {', '.join(stuck)}")
    return order
