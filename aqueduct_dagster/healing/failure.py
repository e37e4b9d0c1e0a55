"""The failure package: everything a diagnoser may know about one failure, and nothing more.

Built from the failed step's structured error (captured by the engine when the step failed,
together with the schemas of its inputs) and the Blueprint. A pruner keeps only the blast
radius: the failed module, its direct upstream and downstream modules, and the macros and
context keys they use. Everything is redacted before the package exists.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.engine.errors import FailureRecord, FailureTrigger, SparkErrorInfo
from aqueduct_dagster.healing.arcade_files import raw_modules as modules_as_written
from aqueduct_dagster.healing.redaction import Redactor


class ColumnInfo(BaseModel):
    name: str
    type: str


class NeighbourModule(BaseModel):
    id: str
    type: str
    #: "surfaced": where a lazily evaluated fault raised, downstream of the failed module.
    #: "reader": reads an Ingress whose input drifted since the last good run (a fix may
    #: belong where the drifted column is read, not where the run failed).
    role: Literal["failed", "upstream", "downstream", "surfaced", "reader"]
    inputs: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)


class FailurePackage(BaseModel):
    heal_id: str
    trigger: FailureTrigger = "run_failure"
    blueprint_id: str
    blueprint_path: str
    run_id: str | None = None
    #: The module that holds the fault: what a patch edits.
    failed_module: str
    module_type: str
    #: Where the fault surfaced (the Assert or Egress whose action ran the plan); the same as
    #: `failed_module` unless blame moved it upstream. Empty in packages from before blame.
    surfaced_in: str = ""
    #: How `failed_module` was found (healing.blame.Blame.to_dict) with the sample evidence
    #: the safe-rewrite rules check; empty when nobody blamed.
    fault: dict[str, Any] = Field(default_factory=dict)
    #: The structured Spark (or framework) error, redacted.
    error: SparkErrorInfo
    signature: str
    #: The failed module exactly as written (templating intact): what a patch edits.
    module_raw: dict[str, Any]
    #: The same module after compilation (macros, context, functions resolved).
    module_compiled: dict[str, Any]
    provenance: dict[str, str] = Field(default_factory=dict)
    upstream_schemas: dict[str, list[ColumnInfo]] = Field(default_factory=dict)
    neighbourhood: list[NeighbourModule] = Field(default_factory=list)
    macros: dict[str, str] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    failed_rules: list[dict[str, Any]] = Field(default_factory=list)
    recent_runs: list[dict[str, Any]] = Field(default_factory=list)
    #: The newest successful run that recorded evidence (what drift and contracts compare with).
    last_good_run: str | None = None
    #: Per module id, what changed in the inputs since that run (healing/drift.py).
    drift: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: Per Egress id, the columns and row count it published in that run.
    contracts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: The run's Redactor, travelling with the package to every sink (never serialized).
    _redactor: Redactor | None = PrivateAttr(default=None)

    @property
    def redactor(self) -> Redactor:
        """The Redactor this package was built with; for a package made by hand (or read back
        from JSON), one for the secret tokens in its own module plus credential-named env vars."""
        if self._redactor is None:
            self._redactor = Redactor.for_blueprint(
                json.dumps([self.module_raw, self.module_compiled], default=str),
                code=yaml.safe_dump(self.module_raw) if self.module_raw else "",
            )
        return self._redactor

    def with_redactor(self, redactor: Redactor) -> FailurePackage:
        self._redactor = redactor
        return self

    @property
    def last_good(self) -> str:
        """How messages name the run the evidence comes from."""
        return f"the last good run ({self.last_good_run})" if self.last_good_run else "the last good run"

    @property
    def condition(self) -> str:
        return self.error.condition or ""

    def upstream_columns(self) -> dict[str, list[str]]:
        return {alias: [c.name for c in cols] for alias, cols in self.upstream_schemas.items()}


_MACRO_USE = re.compile(r"\{\{\s*macros\.(\w+)")
_CONTEXT_USE = re.compile(r"\$\{ctx\.([\w.]+)\}")


def build_failure_package(
    *,
    manifest: Manifest,
    blueprint_text: str,
    failure: FailureRecord,
    failed_module: str | None = None,
    surfaced_in: str | None = None,
    fault: Mapping[str, Any] | None = None,
    input_schemas: Mapping[str, Sequence[Sequence[str]]] | None = None,
    run_id: str | None = None,
    recent_runs: Sequence[Mapping[str, Any]] = (),
    last_good_run: str | None = None,
    drift: Mapping[str, Any] | None = None,
    contracts: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    redactor: Redactor | None = None,
) -> FailurePackage:
    """The package of `failure`, redacted by `redactor` (built here from the Blueprint when the
    caller has none): the same Redactor then guards every sink the package reaches.

    `failed_module` is the module that holds the fault (blame's answer; by default the one
    the failure surfaced in), `input_schemas` its inputs' columns (by default the recorded ones).
    """
    failed_module = failed_module or failure.module_id
    if input_schemas is None:
        input_schemas = failure.input_schemas
    source = Path(manifest.source_path)
    # Arcade children are read from their own files, under their ids in the Manifest.
    raws = modules_as_written(blueprint_text, source if source.is_file() else None)
    # Secrets referenced in sub-Blueprints are redacted as well as the parent's own.
    if redactor is None:
        redactor = Redactor.for_blueprint(blueprint_text + "\n" + yaml.safe_dump(raws), env, code=blueprint_text)
    module = manifest.module(failed_module)

    # Data exceptions (SQLSTATE classes 22/23: bad cast input, constraint values) quote
    # *data* values: those go, in every quoting style. Syntax and analysis errors (class 42)
    # quote the SQL itself (`near 'user'`), which the Blueprint already holds: keeping it
    # lets a rule act on it. The structured fields decide which is which (`is_data_error`).
    error = failure.error.redacted(redactor)
    facts = error.model_copy(update={"message": error.message[:2000], "cause_chain": error.cause_chain[:5],
                                     "query_context": error.query_context[:3]})  # fmt: skip

    neighbours = [_neighbour(manifest, raws, failed_module, "failed")]
    neighbours += [_neighbour(manifest, raws, i.source, "upstream") for i in module.inputs]
    neighbours += [_neighbour(manifest, raws, c.id, "downstream") for c in manifest.consumers(failed_module)]
    surfaced_in = surfaced_in or failed_module
    if surfaced_in not in {n.id for n in neighbours}:
        neighbours.append(_neighbour(manifest, raws, surfaced_in, "surfaced"))
    drifted = [m for m, entry in (drift or {}).items() if entry.get("kind") == "ingress" and entry.get("changed")]
    for ingress in drifted:
        for reader in _between(manifest, ingress, failed_module):
            if reader not in {n.id for n in neighbours}:
                neighbours.append(_neighbour(manifest, raws, reader, "reader"))

    used_text = yaml.safe_dump([n.config for n in neighbours])
    macros = {name: body for name, body in manifest.macros.items() if name in _MACRO_USE.findall(used_text)}
    context_keys = {key.split(".")[0] for key in _CONTEXT_USE.findall(used_text + yaml.safe_dump(macros))}
    context = {k: v for k, v in manifest.context.items() if k in context_keys}

    provenance = {
        path: f"{p.source}" + (f" ({p.detail})" if p.detail else "") + (f" at {p.location}" if p.location else "")
        for path, p in manifest.provenance.items()
        if path.startswith(f"modules.{failed_module}.")
    }
    package = FailurePackage(
        heal_id=uuid.uuid4().hex[:12],
        trigger=failure.trigger,
        blueprint_id=manifest.blueprint_id,
        blueprint_path=manifest.source_path,
        run_id=run_id,
        failed_module=failed_module,
        module_type=module.type,
        surfaced_in=surfaced_in,
        fault=redactor.data(dict(fault or {})),
        error=facts,
        signature=facts.signature(blueprint_id=manifest.blueprint_id, module_id=failed_module),
        module_raw=redactor.data(raws.get(failed_module, {})),
        module_compiled=redactor.data(
            module.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        ),
        provenance=redactor.data(provenance),
        # Column names come from the data: secrets out here, fenced as data in the prompt.
        upstream_schemas={
            alias: [ColumnInfo(name=redactor.text(str(c[0])), type=str(c[1])) for c in columns]
            for alias, columns in (input_schemas or {}).items()
        },
        neighbourhood=redactor.data([n.model_dump() for n in neighbours]),
        macros=redactor.data(macros),
        context=redactor.data(context),
        failed_rules=redactor.data([dict(r) for r in failure.failed_rules], data_literals=True),
        recent_runs=redactor.data([dict(r) for r in recent_runs][:5]),
        last_good_run=last_good_run,
        drift=redactor.data(dict(drift or {})),
        contracts=redactor.data(dict(contracts or {})),
    )
    return package.with_redactor(redactor)


def _between(manifest: Manifest, source: str, target: str) -> list[str]:
    """Modules on a path from `source` to `target` (both excluded), and `source`'s direct
    readers: where a drifted column can be read before the run fails."""
    below, above = manifest.descendants(source), manifest.ancestors(target)
    direct = {c.id for c in manifest.consumers(source)}
    return [m for m in manifest.modules if m in (below & above) | direct and m not in (source, target)]


def _neighbour(manifest: Manifest, raws: Mapping[str, dict], module_id: str, role: str) -> NeighbourModule:
    module = manifest.module(module_id)
    raw = raws.get(module_id) or {}
    return NeighbourModule(
        id=module_id,
        type=module.type,
        role=role,
        inputs=[i.alias if i.alias == i.source else f"{i.source} as {i.alias}" for i in module.inputs],
        config=dict(raw.get("config") or {}),
    )
