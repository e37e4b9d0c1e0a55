"""The project's settings, resolved once at an entry point and passed down.

`Settings.resolve` is the one place that reads the AQUEDUCT_* environment variables and
aqueduct.yml (through `config.load_config`, the file's schema and reader). Entry points (the
CLI commands, `build_definitions` and the Component, the heal job's op, the pytest plugin)
call `current_settings()`; everything below them takes the Settings, or the values it needs,
as arguments. The engine reads neither the environment nor aqueduct.yml.

One precedence for every value that several levels can set:

    argument > Blueprint > environment (AQUEDUCT_*) > aqueduct.yml > default

The Blueprint level exists only for the Spark master and conf (`engine.spark`); the others
have no Blueprint level (state_dir: argument > AQUEDUCT_STATE_DIR > aqueduct.yml > .aqueduct).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.config import AqueductConfig, load_config
from aqueduct_dagster.engine.session import AUTO, create_base_session
from aqueduct_dagster.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Every variable `Settings.resolve` reads: name -> what it sets.
ENVIRONMENT: dict[str, str] = {
    "AQUEDUCT_CONFIG": "the aqueduct.yml to read (default: ./aqueduct.yml when it exists)",
    "AQUEDUCT_STATE_DIR": "the state folder: warehouse, store, checkpoints, revisions (beats aqueduct.yml state_dir)",
    "AQUEDUCT_BLUEPRINTS_DIR": "the folder of Blueprints a code location loads (default: blueprints)",
    "AQUEDUCT_PATCHES_DIR": "the staged patch queue (beats aqueduct.yml patches_dir)",
    "AQUEDUCT_SPARK_MASTER": "the Spark master when neither an argument nor the Blueprint sets one "
    "(beats aqueduct.yml engine.spark.master_url)",
    "AQUEDUCT_JARS_DIR": "the folder of JVM jars (default: the checkout's .jars/, else the user cache)",
    "AQUEDUCT_COMPILE_CACHE": "the compiled-Manifest cache folder, or off (default: <state>/compile-cache)",
    "AQUEDUCT_DAGSTER_URL": "the webserver a heal asks to reload the code location (unset: no reload)",
    "AQUEDUCT_CODE_LOCATION": "the code location name that reload asks for",
    "AQUEDUCT_SENSOR_INTERVAL": "seconds between runs of the heal-on-failure sensor (default 15)",
    "AQUEDUCT_DEBUG": "the CLI prints tracebacks",
    "AQUEDUCT_GIT_URL": "the repository web address code references link to (default: the checkout's origin)",
    "AQUEDUCT_GIT_BRANCH": "the git ref code references link to (default: the checkout's HEAD commit)",
    "DAGSTER_HOME": "Dagster's instance folder (Dagster reads it too; the CLI checks it)",
}

DEFAULT_BLUEPRINTS_DIR = "blueprints"
DEFAULT_CODE_LOCATION = "aqueduct_dagster.definitions"
DEFAULT_SENSOR_INTERVAL = 15
_OFF = ("", "0", "off", "false", "no")


def master_by_precedence(argument: str | None, blueprint: str | None, operator: str | None) -> str:
    """The Spark master: argument > the Blueprint's engine.spark.master_url > the operator's
    (AQUEDUCT_SPARK_MASTER, else aqueduct.yml) > `auto` (the managed Spark Connect server of
    the state folder when it runs, else classic local[2])."""
    return argument or blueprint or operator or AUTO


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """AQUEDUCT_DEBUG: apart from `resolve`, because the CLI's error boundary asks it when
    the settings themselves failed to resolve."""
    env = os.environ if env is None else env
    return env.get("AQUEDUCT_DEBUG", "").strip().lower() not in _OFF


@dataclass(frozen=True)
class Settings:
    """Every setting, resolved: values are final, paths are as the run will use them."""

    #: aqueduct.yml as read (defaults when there is none).
    config: AqueductConfig
    #: The aqueduct.yml read; None when there was none.
    config_path: Path | None
    #: Absolute: the warehouse, Derby, the DuckDB store, checkpoints, revisions, the managed server.
    state_dir: Path
    blueprints_dir: Path
    #: Absolute folders a staged patch may edit Blueprints under.
    blueprint_roots: tuple[Path, ...]
    patches_dir: Path
    #: The master given as an argument (`Settings.resolve(spark_master=...)`): beats a Blueprint's.
    spark_master_argument: str | None
    #: The operator's master, AQUEDUCT_SPARK_MASTER else aqueduct.yml's: a Blueprint's beats it.
    spark_master: str | None
    #: aqueduct.yml's engine.spark.conf: a Blueprint's conf beats it key by key.
    spark_conf: Mapping[str, Any]
    #: AQUEDUCT_JARS_DIR; None: the engine's default (the checkout's .jars/, else the user cache).
    jars_dir: Path | None
    #: None: compiled Manifests are not cached on disk.
    compile_cache: Path | None
    dagster_url: str | None
    code_location: str
    sensor_interval: int
    dagster_home: Path | None
    debug: bool
    #: Where code references link to (None: read from the Blueprint's checkout, if any).
    git_url: str | None = None
    git_ref: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        config_path: str | Path | None = None,
        state_dir: str | Path | None = None,
        blueprints_dir: str | Path | None = None,
        spark_master: str | None = None,
        env: Mapping[str, str] | None = None,
        config: AqueductConfig | None = None,
    ) -> Settings:
        """Arguments, then the environment (`env`, default os.environ), then aqueduct.yml,
        then defaults. `config` stands in for aqueduct.yml (nothing is read then): for callers
        that hold one already, or that go on with defaults when the file is broken. Reading the
        file loads the `.env` beside it and resolves its engine block's `${VAR}`s against the
        process environment (`config.load_config`), whatever `env` is."""
        env = os.environ if env is None else env
        if config is None:
            config = load_config(config_path or env.get("AQUEDUCT_CONFIG") or None)
        blueprints = Path(blueprints_dir or env.get("AQUEDUCT_BLUEPRINTS_DIR") or DEFAULT_BLUEPRINTS_DIR)
        state = Path(state_dir or env.get("AQUEDUCT_STATE_DIR") or config.state_dir).expanduser().resolve()
        roots = config.blueprint_roots or [blueprints]
        jars = env.get("AQUEDUCT_JARS_DIR")
        home = env.get("DAGSTER_HOME")
        return cls(
            config=config,
            config_path=Path(config.source_path) if config.source_path else None,
            state_dir=state,
            blueprints_dir=blueprints,
            blueprint_roots=tuple(Path(root).expanduser().resolve() for root in roots),
            patches_dir=Path(env.get("AQUEDUCT_PATCHES_DIR") or config.patches_dir),
            spark_master_argument=spark_master,
            spark_master=env.get("AQUEDUCT_SPARK_MASTER") or config.engine.spark.master_url or None,
            spark_conf=dict(config.engine.spark.conf),
            jars_dir=Path(jars).expanduser() if jars else None,
            compile_cache=_compile_cache(env.get("AQUEDUCT_COMPILE_CACHE"), state),
            dagster_url=env.get("AQUEDUCT_DAGSTER_URL") or None,
            code_location=env.get("AQUEDUCT_CODE_LOCATION") or DEFAULT_CODE_LOCATION,
            sensor_interval=_seconds(env.get("AQUEDUCT_SENSOR_INTERVAL")),
            dagster_home=Path(home) if home else None,
            debug=debug_enabled(env),
            git_url=env.get("AQUEDUCT_GIT_URL") or None,
            git_ref=env.get("AQUEDUCT_GIT_BRANCH") or None,
        )

    def spark_master_for(self, engine: EngineBlock | None = None, argument: str | None = None) -> str:
        """The master for a run of a Blueprint with `engine`: argument (here, else the one
        `resolve` was given) > Blueprint > environment > aqueduct.yml > auto (managed server, else local[2])."""
        blueprint = engine.spark.master_url if engine is not None else None
        return master_by_precedence(argument or self.spark_master_argument, blueprint, self.spark_master)

    def spark_conf_for(self, engine: EngineBlock | None = None) -> dict[str, Any]:
        """aqueduct.yml's engine.spark.conf with the Blueprint's on top (the Blueprint wins a key)."""
        return {**self.spark_conf, **(engine.spark.conf if engine is not None else {})}

    def base_session(
        self, engine: EngineBlock | None = None, *, master: str | None = None, app_name: str = "aqueduct"
    ) -> SparkSession:
        """The process's base SparkSession for a Blueprint with `engine` (None: no Blueprint)."""
        return create_base_session(
            master=self.spark_master_for(engine, master),
            conf=self.spark_conf_for(engine),
            state_dir=self.state_dir,
            jars_dir=self.jars_dir,
            app_name=app_name,
        )


