"""`aqueduct patch`: review staged patches (list, show, preview, apply, reject) and roll back revisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.cli.common import echo_json
from aqueduct_dagster.cli.preview import preview_command
from aqueduct_dagster.healing.heal import PatchQueue
from aqueduct_dagster.settings import current_settings


def _queue() -> PatchQueue:
    return PatchQueue.from_settings(current_settings())


@click.group()
def patch() -> None:
    """Review patches: list, show, apply, reject, rollback."""


@patch.command("list")
@click.option("--status", type=click.Choice(["pending", "applied", "rejected"]), default="pending")
@click.option("--json", "as_json", is_flag=True, help="The patches as JSON.")
def patch_list(status: str, as_json: bool) -> None:
    """Patches with a status (pending by default)."""
    patches = _queue().list(status)
    if as_json:
        echo_json({"status": status, "patches": [
            {"patch_id": item.patch_id, "blueprint_id": item.record.get("blueprint_id"),
             "failed_module": item.record.get("failed_module"), "confidence": item.patch.confidence,
             "rationale": item.patch.rationale} for item in patches]})  # fmt: skip
        return
    if not patches:
        click.echo(f"no {status} patches")
    for item in patches:
        record: dict[str, Any] = item.record
        confidence = item.patch.confidence if item.patch.confidence is not None else "-"
        click.echo(f"{item.patch_id}  {record.get('blueprint_id')}  module={record.get('failed_module')}  "
                   f"confidence={confidence}  {item.patch.rationale}")  # fmt: skip


@patch.command("show")
@click.argument("patch_id")
@click.option("--json", "as_json", is_flag=True, help="The full staged record as JSON.")
def patch_show(patch_id: str, as_json: bool) -> None:
    """A pending patch: root cause, operations and the diff it makes."""
    item = _queue().get(patch_id)
    if as_json:
        click.echo(json.dumps(item.record, indent=2))
        return
    record = item.record
    click.echo(f"patch      {item.patch_id}")
    click.echo(f"blueprint  {record['blueprint_path']}  (module {record['failed_module']})")
    click.echo(f"error      {record['error'].get('condition') or record['error'].get('exception_class')}")
    click.echo(f"root cause {item.patch.root_cause}")
    click.echo(f"confidence {item.patch.confidence}")
    if record.get("escalation"):
        click.secho(f"escalated  {record['escalation']}", fg="yellow")
    click.echo("")
    for line in record["diff"].splitlines():
        color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        click.secho(line, fg=color)


@patch.command("apply")
@click.argument("patch_id")
def patch_apply(patch_id: str) -> None:
    """Apply a pending patch as a new Blueprint revision."""
    revision = _queue().apply(patch_id)
    click.echo(f"applied: {revision.summary}")


@patch.command("reject")
@click.argument("patch_id")
@click.option("--reason", default="")
def patch_reject(patch_id: str, reason: str) -> None:
    """Reject a pending patch."""
    target = _queue().reject(patch_id, reason)
    click.echo(f"rejected: {target}")


@patch.command("rollback")
@click.argument("blueprint", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "number", type=int, required=True, help="Undo this revision (and everything after it).")
def patch_rollback(blueprint: Path, number: int) -> None:
    """Restore a Blueprint as it was before revision N, as a new revision."""
    revision = _queue().revisions.rollback(blueprint, number)
    click.echo(f"rolled back: {revision.summary}")


patch.add_command(preview_command)
