"""The built wheel, installed into a fresh virtualenv outside this checkout, runs a Blueprint.

What a new user does: `pip install` the wheel (with the constraints file) and `dagster-dg-cli`,
`aqueduct jars fetch`, `dg scaffold defs` the component, drop a Blueprint in, `dg launch`.
Nothing here reads the checkout but the sources the wheel is built from: the jars come from
Maven (the local ~/.m2) into a user cache, the code from the new environment's site-packages.

uv installs (as pip would, from the wheel's metadata and the constraints file, ~10x faster).
Dependencies come from PyPI except pyspark, which ships only as an sdist: pip's cache of the
wheel it built for the project's own venv is passed with --find-links, so it is not rebuilt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import platformdirs
import pyarrow.parquet as pq
import pytest
import yaml
from uv import find_uv_bin

from tests.support.dg_project import BLUEPRINT, write_data, write_dg_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
COMPONENT = "aqueduct_dagster.dagster.component.BlueprintsComponent"


class Steps:
    """Runs each step as a subprocess and keeps how long it took."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.seconds: dict[str, float] = {}

    def run(self, name: str, *command: str | Path, cwd: Path, timeout: float = 300) -> str:
        started = time.perf_counter()
        done = subprocess.run([str(c) for c in command], cwd=cwd, env=self.env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
        self.seconds[name] = round(time.perf_counter() - started, 1)
        assert done.returncode == 0, f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout


def build_wheel(work: Path, steps: Steps) -> Path:
    """The wheel of the package as it is on disk (committed or not), built in a copy."""
    source = work / "source"
    shutil.copytree(REPO / "aqueduct_dagster", source / "aqueduct_dagster",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    steps.run("build wheel", sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist",
              source, cwd=work)  # fmt: skip
    (wheel,) = (work / "dist").glob("aqueduct_dagster-*.whl")
    return wheel


def cached_pyspark_wheels() -> list[str]:
    """--find-links for the pyspark wheel pip built earlier, when its cache still has it."""
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "list", "pyspark", "--format=abspath"],
                          capture_output=True, text=True)  # fmt: skip
    folders = sorted({str(Path(line).parent) for line in done.stdout.split() if line.endswith(".whl")})
    return [option for folder in folders for option in ("--find-links", folder)]


def clean_env(work: Path, venv: Path) -> dict[str, str]:
    """This machine's environment without the checkout's settings, the new venv first on PATH.

    The user cache (the jars) is the test's own; uv keeps this machine's cache, which makes a
    second run of the install take seconds.
    """
    dropped = ("AQUEDUCT_", "VIRTUAL_ENV", "PYTHONPATH", "DAGSTER_HOME", "PYSPARK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.setdefault("UV_CACHE_DIR", str(platformdirs.user_cache_path("uv")))
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "XDG_CACHE_HOME": str(work / "cache"),
        "UV_NATIVE_TLS": "1",  # the system's certificate store, as pip uses
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": str(venv / "bin" / "python"),
    })  # fmt: skip
    return env


def test_wheel_installs_fetches_jars_scaffolds_and_materializes(tmp_path):
    started = time.perf_counter()
    work = tmp_path / "adopter"
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)
    venv = work / "venv"
    steps = Steps(clean_env(work, venv))
    wheel = build_wheel(work, steps)

    uv = find_uv_bin()
    steps.run("create venv", uv, "venv", "-q", "--python", sys.executable, venv, cwd=work)
    python = venv / "bin" / "python"
    steps.run("install", uv, "pip", "install", "-q", "--python", python, "-c", REPO / "constraints.txt",
              *cached_pyspark_wheels(), wheel, "dagster-dg-cli==1.13.27", cwd=work, timeout=900)  # fmt: skip
    installed_at = steps.run("import", python, "-c", "import aqueduct_dagster; print(aqueduct_dagster.__file__)",
                             cwd=work)  # fmt: skip
    assert Path(installed_at.strip()).is_relative_to(venv)

    fetched = steps.run("jars fetch", venv / "bin" / "aqueduct", "jars", "fetch", cwd=work)
    cache = work / "cache" / "aqueduct" / "jars"
    assert str(cache) in fetched
    assert steps.run("jars path", venv / "bin" / "aqueduct", "jars", "path", cwd=work).startswith(str(cache))

    project = write_dg_project(work / "lake")
    dg = venv / "bin" / "dg"
    steps.run("dg scaffold defs", dg, "scaffold", "defs", COMPONENT, "orders", cwd=project)
    component_dir = project / "my_lake" / "defs" / "orders"
    defs_yaml = yaml.safe_load((component_dir / "defs.yaml").read_text())
    assert defs_yaml == {"type": COMPONENT, "attributes": {"blueprints_dir": "blueprints"}}
    (component_dir / "blueprints" / "orders.yml").write_text(BLUEPRINT)
    data = write_data(project / "data")
    defs_yaml["attributes"].update({"context": {"data_dir": "data"}, "profile": "strict"})
    (component_dir / "defs.yaml").write_text(yaml.safe_dump(defs_yaml))

    steps.run("dg launch", dg, "launch", "--job", "orders", cwd=project, timeout=600)
    # `data` resolved against the folder the run started in; the profile kept amount > 8 only
    assert pq.read_table(data / "orders_clean").to_pydict() == {"order_id": [1], "amount": [10.5]}

    # Measured, not asserted (a busy machine is slower): shown with `pytest -s`.
    print(f"wheel adoption: {time.perf_counter() - started:.0f} s in all; steps (s): {steps.seconds}")
