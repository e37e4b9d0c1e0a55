"""aqueduct.yml's environment: the `.env` beside it, and `${VAR:-default}` in its engine block."""

from __future__ import annotations

import os

import pytest

from aqueduct_dagster.config import load_config
from aqueduct_dagster.errors import ConfigError

CONFIG = """\
engine:
  spark:
    master_url: "${AQ_TEST_MASTER:-local[1]}"
    conf:
      spark.jars.packages: "${AQ_TEST_DELTA_PACKAGE:-io.delta:delta-spark_4.1_2.13:4.2.0}"
      spark.sql.shuffle.partitions: "${AQ_TEST_PARTITIONS:3}"
      spark.app.name: "run-${AQ_TEST_APP}"
agent:
  api_key: "${AQ_TEST_API_KEY}"
"""

NAMES = ("AQ_TEST_API_KEY", "AQ_TEST_MASTER", "AQ_TEST_DELTA_PACKAGE", "AQ_TEST_PARTITIONS", "AQ_TEST_APP", "AQ_NO_ENV_FILE")


@pytest.fixture
def project(tmp_path, monkeypatch):
    """aqueduct.yml in a folder; the variables it names unset, and unset again afterwards
    (the .env loader writes to os.environ)."""
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "aqueduct.yml").write_text(CONFIG)
    return tmp_path


def test_the_env_file_beside_the_config_fills_the_engine_block(project, monkeypatch):
    (project / ".env").write_text(
        "# written by populate_delta.py\nAQ_TEST_DELTA_PACKAGE=io.delta:delta-spark_4.2_2.13:4.4.0\n"
        "AQ_TEST_APP=from-dotenv\nAQ_TEST_PARTITIONS=7\n"
    )
    monkeypatch.setenv("AQ_TEST_PARTITIONS", "11")  # already set: the .env never overrides it

    spark = load_config(project / "aqueduct.yml").engine.spark

    assert spark.master_url == "local[1]"  # unset, no .env entry: the default
    assert spark.conf == {
        "spark.jars.packages": "io.delta:delta-spark_4.2_2.13:4.4.0",
        "spark.sql.shuffle.partitions": "11",
        "spark.app.name": "run-from-dotenv",
    }
    assert os.environ["AQ_TEST_APP"] == "from-dotenv"  # loaded for everything that reads it later


def test_other_sections_keep_their_references_for_the_moment_of_use(project, monkeypatch):
    """A secret is read where it is needed (config.resolve_setting), not kept in the config;
    an unset one fails only the command that needs it."""
    monkeypatch.setenv("AQ_TEST_APP", "x")
    assert load_config(project / "aqueduct.yml").agent.api_key == "${AQ_TEST_API_KEY}"


def test_an_unset_variable_without_a_default_names_the_key_and_the_file(project):
    with pytest.raises(ConfigError) as raised:
        load_config(project / "aqueduct.yml")
    assert "engine.spark.conf.spark.app.name: environment variable AQ_TEST_APP is not set" in str(raised.value)
    assert raised.value.location.file == str(project / "aqueduct.yml")
    assert ".env beside aqueduct.yml" in raised.value.hint


def test_aq_no_env_file_turns_the_loading_off(project, monkeypatch):
    (project / ".env").write_text("AQ_TEST_APP=from-dotenv\n")
    monkeypatch.setenv("AQ_NO_ENV_FILE", "1")
    with pytest.raises(ConfigError):
        load_config(project / "aqueduct.yml")
    assert "AQ_TEST_APP" not in os.environ
