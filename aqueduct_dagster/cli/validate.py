"""`aqueduct validate`: check Blueprint files or folders without running anything."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.blueprint.names import shared_ids
from aqueduct_dagster.cli.boundary import EXIT_BAD_INPUT, EXIT_INTERNAL, describe
from aqueduct_dagster.cli.common import blueprint_files, context_overrides, echo_json
from aqueduct_dagster.errors import AqueductError


@click.command()
@click.argument("blueprints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None, help="Context profile to apply.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every file's result.")
def validate(blueprints: tuple[Path, ...], ctx: tuple[str, ...], profile: str | None, as_json: bool) -> None:
    """Check Blueprint files or folders (recursively): YAML, schema, templating, graph.

    Reports every file; exit 2 if any is invalid.
    """
    overrides = context_overrides(ctx)
    results: list[dict[str, Any]] = []
    internal = False
    compiled: dict[str, Manifest] = {}
    for given in blueprints:
        if not given.exists() and not given.is_symlink():  # a link loop is reported below
            results.append({"path": str(given), "status": "invalid", "error": {
                "error": "BlueprintError", "message": f"no such file or folder: {given}",
                "location": str(given), "hint": "check the path (relative to the current folder)"}})  # fmt: skip
            continue
        for path, skipped in blueprint_files(given):
            if skipped:
                results.append({"path": str(path), "status": "skipped", "reason": skipped})
                continue
            try:
                manifest = compile_blueprint(path, context_overrides=overrides, profile=profile)
            except AqueductError as error:
                results.append({"path": str(path), "status": "invalid", "error": error.to_dict(),
                                "text": str(error)})  # fmt: skip
            except Exception as error:  # noqa: BLE001 - report the bug for this file, go on
                internal = True
                results.append({"path": str(path), "status": "error", "text": describe(error)})
            else:
                compiled[str(path)] = manifest
                results.append({"path": str(path), "status": "ok", "blueprint_id": manifest.blueprint_id,
                                "modules": len(manifest.modules), "warnings": list(manifest.warnings)})  # fmt: skip
    _hold_back_shared_ids(results, compiled)
    invalid = [r for r in results if r["status"] in ("invalid", "error")]
    if as_json:
        echo_json({"ok": not invalid, "files": [{k: v for k, v in r.items() if k != "text"} for r in results]})
    else:
        for result in results:
            _print_validation(result)
        counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "invalid", "skipped")}
        if len(results) > 1 or not results:
            click.echo(f"{counts['ok']} ok, {counts['invalid'] + internal} invalid, {counts['skipped']} skipped")
    if internal:
        sys.exit(EXIT_INTERNAL)
    if invalid or not results:
        if not results:
            where = ", ".join(str(b) for b in blueprints)
            click.secho(f"error: no Blueprint files found in {where} (*.yml / *.yaml with a "
                        "top-level `aqueduct:` or `modules:` key)", fg="red", err=True)  # fmt: skip
        sys.exit(EXIT_BAD_INPUT)


def _hold_back_shared_ids(results: list[dict[str, Any]], compiled: dict[str, Manifest]) -> None:
    """Mark invalid the Blueprints of one folder that share an id: the code location loading
    that folder would hold back each of them (dagster/loading.py)."""
    folders: dict[Path, list[Manifest]] = {}
    for path, manifest in compiled.items():
        folders.setdefault(Path(path).resolve().parent, []).append(manifest)
    by_path = {result["path"]: result for result in results}
    for manifests in folders.values():
        for name, group in shared_ids(manifests).items():
            files = ", ".join(f"'{m.source_path}'" for m in group)
            for manifest in group:
                path = next(p for p, m in compiled.items() if m is manifest)
                message = (f"Blueprints {files} all use id '{manifest.blueprint_id}' (Dagster job "
                           f"'{name}'): a code location loading this folder holds back each of them")  # fmt: skip
                hint = "give every Blueprint in the folder a unique `id:` (or move one out)"
                by_path[path].update(status="invalid", text=f"{path}: {message}\n  hint: {hint}", error={
                    "error": "BlueprintError", "message": message, "location": path, "hint": hint})  # fmt: skip


def _print_validation(result: dict[str, Any]) -> None:
    status, path = result["status"], result["path"]
    if status == "ok":
        click.echo(f"ok    {path}  ({result['blueprint_id']}: {result['modules']} modules)")
        for warning in result["warnings"]:
            click.secho(f"      warning: {warning}", fg="yellow")
    elif status == "skipped":
        click.echo(f"skip  {path}  ({result['reason']})")
    else:
        text = result.get("text") or f"{result['error']['location']}: {result['error']['message']}"
        click.secho(f"FAIL  {path}", fg="red", err=True)
        click.secho(f"error: {text}", fg="red", err=True)
