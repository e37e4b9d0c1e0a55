"""Spark Connect addresses (`sc://host:port`): recognising one, and failing fast when nothing
answers there."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from aqueduct_dagster.errors import ConfigError

CONNECT_SCHEME = "sc://"
_CONNECT_DEFAULT_PORT = 15002


def is_connect_url(master: str | None) -> bool:
    return bool(master) and str(master).startswith(CONNECT_SCHEME)


class SparkConnectUnavailable(ConfigError):
    """The configured Spark Connect server does not answer."""

    transient = True


def connect_address(url: str) -> tuple[str, int]:
    """(host, port) of an `sc://host[:port][/;params]` URL."""
    parts = urlsplit(url.split(";", 1)[0])
    return parts.hostname or "localhost", parts.port or _CONNECT_DEFAULT_PORT


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast when nothing listens at `url`: the Connect client itself retries for minutes."""
    host, port = connect_address(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise SparkConnectUnavailable(
            f"the Spark Connect server {url} does not answer ({error.strerror or error})",
            hint="start the project's server with `aqueduct spark up` (and set "
            "engine.spark.master_url: managed), or fix engine.spark.master_url / "
            "AQUEDUCT_SPARK_MASTER",
        ) from None
