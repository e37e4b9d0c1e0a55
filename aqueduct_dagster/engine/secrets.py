"""Revealing `@aq.secret('NAME')` tokens at the point of use.

A Manifest never holds a secret value; the engine swaps the token for the environment value
just before handing a reader or writer its options, and never puts the result in metadata.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aqueduct_dagster.blueprint.runtime import reveal_secrets as reveal_tokens
from aqueduct_dagster.engine.errors import ConditionError

_SECRET = re.compile(r"""@aq\.secret\(\s*['"]([^'"]+)['"]\s*\)""")


def reveal_secrets(value: Any) -> Any:
    """`value` (text, or lists/dicts of it) with every secret token replaced by its value.

    An unset secret raises the condition AQ_SECRET_NOT_SET (parameter `name`).
    """
    for name in secret_names(value):
        if name not in os.environ:
            _missing(name)
    # The compiler owns the @aq.* function table: its reveal substitutes the tokens.
    return reveal_tokens(value)


def secret_names(value: Any) -> list[str]:
    """The secret names `value` (text, or lists/dicts of it) refers to, in order."""
    if isinstance(value, str):
        return _SECRET.findall(value)
    if isinstance(value, dict):
        return [name for item in value.values() for name in secret_names(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in secret_names(item)]
    return []


def _missing(name: str) -> None:
    raise ConditionError(
        "AQ_SECRET_NOT_SET",
        f"the secret '{name}' is not set in the environment",
        {"name": name},
        hint=f"export {name}=... in the environment of the process that runs the pipeline",
    )
