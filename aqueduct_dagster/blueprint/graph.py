"""Wire a validated Blueprint's modules into a checked, ordered graph.

Data edges come from `edges:` (or the linear chain when it is omitted), plus the implicit
ones a Probe's `attach_to` and a Funnel's `config.inputs` imply. `depends_on` orders without
passing data. Disabled modules are dropped with everything downstream of them. An Arcade is
one node here; `arcade.py` replaces it by its sub-Blueprint's graph afterwards.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

from aqueduct_dagster.blueprint.loader import BlueprintDocument
from aqueduct_dagster.blueprint.manifest import ModuleInput
from aqueduct_dagster.blueprint.models import Blueprint, Edge, module_types_where
from aqueduct_dagster.blueprint.suggest import article, did_you_mean, one_of
from aqueduct_dagster.errors import BlueprintError

#: Single-input, single-output types: the only ones a declaration-order chain can wire.
CHAINABLE_TYPES = module_types_where(lambda model: model.chainable)
MAIN, SPILLWAY, SIGNAL = "main", "spillway", "signal"

_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0", ""}


@dataclass(frozen=True)
class _Wire:
    """One data edge, remembering where it was declared (None when implicit)."""

    source: str
    target: str
    port: str
    alias: str | None
    error_types: tuple[str, ...]
    edge_index: int | None


@dataclass
class ModuleGraph:
    #: Enabled modules in topological order (declaration order among ready ones).
    order: list[str]
    inputs: dict[str, tuple[ModuleInput, ...]]
    after: dict[str, tuple[str, ...]]
    edges: tuple[Edge, ...]
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def build_graph(blueprint: Blueprint, document: BlueprintDocument) -> ModuleGraph:
    return _GraphBuilder(blueprint, document).build()


class _GraphBuilder:
    def __init__(self, blueprint: Blueprint, document: BlueprintDocument) -> None:
        self.blueprint = blueprint
        self.document = document
        self.index: dict[str, int] = {}
        self.modules: dict[str, Any] = {}

    def build(self) -> ModuleGraph:
        self._index_modules()
        wires = self._wires()
        after = self._after()
        self._check_acyclic(wires, after)
        dropped, warnings = self._disabled(wires, after)
        if self.modules and len(dropped) == len(self.modules):
            raise BlueprintError(
                "every module is disabled, so this Blueprint would do nothing",
                location=self.document.location(("modules",)),
                hint="enable at least one module (check the `enabled:` values and the context "
                "profile in use)",
            )
        wires = [w for w in wires if w.source not in dropped and w.target not in dropped]
        inputs = self._inputs(wires, dropped)
        after = {m: tuple(a for a in deps if a not in dropped) for m, deps in after.items()}
        order = self._topological_order(wires, after, dropped)
        edges = tuple(
            Edge.model_validate(
                {"from": w.source, "to": w.target, "port": w.port, "as": w.alias,
                 "error_types": list(w.error_types)}
            )
            for w in wires
        )  # fmt: skip
        return ModuleGraph(
            order=order,
            inputs={m: inputs.get(m, ()) for m in order},
            after={m: after.get(m, ()) for m in order},
            edges=edges,
            warnings=warnings,
            dropped=[m for m in self.modules if m in dropped],
        )

    # ------------------------------------------------------------------ modules

    def _index_modules(self) -> None:
        for position, module in enumerate(self.blueprint.modules):
            if module.id in self.index:
                first = self.document.location(("modules", self.index[module.id], "id"))
                second = self.document.location(("modules", position, "id"))
                raise BlueprintError(
                    f"duplicate module id '{module.id}' (lines {first.line} and {second.line})",
                    location=second,
                    module_id=module.id,
                    hint="module ids must be unique: they name edges, assets and SQL inputs",
                )
            self.index[module.id] = position
            self.modules[module.id] = module
        for module_id, module in self.modules.items():
            if module.expands_into_modules and not module.ref:
                raise BlueprintError(
                    "an Arcade needs `ref:`, the sub-Blueprint file it stands for",
                    location=self._location(module_id),
                    module_id=module_id,
                    hint="add ref: <file>.yml (relative to this Blueprint's folder), next to "
                    "`type:`",
                )

    def _location(self, module_id: str, *rest: Any) -> Any:
        return self.document.location(("modules", self.index[module_id], *rest))

    def _enabled(self, module_id: str) -> bool:
        value = self.modules[module_id].enabled
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise BlueprintError(
            f"enabled: {value!r} is neither true nor false",
            location=self._location(module_id, "enabled"),
            module_id=module_id,
            hint="use true/false, or a ${ctx.key} / ${ENV_VAR} that resolves to one",
        )

    def _known(
        self, module_id: str, path: tuple[Any, ...], what: str, owner: str | None = None
    ) -> None:
        """Raise unless `module_id` exists; `owner` is the module whose key names it."""
        if module_id not in self.modules:
            raise BlueprintError(
                f"{what} '{module_id}' is not a module of this Blueprint"
                + did_you_mean(module_id, self.modules),
                location=self.document.location(path),
                module_id=owner,
                hint=f"module ids: {one_of(self.modules)}",
            )

    # ------------------------------------------------------------------ data edges

    def _wires(self) -> list[_Wire]:
        wires: list[_Wire] = []
        if self.blueprint.edges is None:
            wires.extend(self._chain())
        else:
            # Sets, not scans of the edges so far: 8,000 edges made the scans take seconds.
            seen: set[tuple[str, str, str]] = set()
            for number, edge in enumerate(self.blueprint.edges):
                wires.append(self._explicit(number, edge, seen))
        wired = {(w.source, w.target) for w in wires}
        for module_id, module in self.modules.items():
            if module.emits_signals and module.attach_to:
                self._known(module.attach_to, ("modules", self.index[module_id], "attach_to"),
                            "attach_to", owner=module_id)  # fmt: skip
                if (module.attach_to, module_id) not in wired:
                    wires.append(
                        _Wire(module.attach_to, module_id, MAIN, None, (), None)
                    )
            if module.merges_inputs:
                wires = self._funnel_inputs(module_id, module, wires)
        return wires

    def _chain(self) -> list[_Wire]:
        for module_id, module in self.modules.items():
            if not module.chainable:
                raise BlueprintError(
                    f"no `edges:` given, so modules would be chained in declaration order, but "
                    f"'{module_id}' is {article(module.type)}, whose inputs/outputs are "
                    "ambiguous in a chain",
                    location=self._location(module_id, "type"),
                    module_id=module_id,
                    hint="wire the graph explicitly: edges: [{from: a, to: b}, ...] "
                    f"(chaining only works with {', '.join(CHAINABLE_TYPES)})",
                )
        ids = list(self.modules)
        return [_Wire(a, b, MAIN, None, (), None) for a, b in zip(ids, ids[1:], strict=False)]

    def _explicit(self, number: int, edge: Edge, earlier: set[tuple[str, str, str]]) -> _Wire:
        self._known(edge.from_, ("edges", number, "from"), "edge source")
        self._known(edge.to, ("edges", number, "to"), "edge target")
        self._check_port(edge.from_, edge.port, edge.to, ("edges", number, "port"))
        if edge.error_types and edge.port != SPILLWAY:
            raise BlueprintError(
                f"edge {edge.from_} -> {edge.to}: error_types only apply to spillway edges",
                location=self.document.location(("edges", number, "error_types")),
                hint="add `port: spillway`, or remove error_types",
            )
        if (edge.from_, edge.to, edge.port) in earlier:
            raise BlueprintError(
                f"edge {edge.from_} -> {edge.to} (port {edge.port}) is listed twice",
                location=self.document.location(("edges", number)),
                hint="remove the repeated edge",
            )
        earlier.add((edge.from_, edge.to, edge.port))
        return _Wire(
            edge.from_, edge.to, edge.port, edge.as_, tuple(edge.error_types), number
        )

    def _valid_ports(self, source_id: str) -> list[str]:
        source = self.modules[source_id]
        if source.emits_signals:
            return [SIGNAL]
        return [*source.output_ports, SPILLWAY]

    def _check_port(
        self,
        source_id: str,
        port: str,
        target_id: str,
        path: tuple[Any, ...],
        owner: str | None = None,
    ) -> None:
        """Raise unless `port` is an output of `source_id` that may feed `target_id`."""
        owner = owner or source_id
        source, target = self.modules[source_id], self.modules[target_id]
        if source.expands_into_modules:
            return  # the port names one of its exits, checked when the Arcade is expanded
        location = self.document.location(path)
        if source.emits_signals and not target.gates_on_signals:
            raise BlueprintError(
                f"edge {source_id} -> {target_id}: a Probe emits signals, not data; its only "
                "edge goes to a Regulator",
                location=location,
                module_id=owner,
                hint=f"to observe '{target_id}', set `attach_to:` on the Probe instead; to gate "
                "a branch, wire the Probe to a Regulator with `port: signal`",
            )
        valid = self._valid_ports(source_id)
        if port in valid:
            return
        if port == SIGNAL:
            message = f"edge {source_id} -> {target_id}: only a Probe has a 'signal' port"
        else:
            message = (
                f"edge {source_id} -> {target_id}: {article(source.type)} has no port '{port}'"
                + did_you_mean(port, valid)
            )
        raise BlueprintError(
            message, location=location, module_id=owner, hint=f"valid ports: {one_of(valid)}"
        )

    def _funnel_inputs(self, funnel_id: str, funnel: Any, wires: list[_Wire]) -> list[_Wire]:
        """Order the Funnel's inputs as `config.inputs` lists them, adding missing edges."""
        listed: list[_Wire] = []
        into = {(w.source, w.port): w for w in reversed(wires) if w.target == funnel_id}
        for number, entry in enumerate(funnel.config.inputs):
            path = ("modules", self.index[funnel_id], "config", "inputs", number)
            source_id, _, port = entry.partition(".")
            port = port or MAIN
            self._known(source_id, path, "funnel input", owner=funnel_id)
            if port == MAIN and MAIN not in self.modules[source_id].output_ports:
                raise BlueprintError(
                    f"funnel input '{entry}' must name a branch of Junction '{source_id}'",
                    location=self.document.location(path),
                    module_id=funnel_id,
                    hint=f"write '{source_id}.<branch>', one of "
                    f"{one_of(self._valid_ports(source_id))}",
                )
            self._check_port(source_id, port, funnel_id, path, owner=funnel_id)
            existing = into.get((source_id, port))
            listed.append(
                existing or _Wire(source_id, funnel_id, port, None, (), None)
            )
        if not listed:
            return wires
        # The Funnel's inputs: those it lists, in its order, then any other edge into it.
        listed_ids = {id(w) for w in listed}
        # A listed wire is either one of `wires` or matches none of them: identity suffices.
        ordered = listed + [w for w in wires if w.target == funnel_id and id(w) not in listed_ids]
        result: list[_Wire] = []
        for wire in wires:
            if wire.target != funnel_id:
                result.append(wire)
            elif ordered:
                result.extend(ordered)
                ordered = []
        return result + ordered

    # ------------------------------------------------------------------ ordering edges

    def _after(self) -> dict[str, tuple[str, ...]]:
        after: dict[str, tuple[str, ...]] = {}
        for module_id, module in self.modules.items():
            for number, other in enumerate(module.depends_on):
                self._known(other, ("modules", self.index[module_id], "depends_on", number),
                            "depends_on", owner=module_id)  # fmt: skip
            after[module_id] = tuple(dict.fromkeys(module.depends_on))
        return after

    def _check_acyclic(self, wires: list[_Wire], after: dict[str, tuple[str, ...]]) -> None:
        successors: dict[str, list[str]] = {m: [] for m in self.modules}
        for wire in wires:
            successors[wire.source].append(wire.target)
        for module_id, deps in after.items():
            for dep in deps:
                successors[dep].append(module_id)
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in self.modules:
            if state.get(start):
                continue
            path: list[str] = [start]
            iterators = [iter(successors[start])]
            state[start] = 1
            while iterators:
                nxt = next(iterators[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    iterators.pop()
                elif state.get(nxt) == 1:
                    cycle = path[path.index(nxt) :] + [nxt]
                    raise BlueprintError(
                        f"the pipeline has a cycle: {' -> '.join(cycle)}",
                        location=self._location(cycle[0]),
                        module_id=cycle[0],
                        hint="data must flow one way; remove or redirect one of these edges "
                        "(edges, attach_to, funnel inputs or depends_on)",
                    )
                elif not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    iterators.append(iter(successors[nxt]))

    # ------------------------------------------------------------------ disabled modules

    def _disabled(
        self, wires: list[_Wire], after: dict[str, tuple[str, ...]]
    ) -> tuple[set[str], list[str]]:
        downstream: dict[str, list[str]] = {m: [] for m in self.modules}
        for wire in wires:
            if wire.port != SIGNAL:  # a gate without its signal stays, just passive
                downstream[wire.source].append(wire.target)
        for module_id, deps in after.items():
            for dep in deps:
                downstream[dep].append(module_id)
        dropped: set[str] = set()
        warnings: list[str] = []
        for module_id in self.modules:
            if self._enabled(module_id) or module_id in dropped:
                continue
            reached: list[str] = []
            stack = [module_id]
            while stack:
                current = stack.pop()
                for nxt in downstream[current]:
                    if nxt not in dropped and nxt not in reached and nxt != module_id:
                        reached.append(nxt)
                        stack.append(nxt)
            dropped.add(module_id)
            dropped.update(reached)
            also = (
                f"; also dropping its downstream module(s): {', '.join(sorted(reached))}"
                if reached
                else ""
            )
            warnings.append(f"module '{module_id}' is disabled (enabled: false){also}")
        return dropped, warnings

    # ------------------------------------------------------------------ assembly

    def _inputs(self, wires: list[_Wire], dropped: set[str]) -> dict[str, tuple[ModuleInput, ...]]:
        inputs: dict[str, list[ModuleInput]] = {}
        for wire in wires:
            default_alias = wire.source if wire.port == MAIN else f"{wire.source}_{wire.port}"
            alias = wire.alias or default_alias
            siblings = inputs.setdefault(wire.target, [])
            clash = next((i for i in siblings if i.alias == alias), None)
            if clash is not None:
                path = ("edges", wire.edge_index) if wire.edge_index is not None else None
                raise BlueprintError(
                    f"two inputs of '{wire.target}' are both called '{alias}' "
                    f"(from {clash.source} and {wire.source})",
                    location=self.document.location(path) if path else self._location(wire.target),
                    module_id=wire.target,
                    hint="give one of the edges an `as:` name",
                )
            siblings.append(
                ModuleInput(
                    source=wire.source, port=wire.port, alias=alias, error_types=wire.error_types
                )
            )
        return {m: tuple(v) for m, v in inputs.items() if m not in dropped}

    def _topological_order(
        self, wires: list[_Wire], after: dict[str, tuple[str, ...]], dropped: set[str]
    ) -> list[str]:
        alive = [m for m in self.modules if m not in dropped]
        waiting = {m: 0 for m in alive}
        successors: dict[str, list[str]] = {m: [] for m in alive}
        for wire in wires:
            successors[wire.source].append(wire.target)
            waiting[wire.target] += 1
        for module_id in alive:
            for dep in after.get(module_id, ()):
                successors[dep].append(module_id)
                waiting[module_id] += 1
        ready = [self.index[m] for m in alive if waiting[m] == 0]
        heapq.heapify(ready)
        ids = list(self.modules)
        order: list[str] = []
        while ready:
            module_id = ids[heapq.heappop(ready)]
            order.append(module_id)
            for nxt in successors[module_id]:
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    heapq.heappush(ready, self.index[nxt])
        return order
