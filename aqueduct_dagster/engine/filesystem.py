"""File operations where Spark reads and writes: `spark_path(spark, path)` picks how.

On a classic session they go through Hadoop's FileSystem, the API Spark itself uses, with the
session's Hadoop configuration (credentials included): local paths, HDFS and object stores
alike. A Spark Connect client has no JVM to ask; when its server runs on this machine (the
managed one does), local paths are handled with the local filesystem. Other filesystems
behind a Connect server are out of reach and raise AQ_CONNECT_FILESYSTEM.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aqueduct_dagster.engine.connect_url import connect_address
from aqueduct_dagster.engine.errors import ConditionError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def spark_path(spark: SparkSession, path: str) -> HadoopPath | LocalPath:
    """`path` with file operations that act where `spark` reads and writes it."""
    from aqueduct_dagster.engine.session import is_connect

    if not is_connect(spark):
        return HadoopPath(spark, path)
    scheme = urlsplit(path).scheme
    if scheme in ("", "file") and _server_is_local(spark):
        return LocalPath(path)
    raise ConditionError(
        "AQ_CONNECT_FILESYSTEM",
        f"on a Spark Connect session the engine can only move files on this machine's "
        f"filesystem; '{path}' is not reachable that way",
        {"path": path, "scheme": scheme or "file"},
        hint="use format: delta (its writes need no file moves), a Spark Connect server on "
        "this machine, or a classic session (engine.spark.master_url: local[*] / spark://...)",
    )


def _server_is_local(spark: SparkSession) -> bool:
    from aqueduct_dagster.engine.session import connect_url_of

    return connect_address(connect_url_of(spark))[0] in _LOOPBACK


def spark_location(spark: SparkSession, path: str) -> str:
    """`path` as Spark should get it: relative local paths made absolute on Spark Connect.

    A classic driver is this process, so Spark resolves relative paths against our working
    folder. A Connect server resolves them against its own; making them absolute here keeps
    the meaning a classic run gives them.
    """
    from aqueduct_dagster.engine.session import is_connect

    if not is_connect(spark) or urlsplit(path).scheme or os.path.isabs(path):
        return path
    return os.path.abspath(path)


class LocalPath:
    """A local path with HadoopPath's operations (for Spark Connect servers on this machine)."""

    def __init__(self, path: str | Path) -> None:
        text = str(path)
        if text.startswith("file:"):
            text = urlsplit(text).path
        self.path = Path(text).expanduser().absolute()

    def __str__(self) -> str:
        return f"file:{self.path}"

    @property
    def name(self) -> str:
        return self.path.name

    def sibling(self, name: str) -> LocalPath:
        return LocalPath(self.path.parent / name)

    def child(self, name: str) -> LocalPath:
        return LocalPath(self.path / name)

    def exists(self) -> bool:
        return self.path.exists()

    def delete(self) -> bool:
        """Recursive delete; False when there was nothing to delete."""
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path)
        elif self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        else:
            return False
        return True

    def rename_to(self, target: LocalPath) -> bool:
        if target.path.exists():
            return False  # as Hadoop's rename: never over an existing target
        try:
            self.path.rename(target.path)
        except OSError:
            return False
        return True

    def make_parent_dirs(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)


class HadoopPath:
    """One path and the FileSystem that holds it."""

    def __init__(self, spark: SparkSession, path: str | Any) -> None:
        self._spark = spark
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self._path_class = jvm.org.apache.hadoop.fs.Path
        raw = self._path_class(path) if isinstance(path, str) else path
        conf = spark._jsparkSession.sessionState().newHadoopConf()
        self.fs = raw.getFileSystem(conf)
        self.jpath = self.fs.makeQualified(raw)

    def __str__(self) -> str:
        return str(self.jpath.toString())

    @property
    def name(self) -> str:
        return str(self.jpath.getName())

    def sibling(self, name: str) -> HadoopPath:
        return HadoopPath(self._spark, self._path_class(self.jpath.getParent(), name))

    def child(self, name: str) -> HadoopPath:
        return HadoopPath(self._spark, self._path_class(self.jpath, name))

    def exists(self) -> bool:
        return bool(self.fs.exists(self.jpath))

    def delete(self) -> bool:
        """Recursive delete; False when there was nothing to delete."""
        return bool(self.fs.delete(self.jpath, True))

    def rename_to(self, target: HadoopPath) -> bool:
        return bool(self.fs.rename(self.jpath, target.jpath))

    def make_parent_dirs(self) -> None:
        self.fs.mkdirs(self.jpath.getParent())
