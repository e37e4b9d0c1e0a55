"""Ingress `format: jdbc` against a real PostgreSQL, through the driver jar in `.jars/`.

The server comes from `tests/support/postgres.py` (trust authentication for the superuser);
this module adds a reader role that must log in with a password (scram-sha-256 over TCP), so
a wrong password really fails. The password reaches the Manifest only as
`@aq.secret('PG_PASSWORD')` and must never show up in metadata or in an error.
"""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.runner import run_manifest
from tests.support.postgres import PostgresServer

from .conftest import build_manifest, build_module

READER = "aq_reader"
PASSWORD = "s3cr3t-Pw-for-jdbc"


# Session-wide like the server: the tests run in a [classic] and a [connect] turn, and the
# reader role below can be created only once per server.
@pytest.fixture(scope="session")
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    return postgres_server


@pytest.fixture(scope="session")
def orders_db(postgres: PostgresServer) -> dict[str, str]:
    """A database with an `orders` table, readable by a role that needs its password."""
    import psycopg2
    from psycopg2.extensions import parse_dsn

    url = postgres.create_database("aq_jdbc")
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE orders (order_id INT PRIMARY KEY, customer TEXT, amount NUMERIC(8,2))"
        )
        cursor.execute("INSERT INTO orders VALUES (1, 'ann', 19.99), (2, 'bob', 5), (3, 'cy', 7.5)")
        cursor.execute(f"CREATE ROLE {READER} LOGIN PASSWORD %s", (PASSWORD,))
        cursor.execute(f"GRANT SELECT ON orders TO {READER}")
        cursor.execute("SHOW hba_file")
        hba_file = cursor.fetchone()[0]
    connection.close()

    password_checked = _require_password_for(postgres, hba_file)
    params = parse_dsn(url)
    return {
        "url": f"jdbc:postgresql://{params['host']}:{params['port']}/{params['dbname']}",
        "password_checked": "yes" if password_checked else "",
    }


def _require_password_for(postgres: PostgresServer, hba_file: str) -> bool:
    """Make READER log in with its password over TCP; False where the hba file is not ours."""
    import psycopg2

    try:
        with open(hba_file) as handle:
            current = handle.read()
        with open(hba_file, "w") as handle:  # first match wins: our line goes on top
            handle.write(f"host all {READER} 127.0.0.1/32 scram-sha-256\n{current}")
    except OSError:
        return False
    connection = psycopg2.connect(postgres.admin_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        connection.close()
    return True


@pytest.fixture
def pg_password(monkeypatch):
    monkeypatch.setenv("PG_PASSWORD", PASSWORD)


def _jdbc_ingress(url: str, **options: str):
    return build_module(
        "Ingress",
        "orders_pg",
        {
            "format": "jdbc",
            "options": {
                "url": url,
                "user": READER,
                "password": "@aq.secret('PG_PASSWORD')",
                **options,
            },
        },
    )


def test_reads_a_postgres_table(run_spark, orders_db, pg_password):
    result = execute_module(run_spark, _jdbc_ingress(orders_db["url"], dbtable="orders"), {})

    frame = result.outputs["main"]
    assert sorted(r.customer for r in frame.collect()) == ["ann", "bob", "cy"]
    assert result.metadata["format"] == "jdbc"
    assert "password" in result.metadata["option_keys"]
    assert PASSWORD not in repr(result.metadata)


def test_reads_a_query_and_runs_downstream(run_spark, orders_db, pg_password, tmp_path):
    ingress = _jdbc_ingress(
        orders_db["url"], query="SELECT order_id, amount FROM orders WHERE amount > 6"
    )
    channel = build_module(
        "Channel", "total", {"query": "SELECT SUM(amount) AS total FROM orders_pg"},
        inputs=("orders_pg",),
    )  # fmt: skip
    egress = build_module(
        "Egress", "out", {"format": "parquet", "path": str(tmp_path / "out"), "mode": "overwrite"},
        inputs=("total",),
    )  # fmt: skip
    result = run_manifest(run_spark, build_manifest(ingress, channel, egress))

    total = run_spark.read.parquet(str(tmp_path / "out")).first().total
    assert float(total) == pytest.approx(27.49)
    for module_result in result.modules.values():
        assert PASSWORD not in repr(module_result.metadata)


def test_wrong_password_fails_without_revealing_it(run_spark, orders_db, monkeypatch):
    if not orders_db["password_checked"]:
        pytest.skip("the server's pg_hba.conf is not writable here: passwords are not checked")
    wrong = "Wr0ng-Pw-never-shown"
    monkeypatch.setenv("PG_PASSWORD", wrong)

    with pytest.raises(ModuleFailed) as raised:
        execute_module(run_spark, _jdbc_ingress(orders_db["url"], dbtable="orders"), {})

    failure = raised.value
    assert failure.error.condition == "FAILED_JDBC.CONNECTION"
    # The server's reason travels in the cause chain, for whoever diagnoses it.
    assert "password authentication failed" in " ".join(failure.error.cause_chain)
    assert not failure.transient  # a wrong password is not healed by a retry
    for text in (str(failure), repr(failure.to_dict())):
        assert wrong not in text
        assert PASSWORD not in text


def test_missing_secret_is_a_clean_error(run_spark, orders_db, monkeypatch):
    monkeypatch.delenv("PG_PASSWORD", raising=False)
    with pytest.raises(ModuleFailed) as raised:
        execute_module(run_spark, _jdbc_ingress(orders_db["url"], dbtable="orders"), {})
    assert raised.value.error.condition == "AQ_SECRET_NOT_SET"
