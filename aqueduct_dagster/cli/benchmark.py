"""`aqueduct benchmark`: heal the scenarios of a folder offline and grade each patch's effect.

Exit codes as in `aqueduct_dagster.cli`: 0 the benchmark ran (whatever it scored, unless
`--fail-under` says otherwise); 1 a healer scored under `--fail-under`; 2 bad input (a missing
folder, an invalid scenario, a malformed --model); 3 environment (config, Spark jars).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click

from aqueduct_dagster.errors import AqueductError, ConfigError
from aqueduct_dagster.healing.benchmark import (
    RULES,
    BenchmarkReport,
    llm_connection,
    run_benchmark,
)
from aqueduct_dagster.settings import Settings
from aqueduct_dagster.stores import default_store

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT = 1, 2, 3


@click.command("benchmark")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--healer", "healers", multiple=True, type=click.Choice(["rules"]),
              help="The offline rules (the default when no --model is given).")
@click.option("--model", "models", multiple=True, metavar="PROVIDER/NAME",
              help="An LLM healer, e.g. openai_compat/qwen2.5-coder:7b (repeatable).")
@click.option("--base-url", default=None, help="Endpoint for --model (OpenAI-compatible servers need /v1).")
@click.option("--timeout", type=float, default=None,
              help="Seconds per LLM call (default: aqueduct.yml agent.timeout).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="aqueduct.yml for the agent connection, budget and store (default: ./aqueduct.yml).")
@click.option("--execute", is_flag=True, help="Also run each healed pipeline on Spark with generated data.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None, metavar="PERCENT",
              help="Exit 1 when a healer passes fewer than PERCENT of the scenarios.")
@click.option("--no-store", is_flag=True, help="Do not record the results in the project store.")
def benchmark_command(path: Path, healers: tuple[str, ...], models: tuple[str, ...], base_url: str | None,
                      timeout: float | None, config_path: Path | None, execute: bool, as_json: bool,
                      fail_under: float | None, no_store: bool) -> None:  # fmt: skip
    """Heal every *.aqscenario.yml under PATH and grade the patches by their effect.

    Prints one row per scenario and healer (pass, attempts, tokens, seconds, stop reason);
    progress goes to stderr. Results are recorded in the project store.
    """


    chosen = ([RULES] if healers or not models else []) + list(models)
    run_id = uuid.uuid4().hex[:12]
    try:
        settings = Settings.resolve(config_path=config_path)
        connection = settings.config.agent.model_copy(deep=True)
        if base_url:
            connection.base_url = base_url
        if timeout is not None:
            connection.timeout = timeout
        for model in models:
            llm_connection(model, connection)  # a malformed --model is bad input before any work
        spark = settings.base_session(app_name="aqueduct-benchmark") if execute else None
        store = None
        if not no_store:
            store = default_store(settings.state_dir, settings.config)
        reports = [
            run_benchmark(path, healer=healer, connection=connection, execute=execute, spark=spark,
                          store=store, progress=lambda line: click.echo(line, err=True), run_id=run_id)  # fmt: skip
            for healer in chosen
        ]
    except ConfigError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_ENVIRONMENT)
    except AqueductError as error:
        click.secho(f"error: {error}", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    combined = BenchmarkReport(run_id, [r for report in reports for r in report.results])
    if as_json:
        click.echo(json.dumps(combined.to_dict(), indent=2, default=str))
    else:
        click.echo(combined.table())
        if store is not None:
            click.echo(f"recorded as run {combined.run_id} in {store.description} (aq_benchmark_results)", err=True)
    if fail_under is not None:
        short = {h: s for h, s in combined.summary().items() if 100 * s["passed"] < fail_under * s["total"]}
        if short:
            for healer, score in short.items():
                click.secho(f"{healer}: {score['passed']}/{score['total']} passed, under {fail_under:g}%",
                            fg="red", err=True)  # fmt: skip
            sys.exit(EXIT_FAILED)

