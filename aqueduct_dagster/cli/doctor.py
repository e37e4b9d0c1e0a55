"""`aqueduct doctor`: check that this machine can compile, run and heal the project's Blueprints.

Each check prints one line, `ok|FAIL|skip  <check>  <detail>`, and a failing line says what
to fix. Exit 0 when nothing failed, 3 (environment) when a check failed, 2 for bad options.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import click
import dagster as dg
from pyspark import SparkContext

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.functions import SECRET_TOKEN
from aqueduct_dagster.config import AqueductConfig, resolve_setting
from aqueduct_dagster.dagster.factory import find_blueprint_files
from aqueduct_dagster.engine.connect_server import find_java
from aqueduct_dagster.engine.jars import jars_dir, missing_jars
from aqueduct_dagster.engine.session import connect_url_of, is_connect
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.settings import Settings, current_settings
from aqueduct_dagster.stores import DuckDBStore, PostgresStore, default_store

EXIT_ENVIRONMENT = 3
SUPPORTED_JAVA = (17, 21)
LLM_TIMEOUT_SECONDS = 3.0

#: What the LLM clients use when aqueduct.yml names a provider but no base_url.
_DEFAULT_LLM_URLS = {
    "anthropic": ("ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1"),
    "openai": ("OPENAI_BASE_URL", "https://api.openai.com/v1"),
}

Status = Literal["ok", "FAIL", "skip"]


@dataclass(frozen=True)
class CheckResult:
    status: Status
    check: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.check:<9}  {self.detail}"


def _one_line(error: BaseException | str) -> str:
    """An error as one line: its location, message and hint joined."""
    return " ".join(part.strip() for part in str(error).splitlines() if part.strip())


# --------------------------------------------------------------------------- checks


def check_config(config_path: Path | None) -> tuple[CheckResult, Settings | None]:
    try:
        settings = Settings.resolve(config_path=config_path)
    except AqueductError as error:
        return CheckResult("FAIL", "config", _one_line(error)), None
    source = str(settings.config_path or "no aqueduct.yml here: defaults")
    return CheckResult("ok", "config", source), settings


def check_blueprints(folder: Path) -> tuple[list[CheckResult], list]:
    """Each Blueprint file compiles; returns the results and the compiled Manifests."""
    try:
        files = find_blueprint_files(folder)
    except AqueductError as error:
        return [CheckResult("FAIL", "blueprint", _one_line(error))], []
    if not files:
        return [CheckResult("skip", "blueprint", f"no Blueprint files in {folder}")], []
    results, manifests = [], []
    for path in files:
        try:
            manifest = compile_blueprint(path)
        except AqueductError as error:
            results.append(CheckResult("FAIL", "blueprint", _one_line(error)))
        except Exception as error:  # noqa: BLE001 - a bug in the compiler must not stop the doctor
            results.append(CheckResult("FAIL", "blueprint", f"{path}: {type(error).__name__}: {_one_line(error)}"))
        else:
            manifests.append(manifest)
            summary = f"{path} ({manifest.blueprint_id}: {len(manifest.modules)} modules)"
            results.append(CheckResult("ok", "blueprint", summary))
    return results, manifests


_TEMPLATED = re.compile(r"@aq\.|\$\{|\{\{")
_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def check_inputs(manifests: list) -> list[CheckResult]:
    """The local paths Ingress modules read exist (templated and remote paths are skipped)."""
    results = []
    for manifest in manifests:
        for module in manifest.modules.values():
            path = getattr(module.config, "path", None) if module.reads_source else None
            if not path:
                continue
            name = f"{manifest.blueprint_id}.{module.id}"
            if _TEMPLATED.search(path):
                results.append(CheckResult("skip", "input", f"{name}: {path} is resolved at run time"))
                continue
            if _REMOTE.match(path) and not path.startswith("file:"):
                results.append(CheckResult("skip", "input", f"{name}: {path} is remote"))
                continue
            local = re.sub(r"^file:(//)?", "", path)
            found = glob.glob(local) if glob.has_magic(local) else ([local] if os.path.exists(local) else [])
            if found:
                results.append(CheckResult("ok", "input", f"{name}: {path}"))
            else:
                where = f"{module.location}: " if module.location else ""
                results.append(CheckResult(
                    "FAIL", "input", f"{where}{name}: {path} does not exist (relative paths start at {os.getcwd()})"
                ))  # fmt: skip
    return results


def check_java() -> CheckResult:
    java, source = find_java()
    if java is None:
        return CheckResult("FAIL", "java", f"no java executable ({source}); install Java 17 or 21 and set JAVA_HOME")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return CheckResult("FAIL", "java", f"{java} -version failed: {_one_line(error)}")
    match = re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', done.stderr + done.stdout)
    if not match:
        return CheckResult("FAIL", "java", f"cannot read the version from `{java} -version`")
    major = int(match.group(2)) if match.group(1) == "1" else int(match.group(1))  # "1.8.0" is Java 8
    version = match.group(0).split('"')[1]
    if major not in SUPPORTED_JAVA:
        return CheckResult("FAIL", "java", f"Java {version} at {java}; Spark 4.2 needs Java 17 or 21 (set JAVA_HOME)")
    return CheckResult("ok", "java", f"Java {version} ({java})")


def check_jars(settings: Settings | None = None) -> CheckResult:
    try:
        folder = jars_dir((settings or current_settings()).jars_dir)
    except AqueductError as error:
        return CheckResult("FAIL", "jars", _one_line(error))
    missing = missing_jars(folder)
    if missing:
        return CheckResult(
            "FAIL", "jars", f"{folder} lacks {', '.join(missing)} (this release's jars): run `aqueduct jars fetch`"
        )
    delta = sorted(p.name for p in folder.glob("delta-spark_*.jar"))
    return CheckResult("ok", "jars", f"{len(list(folder.glob('*.jar')))} jars in {folder} ({delta[0]})")


def check_spark(settings: Settings) -> CheckResult:
    reused = SparkContext._active_spark_context is not None
    started = time.perf_counter()
    session = None
    try:
        session = settings.base_session(app_name="aqueduct-doctor")
        if is_connect(session):
            reused = True  # a session on a server others use: never the doctor's to stop
            how = f"Spark Connect server {connect_url_of(session)}"
        else:
            how = "reused the running session" if reused else f"started {session.sparkContext.master}"
        count = session.range(1).count()
    except Exception as error:  # noqa: BLE001 - any failure to start is what we report
        return CheckResult("FAIL", "spark", f"Spark did not start: {_one_line(error)[:500]}")
    finally:
        # Stop only a session the doctor started; a running one belongs to someone else.
        if session is not None and not reused:
            session.stop()
    seconds = time.perf_counter() - started
    return CheckResult("ok", "spark", f"{how}; range(1).count() = {count} in {seconds:.1f} s")


def check_store(settings: Settings) -> CheckResult:
    try:
        store = default_store(settings.state_dir, settings.config)
        if isinstance(store, PostgresStore):
            return CheckResult("ok", "store", f"{store.description} ({store.check_connection()})")
        if isinstance(store, DuckDBStore):
            return CheckResult("ok", "store", f"{store.description} {_duckdb_writable(store.path)}")
        store.migrate()
        return CheckResult("ok", "store", store.description)
    except AqueductError as error:
        return CheckResult("FAIL", "store", _one_line(error))
    except OSError as error:
        return CheckResult("FAIL", "store", f"the store is not writable: {_one_line(error)}")


def _duckdb_writable(path: Path) -> str:
    # No DuckDB connection: another process (the daemon) may hold the file's lock right now,
    # and the store retries that for seconds. Writing beside the file answers the question.
    if path.is_dir():
        raise OSError(f"{path} is a folder, not a DuckDB file")
    if path.exists():
        with open(path, "r+b"):
            pass
        return "(writable)"
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".aqueduct-doctor-"):
        pass
    return "(folder writable; created on first use)"


def check_llm(config) -> CheckResult:
    agent = config.agent
    if not agent.provider and not agent.base_url:
        return CheckResult("skip", "llm", "no agent.provider in aqueduct.yml (LLM healing is off)")
    try:
        base_url = resolve_setting(agent.base_url)
    except AqueductError as error:
        return CheckResult("FAIL", "llm", f"agent.base_url: {_one_line(error)}")
    if not base_url:
        variable, default = _DEFAULT_LLM_URLS.get(agent.provider or "", _DEFAULT_LLM_URLS["openai"])
        base_url = os.environ.get(variable) or default
    # A URL given as a secret is shown as its token; otherwise without credentials or query.
    shown = agent.base_url if agent.base_url and SECRET_TOKEN.search(agent.base_url) else _public(base_url)
    url = base_url.rstrip("/") + "/models"
    request = urllib.request.Request(url, headers={"User-Agent": "aqueduct-doctor"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=LLM_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code  # any HTTP answer means the endpoint is there
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            reason = f"no answer within {LLM_TIMEOUT_SECONDS:g} s"
        return CheckResult("FAIL", "llm", f"{agent.provider or 'endpoint'} at {shown} unreachable: {reason}")
    seconds = time.perf_counter() - started
    answer = f"answered HTTP {status} in {seconds:.2f} s"
    return CheckResult("ok", "llm", f"{agent.provider or 'endpoint'} at {shown} {answer}")


def _public(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


def check_dagster(home: Path | None) -> CheckResult:
    if not home:
        return CheckResult("FAIL", "dagster", "DAGSTER_HOME is not set: runs would go to a temporary instance "
                           "the sensors never see; export DAGSTER_HOME (make dev uses .dagster_home)")  # fmt: skip
    folder = Path(home)
    if not folder.is_dir():
        return CheckResult("FAIL", "dagster", f"DAGSTER_HOME={home} is not a folder; "
                           "create it and copy dagster.yaml there")  # fmt: skip

    try:
        instance = dg.DagsterInstance.from_config(str(folder))
    except Exception as error:  # noqa: BLE001 - an invalid dagster.yaml or unreachable storage
        return CheckResult("FAIL", "dagster", f"{folder / 'dagster.yaml'}: {_one_line(error)[:500]}")
    try:
        storage = type(instance.run_storage).__name__
    finally:
        instance.dispose()
    yaml_note = "" if (folder / "dagster.yaml").is_file() else ", no dagster.yaml: Dagster defaults"
    return CheckResult("ok", "dagster", f"DAGSTER_HOME={home} ({storage}{yaml_note})")


def run_checks(blueprints: Path | None, config_path: Path | None, spark: bool) -> Iterator[CheckResult]:
    """`blueprints` default to the settings' folder (AQUEDUCT_BLUEPRINTS_DIR, else blueprints)."""
    config_result, loaded = check_config(config_path)
    yield config_result
    # A broken aqueduct.yml is reported above; the other checks go on with the environment and defaults.
    settings = loaded or Settings.resolve(config=AqueductConfig())
    blueprint_results, manifests = check_blueprints(blueprints or settings.blueprints_dir)
    yield from blueprint_results
    yield from check_inputs(manifests)
    java, jars = check_java(), check_jars(settings)
    yield java
    yield jars
    if not spark:
        yield CheckResult("skip", "spark", "--no-spark")
    elif "FAIL" in (java.status, jars.status):
        yield CheckResult("skip", "spark", "needs Java and the jars (see above)")
    else:
        yield check_spark(settings)
    if loaded is None:
        yield CheckResult("skip", "store", "aqueduct.yml did not load")
        yield CheckResult("skip", "llm", "aqueduct.yml did not load")
    else:
        yield check_store(loaded)
        yield check_llm(loaded.config)
    yield check_dagster(settings.dagster_home)


# --------------------------------------------------------------------------- command


@click.command("doctor")
@click.option("--blueprints", "blueprints", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of Blueprints (default: $AQUEDUCT_BLUEPRINTS_DIR, else blueprints).")  # fmt: skip
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="aqueduct.yml to check (default: $AQUEDUCT_CONFIG, else ./aqueduct.yml).")  # fmt: skip
@click.option("--no-spark", is_flag=True, help="Skip starting Spark (the slowest check).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
def doctor_command(blueprints: Path | None, config_path: Path | None, no_spark: bool, as_json: bool) -> None:
    """Check this machine: Blueprints, inputs, Java, jars, Spark, stores, LLM, Dagster."""
    results = []
    for result in run_checks(blueprints, config_path, spark=not no_spark):
        results.append(result)
        if not as_json:
            click.secho(result.line(), fg={"ok": "green", "FAIL": "red"}.get(result.status))
    failed = [r for r in results if r.status == "FAIL"]
    if as_json:
        payload = {"ok": not failed, "checks": [asdict(r) for r in results]}
        click.echo(json.dumps(payload, indent=2))
    elif failed:
        click.secho(f"{len(failed)} check(s) failed", fg="red", err=True)
    sys.exit(EXIT_ENVIRONMENT if failed else 0)
