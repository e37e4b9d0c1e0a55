"""`aqueduct jars fetch|path` with the real Maven (the jars come from the local ~/.m2), and
where the engine looks for them."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import doctor as cli_doctor
from aqueduct_dagster.cli import main
from aqueduct_dagster.engine import jars
from aqueduct_dagster.errors import ConfigError


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def outside_the_checkout(tmp_path, monkeypatch):
    """As in an installed wheel: no checkout `.jars/`, a user cache of our own."""
    monkeypatch.delenv("AQUEDUCT_JARS_DIR", raising=False)
    monkeypatch.setattr(jars, "CHECKOUT_JARS", tmp_path / "no-checkout" / ".jars")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_fetch_fills_the_user_cache_the_engine_then_uses(outside_the_checkout):
    cache = jars.cache_jars_dir()
    assert cache.is_relative_to(outside_the_checkout / "cache" / "aqueduct" / "jars")
    with pytest.raises(ConfigError) as caught:
        jars.jars_dir()
    assert str(cache) in str(caught.value) and "aqueduct jars fetch" in str(caught.value)
    assert invoke("jars", "path").exit_code == 3

    fetched = invoke("jars", "fetch")
    assert fetched.exit_code == 0, fetched.output
    assert f"jars in {cache}" in fetched.output
    assert jars.jars_dir() == cache
    assert {"delta-spark_4.2_2.13-4.4.0.jar", "postgresql-42.7.8.jar"} <= {p.name for p in cache.glob("*.jar")}
    assert invoke("jars", "path").output.strip() == str(cache)
    check = cli_doctor.check_jars()
    assert check.status == "ok" and str(cache) in check.detail


def test_fetch_into_a_folder_replaces_only_jars(outside_the_checkout, monkeypatch):
    dest = outside_the_checkout / "lib"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    (dest / "delta-spark_4.2_2.13-3.0.0.jar").write_bytes(b"stale")
    monkeypatch.setenv("AQUEDUCT_JARS_DIR", str(dest))
    assert cli_doctor.check_jars().status == "FAIL"  # a delta jar, but not this release's

    fetched = invoke("jars", "fetch", "--dest", str(dest), "--offline")
    assert fetched.exit_code == 0, fetched.output
    assert (dest / "notes.txt").read_text() == "keep me"
    assert not (dest / "delta-spark_4.2_2.13-3.0.0.jar").exists()
    assert jars.missing_jars(dest) == []
    assert cli_doctor.check_jars().status == "ok"
    assert not list(outside_the_checkout.glob(".lib-*"))  # no staging folder left behind


def test_doctor_names_the_missing_jar(tmp_path, monkeypatch):
    (tmp_path / "delta-spark_4.2_2.13-4.4.0.jar").write_bytes(b"")
    monkeypatch.setenv("AQUEDUCT_JARS_DIR", str(tmp_path))
    check = cli_doctor.check_jars()
    assert check.status == "FAIL"
    assert "postgresql-42.7.8.jar" in check.detail and "aqueduct jars fetch" in check.detail


def test_fetch_without_maven_is_an_environment_problem(outside_the_checkout, monkeypatch):
    monkeypatch.setenv("PATH", str(outside_the_checkout))
    result = CliRunner().invoke(main, ["jars", "fetch"])
    assert result.exit_code == 3
    assert "Maven (mvn) is not on the PATH" in result.output
