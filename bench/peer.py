"""The peer: the benchmark pipeline run by aqueduct-core 2.3.0 (PyPI) in a virtualenv of its own.

    python bench/peer.py --data bench/data/tiny --out /tmp/peer-out   # set up, run once

bench/run.py times it beside ours and the hand-written script (`--peer`, on by default), as
`aqueduct run <blueprint>` in a fresh process per repeat. The virtualenv (bench/.peer-venv,
gitignored) is made once: aqueduct-core 2.3.0 with its own dependencies, then pyspark and
delta-spark pinned to the versions this project runs on wherever the peer's `spark` extra
allows them, so that all three pipelines run on the same Spark.

The peer's Blueprint is bench/blueprints/bench_orders.yml itself when the peer accepts it;
otherwise ours with the fewest changes the peer asks for, each one recorded (2.3.0 requires a
`label` on every module). The paths come in as `--ctx` values: the peer's `@aq.env` takes no
default. Its aqueduct.yml gives it the Spark settings the hand-written script uses (master,
Delta jars, shuffle partitions), so the comparison measures the frameworks, not the tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import yaml
from handwritten import spark_conf
from packaging.requirements import Requirement

BENCH = Path(__file__).resolve().parent
PEER_REQUIREMENT = "aqueduct-core==2.3.0"
PEER_DISTRIBUTION = "aqueduct-core"
PEER_VENV = BENCH / ".peer-venv"
#: Written last when the virtualenv is complete: what it holds, so a change rebuilds it.
READY_MARKER = "bench-peer.json"
#: Our Spark stack, which the peer gets too where its requirements allow.
SPARK_DISTRIBUTIONS = ("pyspark", "delta-spark")
OUR_BLUEPRINT = BENCH / "blueprints" / "bench_orders.yml"
MASTER = "local[2]"


class PeerUnavailable(RuntimeError):
    """The peer cannot be set up or refuses the pipeline; the message says why."""


@dataclass(frozen=True)
class PeerEnvironment:
    python: Path
    aqueduct: Path
    #: distribution -> installed version (the peer, pyspark, delta-spark)
    versions: dict[str, str]
    #: where the peer's Spark stack differs from ours, and why
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PeerSetup:
    """A peer ready to run the benchmark pipeline from `workdir`."""

    environment: PeerEnvironment
    workdir: Path
    blueprint: Path
    config: Path
    blueprint_unchanged: bool
    #: what `aqueduct validate` said about our Blueprint as it is (None: accepted)
    rejection_of_ours: str | None
    adaptations: list[str]

    def describe(self) -> dict:
        return {
            "requirement": PEER_REQUIREMENT,
            "versions": self.environment.versions,
            "notes": self.environment.notes,
            "blueprint_unchanged": self.blueprint_unchanged,
            "rejection_of_ours": self.rejection_of_ours,
            "adaptations": self.adaptations,
        }

    def command(
        self, data: Path, out: Path, base_env: dict[str, str]
    ) -> tuple[list[str], dict[str, str]]:
        """`aqueduct run` of the peer's Blueprint on `data`, writing under `out`."""
        python = str(self.environment.python)
        # The peer reads nothing of ours: its settings come from its own aqueduct.yml.
        env = {k: v for k, v in base_env.items() if not k.startswith("AQUEDUCT_")}
        for key in ("VIRTUAL_ENV", "SPARK_HOME", "PYTHONPATH"):
            env.pop(key, None)
        env.update(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python)
        command = [
            str(self.environment.aqueduct),
            "run",
            str(self.blueprint),
            "--config",
            str(self.config),
            "--store-dir",
            str(self.workdir / "store"),
            "--ctx",
            f"data_dir={data.resolve()}",
            "--ctx",
            f"out_dir={out.resolve()}",
        ]
        return command, env


# --------------------------------------------------------------------------- the virtualenv


