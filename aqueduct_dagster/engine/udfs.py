"""The Blueprint's `udf_registry`, registered in a run's session so its SQL can call them.

Python UDFs are imported from the Blueprint's folder (or anything importable) and shipped
to the workers by value (engine/user_code.py), the same on a classic and a Spark Connect
session. `params` make `entry` a factory: `entry(**params)` returns the function. Java/Scala
UDFs name a class already on the JVM's classpath (`spark.jars`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.user_code import (
    UserCodeNotFound,
    blueprint_folder,
    import_user_module,
    member,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from aqueduct_dagster.blueprint.manifest import Manifest
    from aqueduct_dagster.blueprint.models import Udf


def register_udfs(spark: SparkSession, manifest: Manifest) -> list[str]:
    """Register every UDF of `manifest` in `spark`; returns their names."""
    if not manifest.udf_registry:
        return []
    folder = blueprint_folder(manifest.source_path)
    for udf in manifest.udf_registry:
        if udf.lang == "python":
            _register_python(spark, udf, folder)
        else:
            _register_jvm(spark, udf)
    return [udf.id for udf in manifest.udf_registry]


def _register_python(spark: SparkSession, udf: Udf, folder: str | None) -> None:
    if not udf.module:
        raise _error(udf, "a Python UDF needs `module` (a dotted module path)", "set module: <package.module>")
    try:
        entry = member(import_user_module(udf.module, folder), udf.entry or udf.id)
    except UserCodeNotFound as error:
        raise _error(udf, str(error), error.hint) from None
    if not callable(entry):
        name = f"{udf.module}.{udf.entry or udf.id}"
        raise _error(udf, f"'{name}' is not a function", "set `entry` to a function of that module")
    function = entry(**reveal_secrets(udf.params)) if udf.params else entry
    spark.udf.register(udf.id, _deterministic(function, udf), udf.return_type or "string")


def _deterministic(function: Any, udf: Udf) -> Any:
    if udf.deterministic:
        return function
    from pyspark.sql.functions import udf as make_udf

    return make_udf(function, udf.return_type or "string").asNondeterministic()


def _register_jvm(spark: SparkSession, udf: Udf) -> None:
    class_name = udf.class_ or udf.entry
    if not class_name:
        raise _error(udf, f"a {udf.lang} UDF needs `class` (or `entry`)", "set class: com.example.MyUdf")
    try:
        spark.udf.registerJavaFunction(udf.id, class_name, udf.return_type)
    except Exception as error:  # noqa: BLE001 - Py4J or Connect: the class is missing
        raise _error(
            udf,
            f"cannot register {udf.lang} UDF class '{class_name}': {str(error).splitlines()[0]}",
            "add its jar to engine.spark.conf spark.jars (it must be there when Spark starts)",
        ) from None


def _error(udf: Udf, message: str, hint: str) -> ConditionError:
    return ConditionError(
        "AQ_UDF_REGISTRATION", f"UDF '{udf.id}': {message}", {"udf": udf.id}, hint=hint
    )
