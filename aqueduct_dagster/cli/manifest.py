"""`aqueduct compile` and `aqueduct lineage`: what a Blueprint compiles to, and where each column comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.cli.common import context_overrides, echo_json
from aqueduct_dagster.errors import AqueductError


@click.command("compile")
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None)
@click.option("--show", type=click.Choice(["manifest", "provenance", "lineage"]), default="manifest")
def compile_command(blueprint: Path, ctx: tuple[str, ...], profile: str | None, show: str) -> None:
    """Print the compiled Manifest, where each value came from, or column lineage."""
    manifest = compile_blueprint(blueprint, context_overrides=context_overrides(ctx), profile=profile)
    if show == "provenance":
        for path, source in sorted(manifest.provenance.items()):
            detail = f" ({source.detail})" if source.detail else ""
            where = f"  @ {source.location}" if source.location else ""
            click.echo(f"{path}: {source.source}{detail}{where}")
    elif show == "lineage":
        for module in manifest.modules.values():
            for column, sources in module.column_lineage.items():
                click.echo(f"{module.id}.{column} <- " + ", ".join(f"{s.module}.{s.column}" for s in sources))
    else:
        click.echo(manifest.model_dump_json(indent=2, by_alias=True, exclude_defaults=True))


@click.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--column", default=None, help="Only this output column (module.column).")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "mermaid"]), default="text",
              show_default=True, help="mermaid: a flowchart of columns (GitHub and most wikis draw it).")
@click.option("--json", "as_json", is_flag=True, help="The lineage as JSON (same as --format json).")
def lineage(blueprint: Path, column: str | None, output_format: str, as_json: bool) -> None:
    """Column-level lineage of a Blueprint, traced back to its Ingress columns."""
    manifest = compile_blueprint(blueprint)

    origins: dict[tuple[str, str], frozenset[str]] = {}

    def sources_of(key: tuple[str, str]) -> list[tuple[str, str]]:
        module = manifest.modules.get(key[0])
        return [(s.module, s.column) for s in (module.column_lineage.get(key[1], ()) if module else ())]

    def roots(module_id: str, name: str) -> frozenset[str]:
        """The Ingress-side columns a column comes from: memoised and without recursion, as
        `a+b AS a, a*b AS b` over a chain of N Channels has 2^N paths and N frames."""
        stack, on_stack = [(module_id, name)], {(module_id, name)}
        while stack:
            key = stack[-1]
            waiting = [s for s in sources_of(key) if s not in origins and s not in on_stack]
            if waiting:
                stack.append(waiting[0])
                on_stack.add(waiting[0])
                continue
            stack.pop()
            on_stack.discard(key)
            done = [origins[s] for s in sources_of(key) if s in origins]  # a cycle is cut
            origins[key] = frozenset().union(*done) if done else frozenset({f"{key[0]}.{key[1]}"})
        return origins[(module_id, name)]

    known = [f"{m.id}.{name}" for m in manifest.modules.values() for name in m.column_lineage]
    if column and column not in known:
        raise AqueductError(
            f"no column lineage for '{column}' in {blueprint}" + did_you_mean(column, known),
            hint="name an output column as module.column; `aqueduct lineage FILE` lists them"
            if known else _LINEAGE_SCOPE,
        )
    entries = []
    for module in manifest.modules.values():
        for name, sources in module.column_lineage.items():
            if column and column != f"{module.id}.{name}":
                continue
            entries.append({"column": f"{module.id}.{name}",
                            "direct": [f"{s.module}.{s.column}" for s in sources],
                            "origin": sorted(set(roots(module.id, name)))})  # fmt: skip
    if as_json or output_format == "json":
        echo_json({"blueprint": manifest.blueprint_id, "columns": entries})
        return
    if output_format == "mermaid":
        click.echo(_lineage_mermaid(manifest, column, sources_of))
        return
    for entry in entries:
        direct, origin = ", ".join(entry["direct"]), ", ".join(entry["origin"])
        click.echo(f"{entry['column']} <- {direct}" + (f"   (from {origin})" if origin != direct else ""))
    if not entries:
        click.echo(f"no column lineage known ({_LINEAGE_SCOPE})")


_LINEAGE_SCOPE = "SQL Channels with known upstream columns have column lineage, and the modules that pass them on"


def _lineage_mermaid(manifest: Any, column: str | None, sources_of) -> str:
    """A Mermaid flowchart: one box per module, a node per column, an arrow per dependency.

    With `column`, only what it is computed from; node ids are generated, as column names
    may hold characters Mermaid reads as syntax.
    """
    if column:
        pending, edges, visited = [tuple(column.split(".", 1))], [], set()
        while pending:
            target = pending.pop()
            if target in visited:
                continue
            visited.add(target)
            for source in sources_of(target):
                edges.append((source, target))
                pending.append(source)
    else:
        edges = [(source, (m.id, name)) for m in manifest.modules.values()
                 for name in m.column_lineage for source in sources_of((m.id, name))]  # fmt: skip
    order = {module_id: index for index, module_id in enumerate(manifest.modules)}
    seen = {key: index for index, key in enumerate(dict.fromkeys(key for edge in edges for key in edge))}
    # Numbered upstream first (the Manifest's modules are in topological order).
    columns = sorted(seen, key=lambda key: (order.get(key[0], len(order)), seen[key]))
    position = {key: index for index, key in enumerate(columns)}
    node = {key: f"c{index}" for key, index in position.items()}

    def label(text: str) -> str:
        return '"' + text.replace('"', "#quot;") + '"'

    lines = ["flowchart LR"]
    for index, module in enumerate(manifest.modules.values()):
        own = [key for key in columns if key[0] == module.id]
        if own:
            lines.append(f"  subgraph m{index}[{label(f'{module.id} ({module.type})')}]")
            lines += [f"    {node[key]}[{label(key[1])}]" for key in own]
            lines.append("  end")
    arrows = sorted(dict.fromkeys(edges), key=lambda edge: (position[edge[1]], position[edge[0]]))
    lines += [f"  {node[source]} --> {node[target]}" for source, target in arrows]
    return "\n".join(lines)
