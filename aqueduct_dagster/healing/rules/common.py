"""What every rule shares: its answers (a patch, or a `Refusal`) and the edits it writes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import PatchSpec, new_patch_id
from aqueduct_dagster.healing.policy import SQL_KEYS


@dataclass(frozen=True)
class Refusal:
    """A rule that recognised the failure but will not patch it: why, with the evidence."""

    reason: str


#: A rule: a patch for the failure, a refusal with the evidence, or None (not its failure).
Rule = Callable[[FailurePackage], "PatchSpec | Refusal | None"]


def new_patch(package: FailurePackage, slug: str, operations: list[dict], *, rationale: str,
              root_cause: str, category: str, confidence: float) -> PatchSpec:  # fmt: skip
    """A rule's patch, its id named after the Blueprint and what it does (`slug`)."""
    return PatchSpec(
        patch_id=new_patch_id(f"{package.blueprint_id}-{slug}"),
        run_id=package.run_id,
        rationale=rationale,
        root_cause=root_cause,
        category=category,
        confidence=confidence,
        operations=operations,
    )


def sql_fields(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, text) for every SQL-bearing string in a raw config block."""
    for key, value in config.items():
        if key in SQL_KEYS and isinstance(value, str):
            yield key, value


def rewrite_sql_sites(package: FailurePackage, edit: Callable[[str], str | None]) -> list[dict]:
    """Operations that apply `edit` where the SQL is written: module config and used macros."""
    operations: list[dict] = []
    config = package.module_raw.get("config") or {}
    for key, text in sql_fields(config):
        changed = edit(text)
        if changed is not None and changed != text:
            operations.append(
                {"op": "set_module_config_key", "module_id": package.failed_module, "key": key, "value": changed}
            )
    for key, value in config.items():
        if key in SQL_KEYS and isinstance(value, list) and all(isinstance(v, str) for v in value):
            changed_list = [edit(v) or v for v in value]
            if changed_list != value:
                operations.append(
                    {"op": "set_module_config_key", "module_id": package.failed_module, "key": key, "value": changed_list}
                )
    for name, body in package.macros.items():
        changed = edit(body)
        if changed is not None and changed != body:
            operations.append({"op": "replace_macro", "name": name, "value": changed})
    return operations


def error_param(package: FailurePackage, *names: str) -> str | None:
    """The first of `names` that the error's message parameters hold."""
    for name in names:
        if package.error.message_parameters.get(name):
            return package.error.message_parameters[name]
    return None
