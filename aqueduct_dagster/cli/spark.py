"""`aqueduct spark up|down|status`: the project's managed Spark Connect server.

Runs and heals use it when `engine.spark.master_url` (aqueduct.yml or a Blueprint) or
AQUEDUCT_SPARK_MASTER is `managed`: no JVM cold start per run. Exit codes: 0 ok; 3 the
server could not be started, or (status) does not run healthy.
"""

from __future__ import annotations

import json
import sys
import time

import click

from aqueduct_dagster.engine.connect_server import (
    run_server_in_foreground,
    server_status,
    start_server,
    stop_server,
)
from aqueduct_dagster.engine.session import DEFAULT_MASTER
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.settings import current_settings

EXIT_ENVIRONMENT = 3


@click.group("spark")
def spark_command() -> None:
    """Start, stop and check the project's warm Spark (a Spark Connect server)."""


@spark_command.command("up")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--master", default=None, help="Spark master it runs on (default: local[2]).")
@click.option(
    "--timeout", type=float, default=180.0, show_default=True, help="Seconds to wait for it."
)
@click.option(
    "--foreground",
    is_flag=True,
    help="Stay in the foreground as the server's supervisor until SIGTERM/SIGINT (for "
    "systemd, Docker or supervisord: deploy/aqueduct-spark.service).",
)
def spark_up(port: int | None, master: str | None, timeout: float, foreground: bool) -> None:
    """Start the server in the background (or report the running one) and wait until it answers.

    It reads its JVM settings from aqueduct.yml's engine.spark.conf; relative paths in
    Blueprints resolve against the folder it was started in.
    """
    started = time.perf_counter()
    try:
        settings = current_settings()
        if foreground:
            click.echo(
                f"supervising the Spark Connect server of {settings.state_dir} in the foreground"
            )
            run_server_in_foreground(
                settings.state_dir,
                port=port,
                master=master or DEFAULT_MASTER,
                conf=dict(settings.spark_conf),
                jars_dir=settings.jars_dir,
            )
        info = start_server(
            settings.state_dir,
            port=port,
            master=master or DEFAULT_MASTER,
            conf=dict(settings.spark_conf),
            jars_dir=settings.jars_dir,
            timeout=timeout,
        )
    except AqueductError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_ENVIRONMENT)
    click.echo(
        f"Spark Connect server at {info.url} (supervisor pid {info.supervisor_pid}, "
        f"JVM pid {info.jvm_pid}), ready after {time.perf_counter() - started:.1f} s"
    )
    click.echo(f"log: {info.log}")
    click.echo("runs and heal sandboxes of this state folder use it by default (master `auto`)")


@spark_command.command("down")
def spark_down() -> None:
    """Stop the server and its supervisor."""
    if stop_server(current_settings().state_dir):
        click.echo("Spark Connect server stopped")
    else:
        click.echo("no Spark Connect server was running")


@spark_command.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def spark_status(as_json: bool) -> None:
    """Whether the server runs and answers (a real round trip); exit 3 when it does not."""
    status = server_status(current_settings().state_dir)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
    else:
        click.echo(status.detail)
        if status.info is not None:
            info = status.info
            click.echo(f"  url          {info.url}")
            supervisor = _alive(status.supervisor_alive)
            click.echo(f"  supervisor   pid {info.supervisor_pid} ({supervisor})")
            click.echo(f"  JVM          pid {info.jvm_pid} ({_alive(status.jvm_alive)})")
            click.echo(f"  restarts     {info.restarts}")
            click.echo(f"  log          {info.log}")
    if not status.healthy:
        sys.exit(EXIT_ENVIRONMENT)


def _alive(alive: bool) -> str:
    return "alive" if alive else "gone"