def _compile_cache(value: str | None, state: Path) -> Path | None:
    if value is None:
        return state / "compile-cache"
    if value.strip().lower() in _OFF:
        return None
    return Path(value).expanduser()


def _seconds(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_SENSOR_INTERVAL
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"AQUEDUCT_SENSOR_INTERVAL={value!r} is not a whole number of seconds",
            hint="set it to e.g. 15, or unset it",
        ) from None


# --------------------------------------------------------------------------- the process's settings

_CURRENT: dict[tuple[Any, ...], Settings] = {}


def current_settings() -> Settings:
    """The settings of this process as it is now, for entry points only.

    Resolved again when what they depend on changed (the environment, the working folder,
    the aqueduct.yml file), so a test that sets a variable or writes aqueduct.yml gets fresh
    settings without resetting anything; `reset_current_settings()` forgets them outright.
    """
    settings = _CURRENT.get(_situation())
    if settings is None:
        settings = Settings.resolve()
        _CURRENT.clear()
        # Keyed after resolving: reading aqueduct.yml may have loaded the .env beside it.
        _CURRENT[_situation()] = settings
    return settings


def reset_current_settings() -> None:
    _CURRENT.clear()


def _situation() -> tuple[Any, ...]:
    """What `current_settings()` depends on: the environment, the working folder, the file."""
    config = Path(os.environ.get("AQUEDUCT_CONFIG") or "aqueduct.yml")
    try:
        stat = config.stat()
        file = (str(config.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        file = None
    return os.getcwd(), frozenset(os.environ.items()), file
