"""Which store `aqueduct.yml` selects, and the errors a wrong PostgreSQL setting gives."""

from __future__ import annotations

import pytest

from aqueduct_dagster.config import AqueductConfig, load_config
from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.settings import Settings
from aqueduct_dagster.stores import DuckDBStore, PostgresStore, default_store
from tests.support.postgres import free_port


def _config_file(tmp_path, observability: str):
    path = tmp_path / "aqueduct.yml"
    path.write_text(f"stores:\n  observability:\n{observability}")
    return path


def test_nothing_configured_gives_duckdb_in_the_state_dir(tmp_path):
    store = default_store(tmp_path / "state", AqueductConfig())
    assert isinstance(store, DuckDBStore) and store.path == tmp_path / "state" / "aqueduct.duckdb"


def test_duckdb_path_setting_names_the_folder(tmp_path):
    config = load_config(_config_file(tmp_path, f"    backend: duckdb\n    path: {tmp_path / 'obs'}\n"))
    assert default_store(tmp_path / "state", config=config).path == tmp_path / "obs" / "aqueduct.duckdb"


@pytest.mark.parametrize("spelling", ["${AQ_TEST_PG_URL}", "@aq.secret('AQ_TEST_PG_URL')"])
def test_postgres_from_aqueduct_yml(spelling, postgres_server, tmp_path, monkeypatch):
    url = postgres_server.create_database()
    monkeypatch.setenv("AQ_TEST_PG_URL", url.replace("postgresql://", "postgresql+psycopg2://"))
    path = _config_file(tmp_path, f'    backend: postgres\n    url: "{spelling}"\n')
    # The config found through AQUEDUCT_CONFIG, as an entry point resolves it.
    monkeypatch.setenv("AQUEDUCT_CONFIG", str(path))
    settings = Settings.resolve(state_dir=tmp_path / "state")
    store = default_store(settings.state_dir, settings.config)
    assert isinstance(store, PostgresStore)
    assert store.description == f"postgres:postgres@{postgres_server.host_and_port}/{url.rsplit('/', 1)[1]}"
    store.start_heal("h1", "bp", None, "SIG")
    assert [a["heal_id"] for a in default_store(tmp_path / "other", load_config(path)).heal_attempts("bp")] == ["h1"]
    assert not (tmp_path / "state").exists()


def test_postgres_without_url_is_a_config_error(tmp_path):
    path = _config_file(tmp_path, "    backend: postgres\n")
    with pytest.raises(ConfigError, match="backend is 'postgres' but no url is set") as caught:
        default_store(tmp_path / "state", load_config(path))
    assert str(path) in str(caught.value)


def test_unreachable_postgres_names_host_and_port_never_the_password(tmp_path):
    port = free_port()  # nothing listens there
    path = _config_file(tmp_path, f"    backend: postgres\n    url: postgresql://aq:s3cr3t-pw@127.0.0.1:{port}/aq\n")
    store = default_store(tmp_path / "state", load_config(path))
    with pytest.raises(ConfigError) as caught:
        store.heal_attempts()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "database 'aq'" in message
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in store.description
