"""`reload_code_location` through dagster-graphql's client: best effort, never raises."""

from __future__ import annotations

import logging

import pytest

from aqueduct_dagster.dagster.healing import reload_code_location
from tests.support.dagster_dev import dagster_dev, free_port

log = logging.getLogger("test.reload")


def test_without_a_webserver_url_it_only_says_so(monkeypatch, caplog):
    monkeypatch.delenv("AQUEDUCT_DAGSTER_URL", raising=False)
    with caplog.at_level(logging.INFO):
        assert reload_code_location(log) is False
    assert "AQUEDUCT_DAGSTER_URL is not set" in caplog.text


def test_an_unreachable_webserver_is_a_warning_not_an_error(monkeypatch, caplog):
    monkeypatch.setenv("AQUEDUCT_DAGSTER_URL", f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING):
        assert reload_code_location(log) is False
    assert "could not reload code location 'aqueduct_dagster.definitions'" in caplog.text
    assert "DagsterGraphQLClientError" in caplog.text


@pytest.mark.e2e
def test_reloads_the_location_a_real_webserver_serves(tmp_path, monkeypatch, caplog):
    with dagster_dev(tmp_path / "home", env={"AQUEDUCT_DATA_DIR": str(tmp_path / "data")}) as server:
        monkeypatch.setenv("AQUEDUCT_DAGSTER_URL", server.url)
        with caplog.at_level(logging.INFO):
            assert reload_code_location(log) is True
            monkeypatch.setenv("AQUEDUCT_CODE_LOCATION", "no_such_location")
            assert reload_code_location(log) is False
    assert "reloaded code location 'aqueduct_dagster.definitions'" in caplog.text
    assert "could not reload code location 'no_such_location'" in caplog.text
    assert "RepositoryLocationNotFound" in caplog.text
