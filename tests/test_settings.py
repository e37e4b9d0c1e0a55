"""Settings: one precedence (argument > Blueprint > environment > aqueduct.yml > default), resolved
once and passed down, so every reader of the state folder and the Spark master agrees."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

import dagster as dg
import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.models import EngineBlock
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.assets import SPARK_RESOURCE_KEY
from aqueduct_dagster.dagster.healing import _spark_factory
from aqueduct_dagster.dagster.io_manager import SparkFrameIOManager
from aqueduct_dagster.dagster.resources import SparkResource
from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.healing.patch_queue import PatchQueue
from aqueduct_dagster.settings import (
    ENVIRONMENT,
    Settings,
    current_settings,
    reset_current_settings,
)
from aqueduct_dagster.stores import DuckDBStore, default_store
from tests.support.dg_project import BLUEPRINT, write_data

ENGINE = Path(__file__).resolve().parents[1] / "aqueduct_dagster" / "engine"


def _yml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aqueduct.yml"
    path.write_text(text)
    return path


def _engine(master: str | None) -> EngineBlock:
    return EngineBlock.model_validate({"spark": {"master_url": master} if master else {}})


# --------------------------------------------------------------------------- the precedence table

MASTER_ROWS = [
    # argument, Blueprint, AQUEDUCT_SPARK_MASTER, aqueduct.yml -> master
    ("local[4]", "spark://bp:7077", "local[3]", "spark://yml:7077", "local[4]"),
    (None, "spark://bp:7077", "local[3]", "spark://yml:7077", "spark://bp:7077"),
    (None, None, "local[3]", "spark://yml:7077", "local[3]"),
    (None, None, None, "spark://yml:7077", "spark://yml:7077"),
    (None, None, None, None, "auto"),  # the managed server when it runs, else local[2]
]


@pytest.mark.parametrize(("argument", "blueprint", "env", "yml", "expected"), MASTER_ROWS)
def test_the_spark_master_follows_one_precedence(tmp_path, argument, blueprint, env, yml, expected):
    config = _yml(tmp_path, f"engine:\n  spark:\n    master_url: '{yml}'\n" if yml else "state_dir: s\n")
    environment = {"AQUEDUCT_SPARK_MASTER": env} if env else {}
    settings = Settings.resolve(config_path=config, env=environment)
    assert settings.spark_master_for(_engine(blueprint), argument) == expected
    # An argument given when the settings are resolved is the same level as one given per call.
    assert Settings.resolve(config_path=config, env=environment, spark_master=argument).spark_master_for(
        _engine(blueprint)
    ) == expected
    # The Dagster resource carries the same levels and chooses the same master.
    assert SparkResource.from_settings(settings, master=argument).master_for(_engine(blueprint)) == expected


STATE_ROWS = [
    # argument, AQUEDUCT_STATE_DIR, aqueduct.yml -> state folder (under tmp_path)
    ("arg", "env", "yml", "arg"),
    (None, "env", "yml", "env"),
    (None, None, "yml", "yml"),
    (None, None, None, ".aqueduct"),
]


@pytest.mark.parametrize(("argument", "env", "yml", "expected"), STATE_ROWS)
def test_the_state_folder_follows_one_precedence_and_is_absolute(tmp_path, monkeypatch, argument, env, yml,
                                                                 expected):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    config = _yml(tmp_path, f"state_dir: {yml}\n" if yml else "patches_dir: p\n")
    settings = Settings.resolve(
        config_path=config, state_dir=argument, env={"AQUEDUCT_STATE_DIR": env} if env else {}
    )
    assert settings.state_dir == tmp_path / expected
    assert settings.state_dir.is_absolute()


def test_the_blueprint_conf_beats_the_operators_key_by_key(tmp_path):
    config = _yml(tmp_path, "engine:\n  spark:\n    conf: {spark.sql.shuffle.partitions: 3, spark.a: x}\n")
    settings = Settings.resolve(config_path=config, env={})
    engine = EngineBlock.model_validate({"spark": {"conf": {"spark.sql.shuffle.partitions": 9}}})
    assert settings.spark_conf_for(engine) == {"spark.sql.shuffle.partitions": 9, "spark.a": "x"}
    assert settings.spark_conf_for(None) == {"spark.sql.shuffle.partitions": 3, "spark.a": "x"}


def test_the_environment_names_the_file_and_the_other_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = _yml(elsewhere, "state_dir: from-yml\npatches_dir: yml-patches\n")
    settings = Settings.resolve(env={
        "AQUEDUCT_CONFIG": str(config), "AQUEDUCT_PATCHES_DIR": "env-patches", "AQUEDUCT_JARS_DIR": "/opt/jars",
        "AQUEDUCT_COMPILE_CACHE": "off", "AQUEDUCT_SENSOR_INTERVAL": "40", "AQUEDUCT_DEBUG": "1",
        "AQUEDUCT_DAGSTER_URL": "http://127.0.0.1:3000", "AQUEDUCT_BLUEPRINTS_DIR": "bps",
    })  # fmt: skip
    assert settings.config_path == config
    assert settings.state_dir == tmp_path / "from-yml"
    assert settings.patches_dir == Path("env-patches")
    assert settings.jars_dir == Path("/opt/jars")
    assert settings.compile_cache is None
    assert settings.sensor_interval == 40 and settings.debug
    assert settings.dagster_url == "http://127.0.0.1:3000"
    assert settings.blueprint_roots == (tmp_path / "bps",)
    # Nothing set: the defaults.
    defaults = Settings.resolve(env={})
    assert defaults.config_path is None and defaults.compile_cache == tmp_path / ".aqueduct" / "compile-cache"
    assert defaults.sensor_interval == 15 and not defaults.debug and defaults.spark_master is None


def test_a_named_file_that_is_missing_or_a_bad_interval_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.resolve(env={"AQUEDUCT_CONFIG": str(tmp_path / "missing.yml")})
    with pytest.raises(ConfigError, match="AQUEDUCT_SENSOR_INTERVAL"):
        Settings.resolve(env={"AQUEDUCT_SENSOR_INTERVAL": "soon"})


def test_current_settings_follow_the_environment_and_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AQUEDUCT_CONFIG", raising=False)
    monkeypatch.delenv("AQUEDUCT_STATE_DIR", raising=False)
    reset_current_settings()
    assert current_settings() is current_settings()  # resolved once while nothing changes
    _yml(tmp_path, "state_dir: first\n")
    assert current_settings().state_dir == tmp_path / "first"
    _yml(tmp_path, "state_dir: second-one\n")
    assert current_settings().state_dir == tmp_path / "second-one"
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "env"))
    assert current_settings().state_dir == tmp_path / "env"


def test_every_variable_read_is_documented():
    source = (Path(__file__).resolve().parents[1] / "aqueduct_dagster" / "settings.py").read_text()
    read = {node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and re.fullmatch(r"AQUEDUCT_[A-Z_]+|DAGSTER_HOME", node.value)}  # fmt: skip
    assert read == set(ENVIRONMENT)


# --------------------------------------------------------------------------- one state folder for all


@pytest.fixture
def yml_only_project(tmp_path, monkeypatch):
    """A project whose state folder only aqueduct.yml names (no AQUEDUCT_STATE_DIR)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AQUEDUCT_STATE_DIR", raising=False)
    monkeypatch.delenv("AQUEDUCT_CONFIG", raising=False)
    monkeypatch.delenv("AQUEDUCT_SPARK_MASTER", raising=False)
    _yml(tmp_path, "state_dir: yml-state\nengine:\n  spark:\n    master_url: managed\n")
    data = write_data(tmp_path / "data")
    (tmp_path / "blueprints").mkdir()
    blueprint = BLUEPRINT.replace("data_dir: nowhere", f"data_dir: {data}").replace(
        "    type: Channel\n", "    type: Channel\n    checkpoint: true\n"
    )
    (tmp_path / "blueprints" / "orders.yml").write_text(blueprint)
    return tmp_path


