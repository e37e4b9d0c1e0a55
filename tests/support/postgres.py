"""A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` on a free loopback port.

The server binaries come from `/usr/lib/postgresql/<version>/bin` (Debian's layout), `initdb`
on the PATH, or `$AQUEDUCT_TEST_PG_BIN`. When none is found and we run as root (CI does), they
are installed with apt-get; a non-root run without them is skipped by the fixture. PostgreSQL
refuses to run as root, so as root every server command runs as the `postgres` OS user.

`AQUEDUCT_TEST_POSTGRES_URL` (a superuser URL) points the tests at an existing server instead:
databases are then created there and dropped afterwards.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_USER = "postgres"

#: Durability off and little memory: a test server on a shared two-core machine.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "60",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the fixture turns this into a skip)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _version_key(folder: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl` (newest Debian version first), or None."""
    configured = os.environ.get("AQUEDUCT_TEST_PG_BIN")
    if configured:
        if not (Path(configured) / "initdb").is_file():
            raise RuntimeError(f"AQUEDUCT_TEST_PG_BIN={configured} holds no initdb")
        return Path(configured)
    debian = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()),
        key=_version_key,
        reverse=True,
    )
    if debian:
        return debian[0]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def install_with_apt() -> None:
    """`apt-get install postgresql` (root only): CI machines may start without the server."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]):  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def ensure_bin_dir() -> Path:
    """Find the server binaries, installing them as root; PostgresUnavailable otherwise."""
    found = find_bin_dir()
    if found:
        return found
    if not _is_root():
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb "
            "on PATH) and not root, so they cannot be installed: install `postgresql` or set "
            "AQUEDUCT_TEST_PG_BIN / AQUEDUCT_TEST_POSTGRES_URL"
        )
    if not shutil.which("apt-get"):
        raise PostgresUnavailable("PostgreSQL server binaries not found and apt-get is not available")
    install_with_apt()
    found = find_bin_dir()
    if not found:
        raise RuntimeError("apt-get installed postgresql but no initdb was found under /usr/lib/postgresql")
    return found


def _admin_connect(url: str):
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=10)
    connection.autocommit = True  # CREATE / DROP DATABASE refuse to run inside a transaction
    return connection


class PostgresServer:
    """A running server; `create_database()` gives each test its own database."""

    def __init__(self, admin_url: str, *, external: bool = False) -> None:
        self.admin_url = admin_url  # .../postgres, a superuser connection
        self.external = external
        self._created: list[str] = []

    @property
    def host_and_port(self) -> str:
        from psycopg2.extensions import parse_dsn

        params = parse_dsn(self.admin_url)
        return f"{params.get('host', 'localhost')}:{params.get('port', '5432')}"

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return re.sub(r"^[a-z0-9+]+://", f"{driver}://", self.admin_url.rsplit("/", 1)[0] + f"/{database}")

    def create_database(self, prefix: str = "aq_test") -> str:
        """A new empty database; its URL (postgresql://...)."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        connection = _admin_connect(self.admin_url)
        try:
            connection.cursor().execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        self._created.append(name)
        return self.url(name)

    def drop_created_databases(self) -> None:
        connection = _admin_connect(self.admin_url)
        try:
            for name in self._created:
                connection.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            connection.close()
        self._created.clear()


class _LocalCluster:
    """initdb into a temp folder owned by the server user; pg_ctl start/stop."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="aqueduct-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if _is_root():
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(f"running as root but no '{SERVER_USER}' OS user to run PostgreSQL") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if _is_root():
            if shutil.which("runuser"):
                command = ["runuser", "-u", SERVER_USER, "--", *command]
            else:
                command = ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def init(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def start(self, port: int) -> bool:
        settings = {**_SERVER_SETTINGS, "port": str(port), "unix_socket_directories": str(self.root)}
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                         "-o", options, "start")  # fmt: skip
        return done.returncode == 0

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no server log)"


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the duration of the block (stopped with `pg_ctl stop -m fast`)."""
    external = os.environ.get("AQUEDUCT_TEST_POSTGRES_URL")
    if external:
        server = PostgresServer(external, external=True)
        try:
            yield server
        finally:
            server.drop_created_databases()
        return

    cluster = _LocalCluster(ensure_bin_dir())
    try:
        cluster.init()
        # The port is free when picked but may be taken before the server binds: retry.
        for _ in range(3):
            port = free_port()
            if cluster.start(port):
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start; server log:\n{cluster.log_tail()}")
        yield PostgresServer(f"postgresql://{SERVER_USER}@127.0.0.1:{port}/postgres")
    finally:
        cluster.stop()
