"""File operations through Hadoop's FileSystem, so they work wherever Spark reads and writes.

Local paths, HDFS and object stores all go through the same API Spark itself uses, with the
session's Hadoop configuration (credentials included).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
