"""Compile a Blueprint file into a Manifest: load -> template -> validate -> wire -> analyse.

Each Arcade's sub-Blueprint goes through the same steps and is then flattened into its
parent (`arcade.py`). Pure: no Spark, no Dagster. Every problem is a BlueprintError pointing
at file:line:column.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aqueduct_dagster
from aqueduct_dagster.blueprint.arcade import (
    BlueprintUnit,
    FlatGraph,
    PlacedModule,
    arcade_file,
    dotted_overrides,
    flatten,
    inside,
)
from aqueduct_dagster.blueprint.cache import COMPILE_CACHE, EnvReads, read_dependency
from aqueduct_dagster.blueprint.depot import check_depot
from aqueduct_dagster.blueprint.functions import CompileFacts
from aqueduct_dagster.blueprint.graph import build_graph
from aqueduct_dagster.blueprint.lineage import (
    SINGLE_INPUT_ALIAS,
    analysable_sql,
    lineage_with_completeness,
    output_width,
    parse_single_select,
    passed_through_lineage,
    table_references,
)
from aqueduct_dagster.blueprint.loader import (
    BlueprintDocument,
    load_document,
    read_blueprint_text,
)
from aqueduct_dagster.blueprint.manifest import (
    ColumnSource,
    CompiledModule,
    Location,
    Manifest,
    ModuleInput,
    Provenance,
    fingerprint_of,
)
from aqueduct_dagster.blueprint.models import Udf
from aqueduct_dagster.blueprint.suggest import did_you_mean, one_of
from aqueduct_dagster.blueprint.templating import TemplateSettings, resolve_templates
from aqueduct_dagster.blueprint.validation import validate_blueprint
from aqueduct_dagster.errors import BlueprintError, SourceLocation

DEFAULT_DEPLOYMENT = {"env": "dev", "target": "local"}

#: Channel ops whose output has exactly the columns of their (first) input.
_COLUMN_PRESERVING_OPS = {
    "filter", "sort", "repartition", "coalesce", "cache", "deduplicate", "cast", "union",
}  # fmt: skip


def compile_blueprint(
    path: str | Path,
    *,
    context_overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    deployment: Mapping[str, str] | None = None,
) -> Manifest:
    """Compile the Blueprint file at `path` into a Manifest.

    An equal Manifest compiled before, from the same file, Arcade files, environment values
    and arguments, is returned instead of compiling again (`blueprint/cache.py`).
    """
    path = Path(path)
    text = read_blueprint_text(path)
    absolute_path = path.resolve()

    def compile_with(environ: Mapping[str, str]) -> Manifest:
        return _compile(
            text,
            source_path=str(path),
            absolute_path=absolute_path,
            context_overrides=context_overrides,
            profile=profile,
            env=environ,
            deployment=deployment,
        )

    return COMPILE_CACHE.compile(
        compile_with,
        text=text,
        source_path=str(path),
        absolute_path=absolute_path,
        environ=os.environ if env is None else env,
        arguments={
            "context_overrides": dict(context_overrides or {}),
            "profile": profile,
            "deployment": dict(deployment or {}),
        },
    )


def compile_text(
    text: str,
    *,
    source_path: str | Path = "<string>",
    context_overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
    deployment: Mapping[str, str] | None = None,
    file_overrides: Mapping[Path, str] | None = None,
) -> Manifest:
    """Compile Blueprint YAML text (tests, patch previews); `source_path` names it in errors.

    `file_overrides` (resolved path -> text) stand in for Arcade files on disk: a patch to a
    sub-Blueprint is compiled within its parent before anything is written.
    """
    source_path = str(source_path)
    return _compile(
        text,
        source_path=source_path,
        absolute_path=Path(source_path).resolve() if source_path != "<string>" else None,
        context_overrides=context_overrides,
        profile=profile,
        env=env,
        deployment=deployment,
        file_overrides=file_overrides,
    )


def _compile(
    text: str,
    *,
    source_path: str,
    absolute_path: Path | None,
    context_overrides: Mapping[str, Any] | None,
    profile: str | None,
    env: Mapping[str, str] | None,
    deployment: Mapping[str, str] | None,
    file_overrides: Mapping[Path, str] | None = None,
) -> Manifest:
    document = load_document(text, source_path)
    settings = TemplateSettings(
        facts=_facts(document, absolute_path, env, deployment),
        context_overrides=dict(context_overrides or {}),
        profile=profile,
    )
    root = _unit(document, settings, absolute_path, chain=(), files=())
    _expand_arcades(root, settings.facts, dict(file_overrides or {}), [0])
    blueprint = root.blueprint
    flat = flatten(root)
    modules = _compiled_modules(flat)
    provenance = _provenance(root)
    context = root.templated.data.get("context", {})
    manifest_fingerprint = fingerprint_of(
        {
            "modules": {m.id: m.fingerprint for m in modules.values()},
            "context": context,
            "engine": blueprint.engine.model_dump(mode="json"),
        }
    )
    manifest = Manifest(
        blueprint_id=blueprint.id,
        name=blueprint.name,
        description=blueprint.description,
        aqueduct=blueprint.aqueduct,
        source_path=source_path,
        context=context,
        macros=blueprint.macros,
        engine=blueprint.engine,
        retry_policy=blueprint.retry_policy,
        agent=blueprint.agent,
        hooks=blueprint.hooks,
        udf_registry=_udfs(root),
        checkpoint=blueprint.checkpoint,
        partitions=blueprint.partitions,
        schedule=blueprint.schedule,
        automation=blueprint.automation,
        modules=modules,
        edges=flat.edges,
        provenance=provenance,
        warnings=tuple(flat.warnings),
        fingerprint=manifest_fingerprint,
    )
    check_depot(manifest)
    return manifest


def _unit(
    document: BlueprintDocument,
    settings: TemplateSettings,
    absolute_path: Path | None,
    chain: tuple[str, ...],
    files: tuple[Path, ...],
) -> BlueprintUnit:
    templated = resolve_templates(document, settings)
    blueprint = validate_blueprint(templated.data, document)
    graph = build_graph(blueprint, document)
    return BlueprintUnit(
        document=document,
        templated=templated,
        blueprint=blueprint,
        graph=graph,
        absolute_path=absolute_path,
        chain=chain,
        files=files + ((absolute_path,) if absolute_path else ()),
    )


#: Arcades inside Arcades, and sub-Blueprints expanded in all: a file that uses the next one
#: twice, 25 files deep, expands 2^25 times; each expansion is a whole compile of a file.
MAX_ARCADE_DEPTH = 16
MAX_ARCADE_EXPANSIONS = 200


def _expand_arcades(
    unit: BlueprintUnit,
    root_facts: CompileFacts,
    overrides: Mapping[Path, str],
    expanded: list[int],
) -> None:
    """Load every Arcade's sub-Blueprint of `unit`, recursively, into `unit.children`.

    `expanded` counts the sub-Blueprints loaded so far, for the whole compile.
    """
    for arcade_id in unit.arcades():
        spec = unit.spec(arcade_id)
        chain = unit.chain + (arcade_id,)
        expanded[0] += 1
        limit = None
        if len(chain) > MAX_ARCADE_DEPTH:
            limit = f"Arcades nest more than {MAX_ARCADE_DEPTH} levels deep (the Arcade depth limit)"
        elif expanded[0] > MAX_ARCADE_EXPANSIONS:
            limit = (
                f"the Blueprint expands more than {MAX_ARCADE_EXPANSIONS} sub-Blueprints "
                "(the Arcade expansion limit; a file that uses another twice doubles per level)"
            )
        if limit:
            raise inside(
                BlueprintError(
                    limit,
                    location=unit.document.location(("modules", unit.position(arcade_id))),
                    module_id=arcade_id,
                    hint="flatten some Arcades into their parent Blueprint",
                ),
                unit.chain,
            )
        display, resolved = arcade_file(unit, arcade_id)
        # The run is the root Blueprint's; file-relative facts follow the file that uses them.
        facts = replace(
            root_facts, blueprint_path=str(resolved), blueprint_dir=str(resolved.parent)
        )
        settings = TemplateSettings(
            facts=facts,
            context_overrides=dotted_overrides(spec.context_override),
            inherited_context=unit.templated.data.get("context", {}),
            arcade=arcade_id,
        )
        try:
            text = overrides.get(resolved) or read_dependency(
                (unit.absolute_path.parent if unit.absolute_path else Path.cwd()) / str(spec.ref),
                resolved,
                display,
            )
            child = _unit(load_document(text, display), settings, resolved, chain, unit.files)
        except BlueprintError as error:
            raise inside(error, chain) from None
        unit.children[arcade_id] = child
        _expand_arcades(child, root_facts, overrides, expanded)


def _udfs(root: BlueprintUnit) -> tuple[Udf, ...]:
    """The UDFs of the Blueprint and its sub-Blueprints (the outer one wins on an id)."""
    udfs: dict[str, Udf] = {}
    pending = [root]
    while pending:
        unit = pending.pop(0)
        for udf in unit.blueprint.udf_registry:
            udfs.setdefault(udf.id, udf)
        pending.extend(unit.children.values())
    return tuple(udfs.values())


def _facts(
    document: BlueprintDocument,
    absolute_path: Path | None,
    env: Mapping[str, str] | None,
    deployment: Mapping[str, str] | None,
) -> CompileFacts:
    settings = {**DEFAULT_DEPLOYMENT, **(deployment or {})}
    return CompileFacts(
        blueprint_id=str(document.data.get("id", "")),
        blueprint_name=str(document.data.get("name", "")),
        blueprint_path=str(absolute_path) if absolute_path else document.source_path,
        blueprint_dir=str(absolute_path.parent) if absolute_path else ".",
        deployment_env=settings["env"],
        deployment_target=settings["target"],
        version=aqueduct_dagster.__version__,
        # EnvReads is the compile cache noting what is read: a view, not a copy.
        env=env if isinstance(env, EnvReads) else dict(os.environ if env is None else env),
    )


# -------------------------------------------------------------------------- modules


def _compiled_modules(flat: FlatGraph) -> dict[str, CompiledModule]:
    registered = {
        str(m.spec.config.register_as_table).lower()
        for m in flat.modules.values()
        if m.spec.writes_sink and m.spec.config.register_as_table
    }
    output_columns: dict[str, list[str] | None] = {}
    compiled: dict[str, CompiledModule] = {}
    budget = _LineageBudget()
    for module_id in flat.order:
        placed = flat.modules[module_id]
        try:
            compiled[module_id] = _compiled_module(placed, registered, output_columns, budget)
        except BlueprintError as error:
            raise inside(error, placed.arcade) from None
    if budget.skipped:
        flat.warnings.append(
            f"column lineage was traced for the first Channels only: {len(budget.skipped)} "
            f"more (from '{budget.skipped[0]}' on) exceed the lineage work budget of "
            f"{MAX_LINEAGE_WORK:,} (SQL characters, plus {LINEAGE_QUERY_COST} per query and "
            f"{LINEAGE_COLUMN_COST} per column in play and 1 per pair of output columns)"
        )
    return compiled


#: Column lineage is best effort and costs ~1 ms per query, ~0.1 ms per column in play and
#: ~1 us per (output column, output column) pair, as each output column is traced on its
#: own: a Blueprint of thousands of SQL Channels, or a chain of `SELECT *` over 2,000 columns
#: (8 minutes), traces what fits in the budget (units of ~1 us) and says so.
MAX_LINEAGE_WORK = 300_000
LINEAGE_QUERY_COST = 1_000
LINEAGE_COLUMN_COST = 100


#: Parsing is ~3 us per character of dense SQL plus ~0.1 ms per query: 40 Channels of 45,000
#: characters each (one 1.8 MB file) took 6 s. All Channels' SQL together stay under this.
MAX_BLUEPRINT_SQL_WORK = 200_000
SQL_QUERY_COST = 400


class _LineageBudget:
    """The SQL work of one compile: parsing (a hard limit) and lineage (best effort)."""

    def __init__(self) -> None:
        self.spent = 0
        self.parsed = 0
        self.skipped: list[str] = []

    def parse(self, query: str, where: SourceLocation, module_id: str) -> None:
        self.parsed += len(query) + SQL_QUERY_COST
        if self.parsed > MAX_BLUEPRINT_SQL_WORK:
            raise BlueprintError(
                f"config.query: the Blueprint's SQL exceeds the SQL work budget of "
                f"{MAX_BLUEPRINT_SQL_WORK:,} (characters of all Channel queries, plus "
                f"{SQL_QUERY_COST} per query); this Channel's query passes it",
                location=where,
                module_id=module_id,
                hint="move long value lists into a table and join it; split very large "
                "Blueprints into separate ones",
            )

    def allows(self, module_id: str, query: str, width: int, upstream: int) -> bool:
        # Tracing one output column scans the query's outputs: `width` squared, ~1 us each.
        self.spent += (
            len(query) + LINEAGE_QUERY_COST + LINEAGE_COLUMN_COST * (width + upstream) + width**2
        )
        if self.spent > MAX_LINEAGE_WORK:
            self.skipped.append(module_id)
            return False
        return True


def _compiled_module(
    placed: PlacedModule,
    registered: set[str],
    output_columns: dict[str, list[str] | None],
    budget: _LineageBudget,
) -> CompiledModule:
    spec, inputs, document = placed.spec, placed.inputs, placed.document
    lineage: dict[str, tuple[ColumnSource, ...]] = {}
    columns = _passed_through_columns(spec, inputs, output_columns)
    query = _checked_query(spec, inputs, document, placed.path, registered, budget)
    if query is not None:
        upstream = sum(len(output_columns.get(i.source) or ()) for i in inputs)
        width = output_width(parse_single_select(analysable_sql(query)), upstream)
        if budget.allows(placed.id, query, width, upstream):
            lineage, columns = _sql_lineage(query, inputs, output_columns)
        else:
            columns = None
    elif columns is not None and inputs and not spec.emits_signals:
        # Column lineage carries on through modules that pass their input's columns on.
        op = getattr(spec.config, "op", None)
        several = spec.merges_inputs or op == "union"
        upstream = [(i.source, output_columns.get(i.source)) for i in (inputs if several else inputs[:1])]
        renamed = spec.config.columns if op == "rename" and isinstance(spec.config.columns, dict) else None
        pairs = passed_through_lineage(columns, upstream, renamed)
        lineage = {c: tuple(ColumnSource(module=m, column=n) for m, n in p) for c, p in pairs.items()}
    output_columns[placed.id] = columns
    location = document.location(placed.path)
    return CompiledModule(
        id=placed.id,
        type=spec.type,
        spec=spec,
        inputs=inputs,
        after=placed.after,
        location=Location(file=location.file, line=location.line, column=location.column),
        column_lineage=lineage,
        fingerprint=fingerprint_of(
            {
                "spec": spec.model_dump(mode="json", by_alias=True),
                "inputs": [i.model_dump(mode="json") for i in inputs],
            }
        ),
        arcade=placed.arcade,
    )


def _checked_query(
    spec: Any,
    inputs: tuple[ModuleInput, ...],
    document: BlueprintDocument,
    path: tuple[Any, ...],
    registered_tables: set[str],
    budget: _LineageBudget,
) -> str | None:
    """The Channel's SQL after checking it parses and reads only its inputs."""
    if not spec.runs_sql:
        return None
    query = spec.config.query
    query_path = path + ("config", "query")
    if query is None:
        if spec.config.op == "sql":
            raise BlueprintError(
                "op: sql needs a `query`",
                location=document.location(path + ("config",)),
                module_id=spec.id,
                hint="add config.query: SELECT ... FROM <input>",
            )
        return None
    budget.parse(query, document.location(query_path), spec.id)
    try:
        tree = parse_single_select(analysable_sql(query))
    except BlueprintError as error:
        raise BlueprintError(
            f"config.query: {error.message}",
            location=document.location(query_path),
            module_id=spec.id,
            hint=error.hint,
        ) from None
    aliases = [i.alias for i in inputs]
    allowed = {a.lower() for a in aliases} | registered_tables
    if len(inputs) == 1:
        allowed.add(SINGLE_INPUT_ALIAS)
    for table in table_references(tree):
        if table.lower() in allowed:
            continue
        if table == SINGLE_INPUT_ALIAS:
            message = (
                f"config.query reads '{SINGLE_INPUT_ALIAS}', which only names the input of a "
                f"single-input module; this one has {len(inputs)}"
            )
        else:
            message = (
                f"config.query reads table '{table}', which is not an input of this module"
                + did_you_mean(table, aliases)
            )
        raise BlueprintError(
            message,
            location=_location_of_word(document, query_path, query, table),
            module_id=spec.id,
            hint=f"inputs here: {one_of(aliases)}; wire an edge from the module you mean, or "
            "qualify a catalog table (catalog.db.table)",
        )
    return query


