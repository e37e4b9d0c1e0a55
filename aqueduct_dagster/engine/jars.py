"""The JVM jars Spark needs beyond pyspark's own (Delta Lake, JDBC drivers): where they are.

They are resolved once with Maven from the pom shipped in the package (`aqueduct jars fetch`)
into a per-user cache folder named after the pom's digest, so an upgrade that changes the jars
never starts Spark with the old ones. A source checkout's `.jars/` (`make jars`) wins over the
cache, and a configured folder (AQUEDUCT_JARS_DIR, resolved by `aqueduct_dagster.settings` and
passed in) over both. Nothing is resolved from Maven at run time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import platformdirs

from aqueduct_dagster.errors import ConfigError, EnvironmentProblem

#: The Maven project listing the jars; package data, so an installed wheel has it.
PACKAGED_POM = Path(__file__).resolve().parents[1] / "jvm" / "pom.xml"
#: `make jars` fills this in a source checkout; in an installed wheel it does not exist.
CHECKOUT_JARS = Path(__file__).resolve().parents[2] / ".jars"
_FETCH_HINT = "run `aqueduct jars fetch` once (in a source checkout `make jars` does it)"


def cache_jars_dir() -> Path:
    """The per-user folder `aqueduct jars fetch` fills (XDG_CACHE_HOME is honoured)."""
    digest = hashlib.sha256(PACKAGED_POM.read_bytes()).hexdigest()[:12]
    return platformdirs.user_cache_path("aqueduct") / "jars" / digest


def jars_dir(configured: Path | None = None) -> Path:
    """The folder of jars Spark gets via `spark.jars`: `configured` (Settings.jars_dir, from
    AQUEDUCT_JARS_DIR), else a checkout's `.jars/`, else the user cache."""
    if configured:
        folder, source = Path(configured).expanduser(), "AQUEDUCT_JARS_DIR"
    elif any(CHECKOUT_JARS.glob("*.jar")):
        folder, source = CHECKOUT_JARS, "the checkout's jars folder"
    else:
        folder, source = cache_jars_dir(), "the user cache"
    if not folder.is_dir() or not any(folder.glob("*.jar")):
        raise ConfigError(
            f"no jars in {folder} ({source}); Spark needs the Delta Lake and JDBC jars",
            hint=f"{_FETCH_HINT}, or point AQUEDUCT_JARS_DIR at a folder that holds them",
        )
    if not any(folder.glob("delta-spark_*.jar")):
        raise ConfigError(
            f"{folder} holds no delta-spark jar",
            hint=f"{_FETCH_HINT}; {PACKAGED_POM} lists the jars the engine needs",
        )
    return folder


def missing_jars(folder: Path) -> list[str]:
    """The pom's direct dependencies (`artifactId-version.jar`) that `folder` lacks: stale jars
    from an older release, or a hand-filled folder missing a driver."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ElementTree.parse(PACKAGED_POM).getroot()
    wanted = [
        f"{dep.findtext('m:artifactId', namespaces=ns)}-{dep.findtext('m:version', namespaces=ns)}.jar"
        for dep in root.iterfind("m:dependencies/m:dependency", ns)
    ]
    return [name for name in wanted if not (folder / name).is_file()]


def fetch_jars(dest: Path | None = None, *, offline: bool = False) -> Path:
    """Resolve the pom's jars with Maven into `dest` (default: the user cache), replacing the
    jars already there.

    Maven works on a copy of the pom in a temporary folder (an installed package may be
    read-only), and the jars land in a sibling staging folder moved into place only once
    Maven succeeded, so a failed fetch never leaves a half-filled folder.
    """
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EnvironmentProblem(
            "Maven (mvn) is not on the PATH; it resolves the Delta Lake and JDBC jars",
            hint=f"install Maven 3, or put the jars {PACKAGED_POM} lists in a folder and set AQUEDUCT_JARS_DIR",
        )
    dest = Path(dest).expanduser().resolve() if dest else cache_jars_dir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with tempfile.TemporaryDirectory(prefix="aqueduct-maven-") as work:
            pom = Path(shutil.copy(PACKAGED_POM, Path(work) / "pom.xml"))
            command = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                       f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]  # fmt: skip
            done = subprocess.run([*command, *(["-o"] if offline else [])], capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            raise EnvironmentProblem(
                f"Maven could not resolve the jars (exit {done.returncode}):\n{tail}",
                hint="check that Maven Central (or your mirror in ~/.m2/settings.xml) is reachable",
            )
        if not dest.exists():
            staging.rename(dest)
        else:  # only jars are replaced: --dest may name a folder that holds other files
            for old in dest.glob("*.jar"):
                old.unlink()
            for jar in staging.glob("*.jar"):
                jar.rename(dest / jar.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