def test_the_resource_checkpoints_store_and_patch_queue_share_the_yml_state_folder(yml_only_project):
    state = yml_only_project / "yml-state"
    settings = current_settings()
    assert settings.state_dir == state
    resource = build_definitions(settings=settings).resources[SPARK_RESOURCE_KEY]
    assert isinstance(resource, SparkResource) and resource.state_path == state
    assert SparkFrameIOManager(resource).checkpoint_root() == state / "checkpoints"
    store = default_store(settings.state_dir, settings.config)
    assert isinstance(store, DuckDBStore) and store.path == state / "aqueduct.duckdb"
    assert PatchQueue.from_settings(settings).revisions.root == state / "revisions"


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_the_heal_sandbox_and_the_run_look_for_spark_under_the_same_state_folder(
    spark, yml_only_project, caplog
):
    """`managed` in aqueduct.yml: both look for the project's server in the state folder's
    spark-connect/ (none runs, so both say where they looked and use the running JVM)."""
    state = yml_only_project / "yml-state"
    manifest = compile_blueprint(yml_only_project / "blueprints" / "orders.yml")
    resource = build_definitions().resources[SPARK_RESOURCE_KEY]
    with caplog.at_level(logging.WARNING, logger="aqueduct_dagster.engine.session"):
        run_session = resource.base_session(manifest.engine)
        sandbox_session = _spark_factory(manifest, current_settings())()
    looked = [r.getMessage() for r in caplog.records if "no healthy managed Spark Connect server" in r.getMessage()]
    assert len(looked) == 2 and all(f"none was started for {state}" in line for line in looked), looked
    assert run_session.sparkContext is spark.sparkContext and sandbox_session.sparkContext is spark.sparkContext


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_a_dagster_run_keeps_its_checkpoints_and_store_in_the_yml_state_folder(spark, yml_only_project):
    state = yml_only_project / "yml-state"
    defs = build_definitions()
    result = defs.resolve_job_def("orders").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert list((state / "checkpoints").rglob("_SUCCESS")), "the checkpoint is under aqueduct.yml's state_dir"
    assert (state / "aqueduct.duckdb").is_file()
    assert not (yml_only_project / ".aqueduct" / "checkpoints").exists()