def ensure_peer_venv(venv: Path = PEER_VENV) -> PeerEnvironment:
    """The peer's virtualenv, made on first use; raises PeerUnavailable when it cannot be."""
    ours = {name: version(name) for name in SPARK_DISTRIBUTIONS}
    python, aqueduct = venv / "bin" / "python", venv / "bin" / "aqueduct"
    try:
        ready = json.loads((venv / READY_MARKER).read_text())
    except (OSError, ValueError):
        ready = {}
    if (
        ready.get("requirement") == PEER_REQUIREMENT
        and ready.get("ours") == ours
        and aqueduct.exists()
    ):
        return PeerEnvironment(python, aqueduct, ready["versions"], ready["notes"])

    print(
        f"peer: making {venv} ({PEER_REQUIREMENT}, pyspark/delta-spark as ours where allowed)",
        flush=True,
    )
    shutil.rmtree(venv, ignore_errors=True)
    _checked([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    _pip_install(python, [PEER_REQUIREMENT])
    pins, notes = _spark_pins(python, ours)
    _pip_install(python, pins)
    distributions = [PEER_DISTRIBUTION, *SPARK_DISTRIBUTIONS]
    versions = _ask_peer(python, f"{{d: m.version(d) for d in {distributions!r}}}", "versions")
    (venv / READY_MARKER).write_text(
        json.dumps(
            {"requirement": PEER_REQUIREMENT, "ours": ours, "versions": versions, "notes": notes},
            indent=2,
        )
    )
    return PeerEnvironment(python, aqueduct, versions, notes)


def _spark_pins(python: Path, ours: dict[str, str]) -> tuple[list[str], list[str]]:
    """Requirements for the peer's Spark stack: our versions where its `spark` extra allows them."""
    requires = _ask_peer(python, f"m.requires({PEER_DISTRIBUTION!r})", "requirements")
    wanted = {}
    for text in requires or []:
        requirement = Requirement(text)
        if requirement.name in ours and (
            requirement.marker is None or requirement.marker.evaluate({"extra": "spark"})
        ):
            wanted[requirement.name] = requirement
    pins, notes = [], []
    for name, mine in ours.items():
        requirement = wanted.get(name)
        if requirement is None or requirement.specifier.contains(mine, prereleases=True):
            pins.append(f"{name}=={mine}")
        else:
            pins.append(f"{name}{requirement.specifier}")
            notes.append(
                f"{name}: the peer requires {requirement.specifier}, ours is {mine}; it gets its own"
            )
    return pins, notes


def _ask_peer(python: Path, expression: str, what: str):
    """The JSON value of `expression` (over importlib.metadata as `m`) in the peer's Python."""
    code = f"import json, importlib.metadata as m; print(json.dumps({expression}))"
    return json.loads(_checked([str(python), "-c", code], f"reading the peer's {what}"))


def _pip_install(python: Path, requirements: list[str]) -> None:
    _checked(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
        f"pip install {' '.join(requirements)}",
    )


def _checked(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PeerUnavailable(f"{what} failed: {error}") from error
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise PeerUnavailable(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout


# --------------------------------------------------------------------------- the pipeline


def prepare_peer(environment: PeerEnvironment, workdir: Path) -> PeerSetup:
    """Write the peer's aqueduct.yml and, when it rejects ours as is, its Blueprint."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "aqueduct.yml"
    # The hand-written script's settings, under the peer's own keys. Block YAML, not JSON: the
    # peer tells a config from a Blueprint by a line starting `aqueduct_config:`.
    settings = {
        "aqueduct_config": "2.0",
        "deployment": {"engine": "spark", "target": "local", "env": "local"},
        "engine": {"spark": {"master_url": MASTER, "conf": spark_conf(MASTER)}},
    }
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    _accepts(environment, config, workdir, "the peer's aqueduct.yml")
    rejection = _validation_errors(environment, OUR_BLUEPRINT, workdir)
    if rejection is None:
        return PeerSetup(environment, workdir, OUR_BLUEPRINT, config, True, None, [])
    blueprint = workdir / OUR_BLUEPRINT.name
    adaptations = write_peer_blueprint(OUR_BLUEPRINT, blueprint)
    _accepts(environment, blueprint, workdir, f"our Blueprint with {adaptations or 'no changes'}")
    return PeerSetup(environment, workdir, blueprint, config, False, rejection, adaptations)


def write_peer_blueprint(ours: Path, target: Path) -> list[str]:
    """Ours, with a `label` on every module (the peer requires one); returns what changed."""
    document = yaml.safe_load(ours.read_text())
    modules = document.get("modules", [])
    labelled = [module["id"] for module in modules if "label" not in module]
    # The label right after the id, where the peer's templates put it.
    document["modules"] = [
        module if "label" in module else {"id": module["id"], "label": module["id"], **module}
        for module in modules
    ]
    target.write_text(
        f"# Generated by bench/peer.py from {ours.name}: do not edit.\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    return (
        [f"added `label: <id>` to {len(labelled)} modules ({', '.join(labelled)})"]
        if labelled
        else []
    )


def _validation_errors(environment: PeerEnvironment, path: Path, workdir: Path) -> str | None:
    """What `aqueduct validate` says against `path`, or None when it accepts it."""
    done = subprocess.run(
        [str(environment.aqueduct), "validate", str(path)],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
    )
    if done.returncode == 0:
        return None
    return "\n".join(line.rstrip() for line in f"{done.stdout}\n{done.stderr}".strip().splitlines())


def _accepts(environment: PeerEnvironment, path: Path, workdir: Path, what: str) -> None:
    errors = _validation_errors(environment, path, workdir)
    if errors is not None:
        raise PeerUnavailable(f"aqueduct-core rejects {what}: {errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with orders/ and customers/"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder (daily_revenue/ goes in it)"
    )
    args = parser.parse_args(argv)
    try:
        setup = prepare_peer(ensure_peer_venv(), args.out / "peer-workdir")
    except PeerUnavailable as error:
        print(f"peer unavailable: {error}", file=sys.stderr)
        return 2
    print(json.dumps(setup.describe(), indent=2))
    command, env = setup.command(args.data, args.out, {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    started = time.perf_counter()
    returncode = subprocess.run(command, env=env, cwd=setup.workdir).returncode
    print(f"peer: exit {returncode} in {time.perf_counter() - started:.1f} s")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
