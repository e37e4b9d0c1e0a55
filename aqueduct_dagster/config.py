"""Engine-wide configuration: `aqueduct.yml` (operator concerns, never in a Blueprint).

LLM connection settings live here and only here: a Blueprint that could choose its own LLM
endpoint could send its failure context anywhere. The file follows the shape of
aqueduct-core's `aqueduct.yml`; keys this project does not use are accepted and ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from aqueduct_dagster.blueprint.functions import SECRET_TOKEN
from aqueduct_dagster.blueprint.loader import load_document, read_blueprint_text
from aqueduct_dagster.blueprint.suggest import did_you_mean, one_of
from aqueduct_dagster.env_files import load_dotenv_beside, resolve_engine_block
from aqueduct_dagster.errors import BlueprintError, ConfigError, SourceLocation


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class AgentBudget(Loose):
    max_seconds: float = 120.0
    max_tokens_total: int | None = 50_000
    max_reprompts: int = 3
    same_error_consecutive: int = 2
    same_signature_overall: int = 3
    progress_stalled_window: int = 3


class GuardrailSettings(Loose):
    """Operator limits on what a patch may change (`agent.guardrails` in aqueduct.yml).

    They hold for every Blueprint: a Blueprint's own `agent.guardrails` can only add limits.
    """

    #: Engine config key -> the largest value a patch may set (numbers; sizes like "16g").
    engine_conf_ceilings: dict[str, Any] = Field(default_factory=dict)
    #: When set, every location a patch newly reads must also lie under one of these.
    allowed_paths: list[str] = Field(default_factory=list)
    #: Path components or prefixes no patch may read or write (`denied_paths` or `deny_patterns`).
    denied_paths: list[str] = Field(default_factory=list, validation_alias=AliasChoices("denied_paths", "deny_patterns"))


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
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)

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


class WebhookEndpoint(BaseModel):
    """One endpoint of aqueduct.yml `webhooks:` (the peer's endpoint model).

    `payload` is a template: `${run_id}`, `${blueprint_id}`, ... are filled in per event
    (dagster/hooks.py lists them); in `url` and `headers`, other `${NAME}`s and
    `@aq.secret('NAME')` read the environment when the request is sent.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    payload: dict[str, Any] | None = None
    timeout: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    backoff_seconds: float = Field(default=0.5, gt=0)
    #: HMAC-SHA256 key: the body's digest goes in X-Aqueduct-Signature.
    secret: str | None = None
    #: How the peer's `aqueduct doctor` probes the endpoint; accepted, unused here.
    health_probe: Literal["connect", "options", "full"] = "options"


def _endpoint_list(value: Any) -> Any:
    """A URL, one endpoint or a list of either -> a list of endpoints."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [{"url": item} if isinstance(item, str) else item for item in items]


Endpoints = Annotated[list[WebhookEndpoint], BeforeValidator(_endpoint_list)]


class WebhookSettings(Loose):
    """aqueduct.yml `webhooks:`: the operator's alerts, sent whatever the Blueprints declare.

    Each event takes a URL, an endpoint or a list of them. The peer's names are accepted:
    on_failure, on_success, on_patch_pending and on_defer.
    """

    run_failed: Endpoints = Field(default_factory=list, validation_alias=AliasChoices("run_failed", "on_failure"))
    run_succeeded: Endpoints = Field(default_factory=list, validation_alias=AliasChoices("run_succeeded", "on_success"))
    patch_staged: Endpoints = Field(
        default_factory=list, validation_alias=AliasChoices("patch_staged", "on_patch_pending")
    )
    patch_applied: Endpoints = Field(default_factory=list)
    patch_rejected: Endpoints = Field(default_factory=list)
    heal_deferred: Endpoints = Field(default_factory=list, validation_alias=AliasChoices("heal_deferred", "on_defer"))

    def endpoints(self, event: str) -> list[WebhookEndpoint]:
        """The endpoints of `event`; a deferral without its own goes where staged patches go."""
        chosen = getattr(self, event)
        if event == "heal_deferred" and not chosen:
            return self.patch_staged
        return chosen


class DangerSettings(Loose):
    """aqueduct.yml `danger:`: what an operator must switch on, never a Blueprint."""

    #: Run `command:` entries of Blueprint hooks (argv split like a shell, no shell).
    allow_command_hooks: bool = False


class AqueductConfig(Loose):
    aqueduct_config: str | None = None
    agent: AgentConnection = Field(default_factory=AgentConnection)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    stores: StoresSettings = Field(default_factory=StoresSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    danger: DangerSettings = Field(default_factory=DangerSettings)
    state_dir: str = ".aqueduct"
    patches_dir: str = "patches"
    #: Folders a staged patch may edit Blueprints under (default: the folder the code location
    #: loads, AQUEDUCT_BLUEPRINTS_DIR else ./blueprints). Relative entries are taken from the
    #: working directory, like state_dir.
    blueprint_roots: list[str] | None = None
    source_path: str | None = None


_ENV_REFERENCE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def resolve_setting(value: str | None, env: dict[str, str] | None = None) -> str | None:
    """`${NAME}` and `@aq.secret('NAME')` in a setting -> the environment's value."""
    if value is None:
        return None
    env = dict(os.environ) if env is None else env

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set", hint=f"export {name}=... before starting")
        return env[name]

    return SECRET_TOKEN.sub(lookup, _ENV_REFERENCE.sub(lookup, value))


def load_config(path: str | Path | None = None) -> AqueductConfig:
    """Read the aqueduct.yml at `path` (which must exist), else ./aqueduct.yml when there is one,
    else defaults. Which file is chosen (AQUEDUCT_CONFIG) is `Settings.resolve`'s business."""
    chosen = Path(path or "aqueduct.yml")
    if not chosen.is_file():
        if path:
            raise ConfigError(f"config file '{chosen}' does not exist", hint="fix AQUEDUCT_CONFIG or the --config path")
        return AqueductConfig()
    load_dotenv_beside(chosen)  # before anything reads the environment, as in the peer
    data = _read_config(chosen)
    resolve_engine_block(data, str(chosen))
    _check_known_keys(data, str(chosen))
    try:
        config = AqueductConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        location = data.location(tuple(first["loc"])) if isinstance(data, _Located) else SourceLocation(str(chosen))
        raise ConfigError(f"{where}: {first['msg']}", location=location) from None
    config.source_path = str(chosen)
    return config


# --------------------------------------------------------------------------- reading, key check

#: Keys of the peer's aqueduct.yml (aqueduct-core 2.x engine config) this project does not use:
#: accepted so one file serves both, while a typo of any key is still an error.
PEER_KEYS: dict[tuple[str, ...], frozenset[str]] = {
    (): frozenset({
        "aqueduct_config", "deployment", "engine", "stores", "checkpoint_root", "handoff",
        "execution", "timezone", "probes", "metrics", "secrets", "webhooks", "git", "pr",
        "agent", "warnings", "danger",
    }),
    ("agent",): frozenset({
        "provider", "model", "api_key", "base_url", "timeout", "retry", "max_reprompts", "budget",
        "prompt_context", "patch_validation", "max_heal_attempts_per_hour",
        "sandbox_master_url", "provider_options", "cascade",
        "memory",  # the gallery's pre-2.3 files: a heal-memory block this project keeps in its store
    }),
    ("agent", "budget"): frozenset({
        "max_reprompts", "max_seconds", "max_tokens_total", "same_error_consecutive",
        "same_signature_overall", "progress_stalled_window",
    }),
    ("stores",): frozenset({"observability", "depots", "blob", "benchmark"}),
    ("danger",): frozenset({
        "allow_full_preflight", "allow_full_probe_actions", "allow_multi_patch", "allow_skip_sandbox",
    }),
}  # fmt: skip


class _Located(dict):
    """The config's data, plus where each value is in the file."""

    document: Any = None

    def location(self, path: tuple[Any, ...]) -> SourceLocation:
        return self.document.location(path)


def _read_config(chosen: Path) -> _Located:
    """aqueduct.yml as data; the Blueprint loader's limits and located errors apply."""
    try:
        document = load_document(read_blueprint_text(chosen), str(chosen), what="config", empty_ok=True)
    except BlueprintError as error:
        raise ConfigError(error.message, location=error.location, hint=error.hint) from None
    data = _Located(document.data)
    data.document = document
    return data


def _declared_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
        choices = getattr(info.validation_alias, "choices", None)
        if choices:
            keys.update(c for c in choices if isinstance(c, str))
        elif isinstance(info.validation_alias, str):
            keys.add(info.validation_alias)
    return keys


def _check_known_keys(data: _Located, source: str) -> None:
    """Unknown keys are typos: an error naming the key, its place and the closest known key.

    Checked: the top level, `agent`, `agent.budget`, `stores`, `webhooks` and `danger` (the models' own fields plus
    the peer's documented keys). Engine sections stay open: `engine.<name>` belongs to engines
    this project may not know.
    """
    models: dict[tuple[str, ...], type[BaseModel]] = {
        (): AqueductConfig, ("agent",): AgentConnection, ("agent", "budget"): AgentBudget,
        ("stores",): StoresSettings, ("webhooks",): WebhookSettings, ("danger",): DangerSettings,
    }  # fmt: skip
    for path, model in models.items():
        section: Any = data
        for part in path:
            section = section.get(part) if isinstance(section, dict) else None
        if not isinstance(section, dict):
            continue
        known = (_declared_keys(model) | PEER_KEYS.get(path, frozenset())) - {"source_path"}
        for key in section:
            if key in known:
                continue
            dotted = ".".join((*path, str(key)))
            raise ConfigError(
                f"unknown key '{dotted}'" + did_you_mean(str(key), known),
                location=data.document.key_location((*path, key)),
                hint=f"keys here: {one_of(known, limit=20)}",
            )
