"""The environment of `aqueduct.yml`: a `.env` file beside it, and `${VAR}` in its engine block.

As in the peer (aqueduct-core): a `.env` beside aqueduct.yml is loaded into the process
environment before the file is read, and never overrides a variable that is already set
(`AQ_NO_ENV_FILE=1` turns the loading off, e.g. in CI). In the `engine` block, `${VAR}`,
`${VAR:-default}` and `${VAR:default}` are resolved when the file is loaded: Spark settings
are handed to Spark as they are. Other sections keep their references until they are used
(webhook payload templates are filled per event; secrets are read where they are needed).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aqueduct_dagster.errors import ConfigError, SourceLocation

#: Turns off loading `.env` files (the peer's switch).
NO_ENV_FILE = "AQ_NO_ENV_FILE"

#: `${NAME}`, `${NAME:-default}` or `${NAME:default}`.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-?([^}]*))?\}")


def read_dotenv(path: str | Path) -> dict[str, str]:
    """The variables a `.env` file sets (names without a value are left out)."""
    from dotenv import dotenv_values

    return {name: value for name, value in dotenv_values(path).items() if value is not None}


def load_dotenv_beside(config_file: str | Path) -> list[str]:
    """Set the variables of the `.env` beside `config_file` that the environment lacks;
    returns their names (none when there is no such file or AQ_NO_ENV_FILE=1)."""
    path = Path(config_file).parent / ".env"
    if os.environ.get(NO_ENV_FILE) == "1" or not path.is_file():
        return []
    added = {name: value for name, value in read_dotenv(path).items() if name not in os.environ}
    os.environ.update(added)
    return sorted(added)


def resolve_engine_block(data: dict[str, Any], source: str) -> None:
    """Resolve the references in the `engine` block of aqueduct.yml's data, in place."""
    if isinstance(data.get("engine"), Mapping):
        data["engine"] = resolve_env_references(data["engine"], os.environ, "engine", source)


def resolve_env_references(value: Any, env: Mapping[str, str], where: str, source: str) -> Any:
    """`value` (a string, or mappings and lists of them) with each `${NAME}` reference
    replaced by the environment's value or its default. An unset one without a default is a
    ConfigError naming `where` (a dotted key) in the file `source`."""
    if isinstance(value, str):
        return _REFERENCE.sub(lambda match: _lookup(match, env, where, source), value)
    if isinstance(value, Mapping):
        return {key: resolve_env_references(item, env, f"{where}.{key}", source) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env_references(item, env, f"{where}[{i}]", source) for i, item in enumerate(value)]
    return value


def _lookup(match: re.Match[str], env: Mapping[str, str], where: str, source: str) -> str:
    name, default = match.group(1), match.group(2)
    if name in env:
        return env[name]
    if default is not None:
        return default
    raise ConfigError(
        f"{where}: environment variable {name} is not set",
        location=SourceLocation(source),
        hint=f"export {name}=..., put it in the .env beside aqueduct.yml, or write ${{{name}:-default}}",
    )
