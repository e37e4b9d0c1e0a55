"""Per-run binding of a Manifest's runtime tokens, and revealing secrets at the point of use."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aqueduct_dagster.blueprint.functions import (
    FUNCTIONS,
    CallSyntaxError,
    FunctionCall,
    RunInfo,
    evaluate_runtime,
    substitute,
)
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.blueprint.models import GENERATED_IDS
from aqueduct_dagster.errors import ConfigError

#: Top-level Manifest fields that describe the Blueprint rather than configure a run.
_NOT_BOUND = frozenset(
    {"provenance", "macros", "source_path", "warnings", "fingerprint", "description"}
)


def bind_runtime(manifest: Manifest, run: RunInfo) -> Manifest:
    """A copy of `manifest` with `@aq.run.*` / `@aq.date.*` tokens replaced for this run.

    Fingerprints are kept: they version the pipeline's code, and a new day is not new code.
    `@aq.depot.get(...)` and `@aq.secret(...)` stay as tokens (bound elsewhere).
    """

    def bind_call(call: FunctionCall) -> str | None:
        spec = FUNCTIONS.get(call.name)
        return evaluate_runtime(call, run) if spec and spec.kind == "runtime" else None

    def bind(value: Any) -> Any:
        if isinstance(value, str):
            if "@aq." not in value:
                return value
            try:
                return substitute(value, bind_call)
            except CallSyntaxError:  # prose that merely looks like a call
                return value
        if isinstance(value, dict):
            return {key: bind(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(bind(item) for item in value)
        return value

    data = manifest.model_dump(mode="python", by_alias=True)
    bound = {key: value if key in _NOT_BOUND else bind(value) for key, value in data.items()}
    return Manifest.model_validate(bound, context={GENERATED_IDS: True})


def reveal_secrets(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """`value` with every `@aq.secret('NAME')` replaced by NAME's value, recursively.

    Call this only where the value is handed to the system that needs it (a JDBC reader, a
    webhook); never store or log the result.
    """
    environment = os.environ if env is None else env

    def reveal_call(call: FunctionCall) -> str | None:
        if call.name != "secret" or not call.args:
            return None
        name = call.args[0]
        if name not in environment:
            raise ConfigError(
                f"secret '{name}' is not set in the environment",
                hint=f"export {name} where the pipeline runs",
            )
        return environment[name]

    def reveal(item: Any) -> Any:
        if isinstance(item, str):
            return substitute(item, reveal_call) if "@aq.secret" in item else item
        if isinstance(item, dict):
            return {k: reveal(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return type(item)(reveal(v) for v in item)
        return item

    return reveal(value)
