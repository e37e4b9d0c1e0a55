"""`aqueduct doctor`: one line per check, and each failing check says why in that line."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli.doctor import doctor_command
from tests.support.postgres import free_port

REPO = Path(__file__).resolve().parents[1]

BLUEPRINT = """\
aqueduct: "1.0"
id: tiny
name: Tiny
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{input}", header: true}}
  - id: clean
    type: Channel
    config: {{op: sql, query: "SELECT * FROM raw WHERE amount > 0"}}
edges:
  - {{from: raw, to: clean}}
"""


@dataclass
class Project:
    root: Path
    env: dict[str, str | None] = field(default_factory=dict)

    def write_config(self, text: str) -> Path:
        path = self.root / "aqueduct.yml"
        path.write_text(text)
        return path


@dataclass
class Outcome:
    exit_code: int
    output: str
    checks: list[tuple[str, str, str]]

    def failed(self) -> dict[str, str]:
        return {check: detail for status, check, detail in self.checks if status == "FAIL"}

    def line(self, check: str) -> tuple[str, str]:
        return next((status, detail) for status, name, detail in self.checks if name == check)


class _ModelsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def llm_endpoint():
    """A local server that answers GET /v1/models like an OpenAI-compatible endpoint."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def dagster_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def project(tmp_path, monkeypatch, dagster_home, llm_endpoint) -> Project:
    """A healthy project: one Blueprint whose input exists, an LLM endpoint that answers."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "orders.csv").write_text("order_id,amount\n1,2.5\n")
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "blueprints" / "tiny.yml").write_text(BLUEPRINT.format(input=tmp_path / "data" / "orders.csv"))
    monkeypatch.chdir(tmp_path)
    project = Project(tmp_path, {
        "DAGSTER_HOME": str(dagster_home),
        "AQUEDUCT_STATE_DIR": str(tmp_path / "state"),
        "AQUEDUCT_CONFIG": None,
        "AQUEDUCT_BLUEPRINTS_DIR": None,
    })  # fmt: skip
    project.write_config(f"agent:\n  provider: openai_compat\n  model: tiny\n  base_url: {llm_endpoint}\n")
    return project


def doctor(project: Project, *, spark: bool = False, env: dict[str, str | None] | None = None) -> Outcome:
    """Run the command (without Spark unless asked) and split its lines into (status, check, detail)."""
    args = [] if spark else ["--no-spark"]
    result = CliRunner().invoke(doctor_command, args, env={**project.env, **(env or {})})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    checks = []
    for line in result.output.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "FAIL", "skip"):
            checks.append((parts[0], parts[1], parts[2]))
    return Outcome(result.exit_code, result.output, checks)


def test_healthy_project_without_spark(project):
    outcome = doctor(project)
    assert outcome.exit_code == 0, outcome.output
    assert [name for _, name, _ in outcome.checks] == [
        "config", "blueprint", "input", "java", "jars", "spark", "store", "llm", "dagster"]  # fmt: skip
    assert {status for status, name, _ in outcome.checks if name != "spark"} == {"ok"}
    assert outcome.line("spark") == ("skip", "--no-spark")
    assert outcome.line("blueprint")[1] == "blueprints/tiny.yml (tiny: 2 modules)"
    assert "HTTP 200" in outcome.line("llm")[1]
    assert "aqueduct.duckdb" in outcome.line("store")[1]


def test_json_output_and_bad_blueprint_location(project):
    bad = project.root / "blueprints" / "bad.yml"
    bad.write_text('aqueduct: "1.0"\nid: x\nname: x\nmodules:\n  - id: a\n    type: Ingres\n')
    result = CliRunner().invoke(doctor_command, ["--no-spark", "--json"], env=project.env)
    assert result.exit_code == 3
    payload = json.loads(result.output)
    assert payload["ok"] is False
    failed = [c for c in payload["checks"] if c["status"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["check"] == "blueprint"
    assert failed[0]["detail"].startswith(f"{Path('blueprints') / 'bad.yml'}:6") and "Ingress" in failed[0]["detail"]


def test_missing_input_path(project):
    (project.root / "data" / "orders.csv").unlink()
    outcome = doctor(project)
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"input"}
    detail = outcome.failed()["input"]
    assert detail.startswith("blueprints/tiny.yml:")
    assert f"tiny.raw: {project.root}/data/orders.csv does not exist" in detail


def test_jars_missing_also_skips_spark(project, tmp_path):
    (tmp_path / "no-jars").mkdir()
    outcome = doctor(project, spark=True, env={"AQUEDUCT_JARS_DIR": str(tmp_path / "no-jars")})
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"jars"}
    assert f"no jars in {tmp_path / 'no-jars'} (AQUEDUCT_JARS_DIR)" in outcome.failed()["jars"]
    assert outcome.line("spark") == ("skip", "needs Java and the jars (see above)")


@pytest.mark.parametrize("java", ["missing", "java 11"])
def test_java_missing_or_unsupported(project, tmp_path, java):
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    if java == "java 11":
        fake = home / "bin" / "java"
        fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
        fake.chmod(0o755)
    outcome = doctor(project, env={"JAVA_HOME": str(home), "PATH": str(tmp_path / "jdk")})
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"java"}
    expected = f"no java executable (JAVA_HOME={home})" if java == "missing" else "Java 11.0.2 at"
    assert outcome.failed()["java"].startswith(expected)
    assert "Java 17 or 21" in outcome.failed()["java"]


def test_store_not_writable(project):
    (project.root / "occupied").write_text("a file where the state folder should be")
    outcome = doctor(project, env={"AQUEDUCT_STATE_DIR": str(project.root / "occupied" / "state")})
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"store"}
    assert outcome.failed()["store"].startswith("the store is not writable:")
    assert str(project.root / "occupied" / "state") in outcome.failed()["store"]


def test_postgres_store_unreachable_names_host_and_port(project):
    port = free_port()
    project.write_config(f"stores:\n  observability:\n    backend: postgres\n"
                         f"    url: postgresql://aq:pw-secret@127.0.0.1:{port}/aq\n")  # fmt: skip
    outcome = doctor(project)
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"store"}
    assert f"at 127.0.0.1:{port}" in outcome.failed()["store"] and "pw-secret" not in outcome.output


def test_llm_endpoint_unreachable(project):
    port = free_port()  # closed: nothing listens
    project.write_config(f"agent:\n  provider: openai_compat\n  model: tiny\n  base_url: http://127.0.0.1:{port}/v1\n")
    outcome = doctor(project)
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"llm"}
    assert outcome.failed()["llm"].startswith(f"openai_compat at http://127.0.0.1:{port}/v1 unreachable:")
    assert "refused" in outcome.failed()["llm"].lower()


def test_dagster_home_unset(project):
    outcome = doctor(project, env={"DAGSTER_HOME": None})
    assert outcome.exit_code == 3 and set(outcome.failed()) == {"dagster"}
    assert outcome.failed()["dagster"].startswith("DAGSTER_HOME is not set")


def test_bad_options_exit_2(project):
    assert CliRunner().invoke(doctor_command, ["--blueprints", "nowhere"], env=project.env).exit_code == 2
    assert CliRunner().invoke(doctor_command, ["--config", "missing.yml"], env=project.env).exit_code == 2


@pytest.mark.spark
def test_spark_check_reuses_the_running_session(project, spark):
    outcome = doctor(project, spark=True)
    assert outcome.exit_code == 0, outcome.output
    status, detail = outcome.line("spark")
    from aqueduct_dagster.engine.session import connect_url_of, is_connect

    how = "reused the running session"
    if is_connect(spark):
        how = f"Spark Connect server {connect_url_of(spark)}"
    assert status == "ok" and detail.startswith(f"{how}; range(1).count() = 1 in")
    assert spark.range(2).count() == 2  # the suite's session is still usable


def test_a_typo_in_aqueduct_yml_fails_the_config_check(project):
    project.write_config("agnet:\n  provider: openai_compat\n")
    outcome = doctor(project)
    assert outcome.exit_code == 3
    status, detail = outcome.line("config")
    assert status == "FAIL"
    assert "aqueduct.yml:1:1: unknown key 'agnet' (did you mean 'agent'?)" in detail