def _location_of_word(
    document: BlueprintDocument, path: tuple[Any, ...], text: str, word: str
) -> SourceLocation:
    raw = _get(document.data, path)
    match = re.search(rf"\b{re.escape(word)}\b", text)
    if raw == text and match:  # offsets match the file only if templating changed nothing
        return document.location_within(path, match.start())
    return document.location(path)


def _get(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


# -------------------------------------------------------------------------- lineage


def _sql_lineage(
    query: str, inputs: tuple[ModuleInput, ...], known: Mapping[str, list[str] | None]
) -> tuple[dict[str, tuple[ColumnSource, ...]], list[str] | None]:
    """Column lineage of a Channel's SQL in terms of upstream modules (best effort)."""
    sources_by_alias: dict[str, str] = {i.alias.lower(): i.source for i in inputs}
    upstream: dict[str, list[str]] = {}
    for item in inputs:
        columns = known.get(item.source)
        if columns is not None:
            upstream[item.alias] = columns
    if len(inputs) == 1:
        sources_by_alias[SINGLE_INPUT_ALIAS] = inputs[0].source
        if inputs[0].alias in upstream:
            upstream[SINGLE_INPUT_ALIAS] = upstream[inputs[0].alias]
    try:
        mapping, complete = lineage_with_completeness(query, upstream)
    except BlueprintError:
        return {}, None
    lineage = {
        column: tuple(
            ColumnSource(module=sources_by_alias.get(table.lower(), table), column=name)
            for table, name in pairs
        )
        for column, pairs in mapping.items()
    }
    return lineage, (list(mapping) if complete else None)


def _passed_through_columns(
    spec: Any, inputs: tuple[ModuleInput, ...], known: Mapping[str, list[str] | None]
) -> list[str] | None:
    """The module's output columns when they follow from its config and inputs alone."""
    first = known.get(inputs[0].source) if inputs else None
    if spec.reads_source:
        return _ingress_columns(spec.config)
    if spec.passes_columns_through:
        return first
    config = spec.config
    # Only a Channel has an `op`; any other module's columns are unknown here.
    op = getattr(config, "op", None)
    if op in _COLUMN_PRESERVING_OPS:
        return first
    if op == "select" and isinstance(config.columns, list):
        # selectExpr: an expression's output name is not its text, so it stays unknown.
        plain = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(c)) for c in config.columns)
        return list(config.columns) if plain else None
    if op == "rename" and isinstance(config.columns, dict) and first is not None:
        return [config.columns.get(c, c) for c in first]
    return None


