"""The compiled Manifest: what every later layer (engine, Dagster, healing) consumes.

A Manifest is an inert, JSON-serialisable record. It holds no secret values: an
`@aq.secret('NAME')` token stays in the config text and is revealed by the engine at the
point of use. Run-dependent tokens (`@aq.run.*`, `@aq.date.*`) stay as tokens too and are
bound once per run by `bind_runtime`, so a long-lived code location never freezes "today".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aqueduct_dagster.blueprint.models import (
    Agent,
    Edge,
    EngineBlock,
    Hooks,
    Module,
    Partitions,
    RetryPolicy,
    Udf,
)
from aqueduct_dagster.errors import SourceLocation


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Location(Frozen):
    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file] + [str(p) for p in (self.line, self.column) if p is not None]
        return ":".join(parts)

    def as_source(self) -> SourceLocation:
        """This location as the error root (`AqueductError.location`) wants it."""
        return SourceLocation(file=self.file, line=self.line, column=self.column)


ProvenanceSource = Literal[
    "literal", "default", "context", "context_override", "profile", "macro", "env",
    "function", "secret", "runtime",
]  # fmt: skip


class Provenance(Frozen):
    """Where a final config value came from."""

    source: ProvenanceSource
    #: e.g. the context key, macro name, env var or function call that supplied the value.
    detail: str | None = None
    location: Location | None = None


class ModuleInput(Frozen):
    """A data edge into a module."""

    source: str
    port: str = "main"
    #: The name the upstream frame has inside this module's SQL (edge `as:`, else the id,
    #: or `<junction>_<branch>` for a branch port).
    alias: str
    error_types: tuple[str, ...] = ()


class ColumnSource(Frozen):
    module: str
    column: str


class CompiledModule(Frozen):
    id: str
    type: str
    spec: Module
    inputs: tuple[ModuleInput, ...] = ()
    #: Ordering-only dependencies (`depends_on`): run after, receive no data.
    after: tuple[str, ...] = ()
    location: Location | None = None
    #: Output column -> the upstream columns it is computed from (empty when unknown).
    column_lineage: dict[str, tuple[ColumnSource, ...]] = Field(default_factory=dict)
    fingerprint: str = ""
    #: The Arcades this module was expanded from, outermost first (empty for a module written
    #: in the Blueprint itself); its id is then `<arcade>__...__<local_id>`.
    arcade: tuple[str, ...] = ()

    @property
    def local_id(self) -> str:
        """The id as written in its own (sub-)Blueprint file."""
        prefix = "".join(f"{name}__" for name in self.arcade)
        return self.id[len(prefix) :]

    @property
    def label(self) -> str:
        return self.spec.label or self.id

    @property
    def config(self) -> Any:
        return self.spec.config

    @property
    def sql(self) -> str | None:
        return self.spec.config.query if self.spec.runs_sql else None

    # What the module does, answered by its type's record (blueprint/models.py, ModuleBase):
    # later layers ask these instead of comparing `type` names.

    @property
    def reads_source(self) -> bool:
        return self.spec.reads_source

    @property
    def writes_sink(self) -> bool:
        return self.spec.writes_sink

    @property
    def is_quality_check(self) -> bool:
        return self.spec.is_quality_check

    @property
    def emits_signals(self) -> bool:
        return self.spec.emits_signals

    @property
    def gates_on_signals(self) -> bool:
        return self.spec.gates_on_signals

    @property
    def checkpointable(self) -> bool:
        return self.spec.checkpointable

    @property
    def output_ports(self) -> tuple[str, ...]:
        return self.spec.output_ports

    @property
    def materializes_incrementally(self) -> bool:
        return self.spec.materializes_incrementally

    @property
    def filters_its_input(self) -> bool:
        return self.spec.filters_its_input

    @property
    def testable_alone(self) -> bool:
        return self.spec.testable_alone


class Manifest(Frozen):
    blueprint_id: str
    name: str
    description: str = ""
    aqueduct: str = "1.0"
    source_path: str
    context: dict[str, Any] = Field(default_factory=dict)
    macros: dict[str, str] = Field(default_factory=dict)
    engine: EngineBlock = Field(default_factory=EngineBlock)
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    agent: Agent = Field(default_factory=Agent)
    hooks: Hooks = Field(default_factory=Hooks)
    udf_registry: tuple[Udf, ...] = ()
    #: Every module's output is checkpointed (a module can also ask with `checkpoint: true`).
    checkpoint: bool = False
    partitions: Partitions | None = None
    #: A cron expression: the Blueprint's job runs on it (per partition when partitioned).
    schedule: str | None = None
    #: `eager`: materialize when upstream assets (other Blueprints') change; `on_cron`: on `schedule`.
    automation: str | None = None
    #: Modules in a topological order (every module after all of its inputs).
    modules: dict[str, CompiledModule]
    edges: tuple[Edge, ...] = ()
    #: Dotted config path (`modules.<id>.config.<key>...`) -> where its value came from.
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    fingerprint: str = ""

    def module(self, module_id: str) -> CompiledModule:
        return self.modules[module_id]

    def consumers(self, module_id: str) -> list[CompiledModule]:
        """Modules that take `module_id`'s output as data."""
        return [m for m in self.modules.values() if any(i.source == module_id for i in m.inputs)]

    def ancestors(self, module_id: str) -> set[str]:
        """Every module `module_id` reads from, directly or not."""
        found, stack = set(), [module_id]
        while stack:
            for edge in self.module(stack.pop()).inputs:
                if edge.source not in found:
                    found.add(edge.source)
                    stack.append(edge.source)
        return found

    def descendants(self, module_id: str) -> set[str]:
        """Every module that reads `module_id`'s output, directly or not."""
        found, stack = set(), [module_id]
        while stack:
            for consumer in self.consumers(stack.pop()):
                if consumer.id not in found:
                    found.add(consumer.id)
                    stack.append(consumer.id)
        return found


def fingerprint_of(payload: Any) -> str:
    """A stable short hash of a JSON-able payload (used for Dagster code versions)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
