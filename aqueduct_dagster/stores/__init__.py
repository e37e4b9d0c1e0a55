"""Framework state stores: DuckDB by default, PostgreSQL when configured."""

from __future__ import annotations

from pathlib import Path

from aqueduct_dagster.config import AqueductConfig, resolve_setting
from aqueduct_dagster.errors import ConfigError, SourceLocation
from aqueduct_dagster.stores.base import HealTurn, Store
from aqueduct_dagster.stores.duckdb_store import DuckDBStore
from aqueduct_dagster.stores.postgres_store import PostgresStore

_DUCKDB_FILE = "aqueduct.duckdb"


def default_store(state_dir: str | Path, config: AqueductConfig) -> Store:
    """The store `config` (aqueduct.yml) configures (`stores.observability`), else
    `<state_dir>/aqueduct.duckdb`: pass `Settings.state_dir` and `Settings.config`.

    For DuckDB, `stores.observability.path` (a folder, or a `.duckdb` / `.db` file) wins over
    `state_dir`.
    """
    settings = config.stores.observability
    if settings.backend == "postgres":
        return PostgresStore(_postgres_url(config))
    if settings.path:
        chosen = Path(settings.path).expanduser()
        return DuckDBStore(chosen if chosen.suffix in (".duckdb", ".db") else chosen / _DUCKDB_FILE)
    return DuckDBStore(Path(state_dir) / _DUCKDB_FILE)


def _postgres_url(config: AqueductConfig) -> str:
    settings = config.stores.observability
    # aqueduct-core spells the DSN as `path`; accept it there too.
    raw = settings.url or (settings.path if settings.path and "://" in settings.path else None)
    if not raw:
        raise ConfigError(
            "stores.observability.backend is 'postgres' but no url is set",
            location=SourceLocation(config.source_path) if config.source_path else None,
            hint="set stores.observability.url: postgresql://user:password@host:5432/database, "
            "or \"${AQUEDUCT_PG_URL}\" / \"@aq.secret('AQUEDUCT_PG_URL')\" to keep the password out of the file",
        )
    return resolve_setting(raw) or ""


__all__ = ["DuckDBStore", "HealTurn", "PostgresStore", "Store", "default_store"]