def _ingress_columns(config: Any) -> list[str] | None:
    hint = config.schema_hint
    if isinstance(hint, dict):
        if isinstance(hint.get("columns"), list):
            return _column_names(hint["columns"])
        return [str(k) for k in hint]
    if isinstance(hint, list):
        return _column_names(hint)
    return list(config.known_columns) if config.known_columns else None


def _column_names(entries: list[Any]) -> list[str] | None:
    names = []
    for entry in entries:
        if isinstance(entry, dict) and "name" in entry:
            names.append(str(entry["name"]))
        elif isinstance(entry, str):
            names.append(entry)
        else:
            return None
    return names


# -------------------------------------------------------------------------- provenance


def _provenance(root: BlueprintUnit) -> dict[str, Provenance]:
    """Document paths -> dotted Manifest paths (`modules.<id>.config.query`, `context.x`).

    A sub-Blueprint's values appear under their namespaced ids, located in their own file.
    """
    result: dict[str, Provenance] = {}
    pending = [(root, "")]
    while pending:
        unit, prefix = pending.pop(0)
        kept = set(unit.graph.order)
        ids = [m.id for m in unit.blueprint.modules]
        for path, provenance in unit.templated.provenance.items():
            if path[0] == "modules":
                if len(path) < 3 or not isinstance(path[1], int) or ids[path[1]] not in kept:
                    continue
                dotted = ".".join(["modules", prefix + ids[path[1]], *map(str, path[2:])])
            elif unit is root:
                dotted = ".".join(map(str, path))
            else:
                continue  # the Manifest's other fields are the root Blueprint's
            result[dotted] = provenance
        pending.extend(
            (child, f"{prefix}{arcade_id}__") for arcade_id, child in unit.children.items()
        )
    for key, provenance in root.templated.context_provenance.items():
        result[f"context.{key}"] = provenance
    return result
