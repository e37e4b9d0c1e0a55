"""Engine-wide configuration: `aqueduct.yml` (operator concerns, never in a Blueprint).

LLM connection settings live here and only here: a Blueprint that could choose its own LLM
endpoint could send its failure context anywhere. The file follows the shape of
aqueduct-core's `aqueduct.yml`; keys this project does not use are accepted and ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aqueduct_dagster.errors import ConfigError, SourceLocation


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class AgentBudget(Loose):
    max_seconds: float = 120.0
    max_tokens_total: int | None = 50_000
    max_reprompts: int = 3
    same_error_consecutive: int = 2
    same_signature_overall: int = 3
    progress_stalled_window: int = 3


class AgentConnection(Loose):
    provider: Literal["anthropic", "openai", "openai_compat", "ollama", "vllm"] | None = None
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 300.0
    max_tokens: int = 2048
    mode: Literal["tools", "json", "md_json"] = "tools"
    budget: AgentBudget = Field(default_factory=AgentBudget)
    max_heal_attempts_per_hour: int | None = 20
    prompt_context: str | None = None

    @property
    def llm_enabled(self) -> bool:
        return bool(self.provider and self.model)


class SparkSettings(Loose):
    #: local[N], spark://host:port, sc://host:port (a Spark Connect server), or `managed`:
    #: the project's own Spark Connect server (`aqueduct spark up`), else classic local.
    master_url: str | None = None
    conf: dict[str, Any] = Field(default_factory=dict)


class EngineSettings(Loose):
    spark: SparkSettings = Field(default_factory=SparkSettings)


class RelationalStore(Loose):
    backend: Literal["duckdb", "postgres"] = "duckdb"
    path: str | None = None
    url: str | None = None


class StoresSettings(Loose):
    observability: RelationalStore = Field(default_factory=RelationalStore)


class AqueductConfig(Loose):
    aqueduct_config: str | None = None
    agent: AgentConnection = Field(default_factory=AgentConnection)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    stores: StoresSettings = Field(default_factory=StoresSettings)
    state_dir: str = ".aqueduct"
    patches_dir: str = "patches"
    source_path: str | None = None

    @property
    def state_path(self) -> Path:
        return Path(os.environ.get("AQUEDUCT_STATE_DIR") or self.state_dir)

    @property
    def patches_path(self) -> Path:
        return Path(os.environ.get("AQUEDUCT_PATCHES_DIR") or self.patches_dir)


_ENV_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def resolve_setting(value: str | None, env: dict[str, str] | None = None) -> str | None:
    """`${NAME}` and `@aq.secret('NAME')` in a setting -> the environment's value."""
    if value is None:
        return None
    env = dict(os.environ) if env is None else env
    from aqueduct_dagster.healing.redaction import SECRET_TOKEN

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set", hint=f"export {name}=... before starting")
        return env[name]

    return SECRET_TOKEN.sub(lookup, _ENV_REFERENCE.sub(lookup, value))


def load_config(path: str | Path | None = None) -> AqueductConfig:
    """Load `aqueduct.yml` (AQUEDUCT_CONFIG, else ./aqueduct.yml); defaults when absent."""
    chosen = Path(path or os.environ.get("AQUEDUCT_CONFIG") or "aqueduct.yml")
    if not chosen.is_file():
        if path or os.environ.get("AQUEDUCT_CONFIG"):
            raise ConfigError(f"config file '{chosen}' does not exist", hint="fix AQUEDUCT_CONFIG or the --config path")
        return AqueductConfig()
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        location = SourceLocation(str(chosen), mark.line + 1, mark.column + 1) if mark else SourceLocation(str(chosen))
        raise ConfigError(f"invalid YAML: {getattr(error, 'problem', error)}", location=location) from None
    if not isinstance(data, dict):
        raise ConfigError("the config must be a YAML mapping", location=SourceLocation(str(chosen)))
    try:
        config = AqueductConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", location=SourceLocation(str(chosen))) from None
    config.source_path = str(chosen)
    return config
