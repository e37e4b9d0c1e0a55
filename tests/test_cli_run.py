"""`aqueduct run BLUEPRINT.yml` and `aqueduct run JOB`: a real Dagster run on real Spark,
one line per module, a summary, and the documented exit codes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main

BLUEPRINT = """
aqueduct: "1.0"
id: tiny
context:
  data_dir: data
  min_amount: 100
context_profiles:
  prod: {min_amount: 6}
modules:
  - id: src
    type: Ingress
    tags: ["mode:conditional"]
    config: {format: csv, path: "${ctx.data_dir}/in.csv", options: {header: "true", inferSchema: "true"}}
  - id: positive
    type: Channel
    config: {op: sql, query: "SELECT * FROM src WHERE amount > ${ctx.min_amount}"}
  - id: enough
    type: Assert
    config: {rules: [{type: min_rows, min: 1}]}
  - id: out
    type: Egress
    config: {format: parquet, path: "${ctx.data_dir}/out", mode: overwrite}
edges:
  - {from: src, to: positive}
  - {from: positive, to: enough}
  - {from: enough, to: out}
"""


def invoke(*args: str):
    return CliRunner().invoke(main, ["run", *args], catch_exceptions=False)


def data_at(project: Path) -> str:
    """`--ctx data_dir=` as an absolute path. A relative one resolves against the Spark JVM's
    working folder, which is where the run starts for `aqueduct run` (a new process) but
    where pytest started for the suite's shared JVM."""
    return f"data_dir={project / 'data'}"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder as the gallery ships one: blueprint.yml beside its data; the run starts there."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("id,amount\n1,10\n2,-1\n3,5\n")
    (tmp_path / "blueprint.yml").write_text(textwrap.dedent(BLUEPRINT))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("AQUEDUCT_BLUEPRINTS_DIR", raising=False)
    monkeypatch.delenv("AQUEDUCT_STATE_DIR", raising=False)
    return tmp_path


def _rows(folder: Path) -> list[int]:
    return sorted(pq.read_table(folder).column("id").to_pylist())


# ------------------------------------------------------------------ real runs (Spark)


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_run_a_blueprint_file_with_a_context_override(spark, project):
    result = invoke("blueprint.yml", "--ctx", "min_amount=0", "--ctx", data_at(project), "--tags", "team=data")
    assert result.exit_code == 0, result.output
    assert "DAGSTER_HOME is not set" in result.stderr  # the one-line warning, then the run
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["ok", "src"] for line in lines), result.stdout
    assert any(line.split()[:2] == ["ok", "out"] for line in lines), result.stdout
    assert "SUCCESS" in lines[-1] and "3 succeeded, 0 failed, 0 skipped" in lines[-1]
    assert _rows(project / "data" / "out") == [1, 3]


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_run_a_job_of_the_blueprints_folder_on_dagster_home(spark, project, monkeypatch):
    folder = project / "blueprints"
    folder.mkdir()
    (project / "blueprint.yml").rename(folder / "tiny.yml")
    (folder / "broken.yml").write_text('aqueduct: "1.0"\nid: broken\nmodules: [{id: a, type: Nope}]\n')
    home = project / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))

    result = invoke("tiny", "--profile", "prod", "--ctx", data_at(project), "--tags", "team=data")

    assert result.exit_code == 0, result.output
    assert "DAGSTER_HOME is not set" not in result.output
    assert _rows(project / "data" / "out") == [1]  # the profile's min_amount: 6
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.job_name == "tiny" and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["team"] == "data"
    assert run.run_id in result.stdout.splitlines()[-1]


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_a_failing_run_exits_1_and_names_the_module(spark, project):
    result = invoke("blueprint.yml", "--ctx", data_at(project))  # min_amount 100: the Assert aborts
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if line.split()[:1] == ["FAILED"]]
    assert failed and failed[0].split()[1].startswith("positive"), result.stdout
    assert "FAILURE" in result.stdout.splitlines()[-1]
    assert "1 failed" in result.stdout.splitlines()[-1]
    assert not (project / "data" / "out").exists()  # the Egress never wrote


# ------------------------------------------------------------------ bad input, no Spark


def test_an_invalid_blueprint_file_exits_2_with_its_location(project):
    (project / "blueprint.yml").write_text('aqueduct: "1.0"\nid: x\nmodules:\n  - {id: a, type: Ingress, confg: {}}\n')
    result = invoke("blueprint.yml")
    assert result.exit_code == 2
    assert "blueprint.yml:4" in result.stderr and "confg" in result.stderr


def test_a_missing_file_and_an_unknown_job_exit_2(project):
    assert invoke("nope.yml").exit_code == 2
    folder = project / "blueprints"
    folder.mkdir()
    (project / "blueprint.yml").rename(folder / "tiny.yml")
    result = invoke("tinny")
    assert result.exit_code == 2
    assert "no job 'tinny'" in result.stderr and "did you mean 'tiny'" in result.stderr


def test_a_bad_tag_or_context_option_exits_2(project):
    assert invoke("blueprint.yml", "--tags", "no-equals-sign").exit_code == 2
    assert invoke("blueprint.yml", "--tags", "a/b/c=1").exit_code == 2
    assert invoke("blueprint.yml", "--ctx", "nope").exit_code == 2


def test_dagster_home_that_is_not_a_folder_exits_3(project, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(project / "missing"))
    result = invoke("blueprint.yml")
    assert result.exit_code == 3 and "DAGSTER_HOME" in result.stderr


def test_a_bad_aqueduct_yml_exits_2_before_any_run(project):
    (project / "aqueduct.yml").write_text("agnet: {}\n")
    result = invoke("blueprint.yml")
    assert result.exit_code == 2 and "aqueduct.yml:1" in result.stderr and "agent" in result.stderr
