"""Runtime tokens are bound per run; secrets stay tokens until the point of use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, reveal_secrets
from aqueduct_dagster.errors import AqueductError, ConfigError

from .conftest import TEST_ENV

SECRET_VALUE = TEST_ENV["DB_PASSWORD"]

WITH_SECRET = """
aqueduct: "1.0"
id: s
name: Secrets
context:
  password: "@aq.secret('DB_PASSWORD')"
modules:
  - id: src
    type: Ingress
    config:
      format: jdbc
      options:
        url: jdbc:postgresql://db/shop
        password: "@aq.secret('DB_PASSWORD')"
        also: ${ctx.password}
"""

RUNTIME = """
aqueduct: "1.0"
id: r
name: Runtime
context:
  today: "@aq.date.today()"
modules:
  - id: src
    type: Ingress
    config:
      format: csv
      path: "/in/${ctx.today}/data.csv"
      options:
        run: "@aq.run.id()"
        prev: "@aq.run.prev_id()"
        at: "@aq.run.timestamp()"
        yesterday: "@aq.date.yesterday()"
        now: "@aq.date.now()"
        month: "@aq.date.month_start()"
        week_ago: "@aq.date.offset(-7)"
        tomorrow: "@aq.date.offset(days=1)"
        watermark: "@aq.depot.get('wm', '1900-01-01')"
  - id: pick
    type: Channel
    config:
      op: sql
      query: "SELECT *, '@aq.run.id()' AS run_id FROM src"
"""

RUN = RunInfo(
    run_id="run-42", started_at=datetime(2026, 3, 1, 8, 30, 5, tzinfo=UTC)
)


def test_secret_value_never_enters_the_manifest(compile_yaml):
    manifest = compile_yaml(WITH_SECRET)
    dumped = manifest.model_dump_json()

    assert SECRET_VALUE not in dumped
    options = manifest.module("src").config.options
    assert options["password"] == "@aq.secret('DB_PASSWORD')"
    assert options["also"] == "@aq.secret('DB_PASSWORD')"
    assert manifest.provenance["modules.src.config.options.password"].source == "secret"
    assert manifest.provenance["modules.src.config.options.also"].source == "secret"


def test_secret_value_never_appears_in_errors(compile_error):
    broken = WITH_SECRET.replace("format: jdbc", "format: jdbc\n      header: maybe-not")
    error = compile_error(broken)
    assert "header" in error.message
    assert SECRET_VALUE not in str(error) and SECRET_VALUE not in repr(error.to_dict())


def test_reveal_secrets_substitutes_at_the_point_of_use(compile_yaml):
    options = compile_yaml(WITH_SECRET).module("src").config.options
    revealed = reveal_secrets(options, env=TEST_ENV)

    assert revealed["password"] == SECRET_VALUE
    assert revealed["url"] == "jdbc:postgresql://db/shop"
    assert reveal_secrets(["x", {"k": "p=@aq.secret('DB_PASSWORD')"}], env=TEST_ENV) == [
        "x",
        {"k": f"p={SECRET_VALUE}"},
    ]


def test_reveal_secrets_fails_without_echoing_anything(compile_yaml):
    with pytest.raises(ConfigError, match="secret 'DB_PASSWORD' is not set"):
        reveal_secrets("@aq.secret('DB_PASSWORD')", env={})


def test_bind_runtime_replaces_run_and_date_tokens(compile_yaml):
    manifest = compile_yaml(RUNTIME)
    bound = bind_runtime(manifest, RUN)
    options = bound.module("src").config.options

    assert bound.module("src").config.path == "/in/2026-03-01/data.csv"
    assert bound.context["today"] == "2026-03-01"
    assert options["run"] == "run-42"
    assert options["prev"] == ""
    assert options["at"] == "2026-03-01T08:30:05+00:00"
    assert options["yesterday"] == "2026-02-28"
    assert options["now"] == "2026-03-01 08:30:05"
    assert options["month"] == "2026-03-01"
    assert options["week_ago"] == "2026-02-22"
    assert options["tomorrow"] == "2026-03-02"
    assert options["watermark"] == "@aq.depot.get('wm', '1900-01-01')"
    assert bound.module("pick").sql == "SELECT *, 'run-42' AS run_id FROM src"


def test_bind_runtime_leaves_the_original_alone(compile_yaml):
    manifest = compile_yaml(RUNTIME)
    before = manifest.model_dump_json()
    later = RunInfo(run_id="run-43", started_at=RUN.started_at + timedelta(days=1),
                    prev_run_id="run-42")  # fmt: skip

    bound = bind_runtime(manifest, later)

    assert manifest.model_dump_json() == before
    assert manifest.module("src").config.options["run"] == "@aq.run.id()"
    assert bound.module("src").config.options["prev"] == "run-42"
    assert bound.module("src").config.path == "/in/2026-03-02/data.csv"
    # a new day is not new code: Dagster code versions stay put
    assert bound.fingerprint == manifest.fingerprint


def test_bind_runtime_keeps_secrets_as_tokens(compile_yaml):
    bound = bind_runtime(compile_yaml(WITH_SECRET), RUN)
    assert bound.module("src").config.options["password"] == "@aq.secret('DB_PASSWORD')"


def test_config_error_is_part_of_the_error_family():
    assert issubclass(ConfigError, AqueductError)