# --------------------------------------------------------------------------- the engine reads no settings

#: (file, variable) the engine may touch, and why: process-launch necessities only.
ENGINE_ENVIRONMENT = {
    ("session.py", "SPARK_CONNECT_MODE_ENABLED"),  # pyspark's own API switch
    ("session.py", "SPARK_LOCAL_IP"),  # the local JVM binds to loopback
    ("session.py", "PYSPARK_PYTHON"),  # the Python workers' interpreter
    ("connect_server.py", "PYSPARK_PYTHON"),  # the same, for the server's workers
    ("connect_server.py", "JAVA_HOME"),  # where java is, as spark-class looks
    ("connect_server.py", "<whole environment>"),  # what the supervisor and JVM inherit
    ("secrets.py", "<whole environment>"),  # @aq.secret values: the secret provider
}


def _environment_reads(path: Path) -> set[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    reads = set()
    for node in ast.walk(tree):
        is_environ = isinstance(node, ast.Attribute) and node.attr == "environ"
        is_getenv = isinstance(node, ast.Attribute) and node.attr == "getenv"
        if not (is_environ or is_getenv):
            continue
        parent = parents.get(node)
        if is_environ and isinstance(parent, ast.Attribute):  # os.environ.get / setdefault / pop
            parent = parents.get(parent)
        key = None
        if isinstance(parent, ast.Call) and parent.args and isinstance(parent.args[0], ast.Constant):
            key = parent.args[0].value
        elif isinstance(parent, ast.Subscript) and isinstance(parent.slice, ast.Constant):
            key = parent.slice.value
        reads.add((path.name, key or "<whole environment>"))
    return reads


def test_the_engine_reads_no_aqueduct_variable_and_no_aqueduct_yml():
    reads: set[tuple[str, str]] = set()
    for path in sorted(ENGINE.rglob("*.py")):
        reads |= _environment_reads(path)
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
        assert not imported & {"aqueduct_dagster.config", "aqueduct_dagster.settings"}, path
    assert reads <= ENGINE_ENVIRONMENT, reads - ENGINE_ENVIRONMENT
    assert not any(key.startswith("AQUEDUCT_") for _, key in reads)
