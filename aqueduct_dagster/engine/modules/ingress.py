"""Ingress: read a source into a DataFrame (lazily; only the schema is resolved).

Any Spark format name works (csv, json, parquet, delta, orc, jdbc ...). A `schema_hint`
is checked against the read schema without running a Spark job:

* the flat form `{col: type}` (or a bare list of `{name, type}`): each hinted column is
  present with its type; other columns may come along;
* `{mode: strict, columns: [...]}` (strict is the default mode): the hinted columns exactly --
  each present with its type, and no others;
* additive: each hinted column present with its type; extra upstream columns allowed;
* subset: hinted columns may be missing; those present have their type; no others.

A mismatch raises the condition AQ_SCHEMA_HINT_MISMATCH (parameters kind, column, expected,
actual, mode), so a healer can correct the hint or the source.

`format: custom` reads with a Python data source of the Blueprint's author (Spark's
`pyspark.sql.datasource.DataSource`): `class: readers.Orders` names the class, imported from
the Blueprint's folder like a UDF (engine/user_code.py). It is registered in the run's
session and read like any format: `options` (and `path`, when set) reach it as its options.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aqueduct_dagster.blueprint.models import IngressConfig
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.filesystem import spark_location, spark_path
from aqueduct_dagster.engine.modules.common import option_text, reader_options, schema_facts
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.engine.snapshot import ingress_snapshot
from aqueduct_dagster.engine.types import spark_type_name
from aqueduct_dagster.engine.user_code import UserCodeNotFound, blueprint_folder, load_reference

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

HINT_MODES = ("strict", "additive", "subset")
#: The mode of the flat form: presence and type of the hinted columns only.
FLAT = "flat"

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".orc": "orc",
    ".avro": "avro",
    ".txt": "text",
    ".xml": "xml",
}

#: The format that reads with the data source class named by `class`.
CUSTOM_FORMAT = "custom"

#: JDBC URL prefix -> driver class. Jars given through `spark.jars` are invisible to
#: java.sql.DriverManager ("No suitable driver"), so Spark must be told the class by name.
_JDBC_DRIVERS = {
    "jdbc:postgresql:": "org.postgresql.Driver",
}


def execute_ingress(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: IngressConfig = module.config
    if config.path and config.table:
        raise ConditionError(
            "AQ_INGRESS_TARGET",
            "an Ingress reads either `path` or `table`, not both",
            {"path": config.path, "table": config.table},
            hint="remove one of `path` and `table`",
        )
    options = reader_options(config.options)
    fmt = (config.format or _format_from_path(spark, config.path)).lower()
    if fmt == CUSTOM_FORMAT:  # with its `class`: a Blueprint without it does not load
        fmt = register_data_source(spark, module)
    if fmt == "csv":
        if config.header is not None:
            options.setdefault("header", "true" if config.header else "false")
        if config.infer_schema is not None:
            options.setdefault("inferSchema", "true" if config.infer_schema else "false")
    if fmt == "jdbc" and "driver" not in options:
        driver = jdbc_driver(options.get("url", ""))
        if driver:
            options["driver"] = driver
    if config.time_travel is not None:
        if config.time_travel.version is not None:
            options["versionAsOf"] = str(config.time_travel.version)
        if config.time_travel.timestamp is not None:
            options["timestampAsOf"] = str(config.time_travel.timestamp)

    reader = spark.read.options(**options)
    if config.table:
        frame = reader.table(reveal_secrets(config.table))
    elif config.path:
        location = spark_location(spark, reveal_secrets(config.path))
        # A frame an earlier run persisted from this path would be matched by plan and served
        # from the cache, whatever the files hold now: each run reads what is there.
        spark.catalog.refreshByPath(location)
        frame = reader.format(fmt).load(location)
    elif options or config.class_:  # addressed by options alone (jdbc: url + dbtable)
        frame = reader.format(fmt).load()
    else:
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            "an Ingress needs `path` or `table` (or, for jdbc-like formats, `options`)",
            {"key": "path"},
            hint="set config.path (a file or folder) or config.table (a catalog table)",
        )
    if config.partition_filters:
        frame = frame.filter(config.partition_filters)
    if config.schema_hint is not None:
        check_schema_hint(frame, config.schema_hint)

    metadata: dict[str, Any] = {
        "format": metadata_format(config, fmt),
        "path": config.path,  # as written: secret tokens stay tokens
        "table": config.table,
        "option_keys": sorted(options),
        "columns": schema_facts(frame),
        # The evidence a heal diffs against (no Spark job); recorded with the run, not shown.
        # Options as written, secret tokens intact: a value revealed at use never leaves here.
        "snapshot": ingress_snapshot(frame, fmt=metadata_format(config, fmt), options=_as_written(config, fmt),
                                     location=config.path),
    }
    return ModuleResult(outputs={"main": frame}, metadata=metadata)


def register_data_source(spark: SparkSession, module: CompiledModule) -> str:
    """Register the `class` of a `format: custom` Ingress in `spark`; its format name."""
    from pyspark.sql.datasource import DataSource

    config: IngressConfig = module.config
    facts = {"class": config.class_}
    folder = blueprint_folder(module.location.file if module.location else None)
    try:
        source = load_reference(config.class_, folder)
    except UserCodeNotFound as error:
        raise ConditionError(
            "AQ_INGRESS_CUSTOM_SOURCE", f"class '{config.class_}': {error}", facts, hint=error.hint
        ) from None
    if not (isinstance(source, type) and issubclass(source, DataSource)):
        raise ConditionError(
            "AQ_INGRESS_CUSTOM_SOURCE",
            f"'{config.class_}' is not a subclass of pyspark.sql.datasource.DataSource",
            facts,
            hint="subclass DataSource: name() returns its format name, reader() its reader",
        )
    spark.dataSource.register(source)
    return source.name()


def _as_written(config: IngressConfig, fmt: str) -> dict[str, str]:
    """The reader options as the Blueprint writes them (the read's defaults included)."""
    written = {str(k): option_text(v) for k, v in (config.options or {}).items() if v is not None}
    if fmt == "csv":
        if config.header is not None:
            written.setdefault("header", option_text(config.header))
        if config.infer_schema is not None:
            written.setdefault("inferSchema", option_text(config.infer_schema))
    return written


def metadata_format(config: IngressConfig, fmt: str) -> str:
    return "table" if config.table and not config.format else fmt


def jdbc_driver(url: str) -> str | None:
    """The driver class for a JDBC URL this project ships a driver for, else None."""
    lowered = url.strip().lower()
    return next((cls for prefix, cls in _JDBC_DRIVERS.items() if lowered.startswith(prefix)), None)


def _format_from_path(spark: SparkSession, path: str | None) -> str:
    if not path:
        return "parquet"
    lowered = path.lower().rstrip("/")
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    try:
        if spark_path(spark, reveal_secrets(path)).child("_delta_log").exists():
            return "delta"
    except Exception:  # noqa: BLE001 - a bad path is reported by the read itself
        pass
    return "parquet"


# --------------------------------------------------------------------------- schema hints


def parse_schema_hint(hint: dict[str, Any] | list[Any]) -> tuple[str, list[tuple[str, str]]]:
    """(mode, [(column, type)]) from the flat, list or `{mode, columns}` form."""
    mode = FLAT
    entries: Any = hint
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        mode = str(hint.get("mode") or "strict").lower()
        entries = hint["columns"]
    if mode not in (*HINT_MODES, FLAT):
        raise ConditionError(
            "AQ_SCHEMA_HINT_INVALID",
            f"schema_hint mode '{mode}' is not one of {', '.join(HINT_MODES)}",
            {"mode": mode},
        )
    columns: list[tuple[str, str]] = []
    if isinstance(entries, dict):
        columns = [(str(name), str(kind)) for name, kind in entries.items()]
    else:
        for entry in entries:
            if not isinstance(entry, dict) or "name" not in entry or "type" not in entry:
                raise ConditionError(
                    "AQ_SCHEMA_HINT_INVALID",
                    f"schema_hint column entry {entry!r} needs `name` and `type`",
                    {"entry": entry},
                    hint="write columns as - {name: order_id, type: long}",
                )
            columns.append((str(entry["name"]), str(entry["type"])))
    return mode, columns


def check_schema_hint(frame: DataFrame, hint: dict[str, Any] | list[Any]) -> None:
    """Raise AQ_SCHEMA_HINT_MISMATCH when `frame.schema` breaks the hint (no Spark job)."""
    mode, columns = parse_schema_hint(hint)
    actual = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    by_lower = {name.lower(): name for name in actual}
    problems: list[dict[str, str]] = []
    for name, type_name in columns:
        expected = spark_type_name(type_name)
        found = name if name in actual else by_lower.get(name.lower())
        if found is None:
            if mode != "subset":
                problems.append(_problem("missing_column", name, expected, "<missing>"))
        elif actual[found].lower() != expected:
            problems.append(_problem("type", found, expected, actual[found]))
    if mode in ("strict", "subset"):  # no columns beyond the hinted ones
        hinted = {name.lower() for name, _ in columns}
        problems += [
            _problem("unexpected_column", name, "<absent>", kind)
            for name, kind in actual.items()
            if name.lower() not in hinted
        ]
    if not problems:
        return
    first = problems[0]
    described = "; ".join(_describe(p) for p in problems)
    raise ConditionError(
        "AQ_SCHEMA_HINT_MISMATCH",
        f"schema_hint ({mode}) does not match the source: {described}",
        {**first, "mode": mode, "mismatches": str(len(problems))},
        hint=_hint_for(first),
    )


def _problem(kind: str, column: str, expected: str, actual: str) -> dict[str, str]:
    return {"kind": kind, "column": column, "expected": expected, "actual": actual}


def _describe(problem: dict[str, str]) -> str:
    column = problem["column"]
    if problem["kind"] == "missing_column":
        return f"column '{column}' is missing (expected '{problem['expected']}')"
    if problem["kind"] == "unexpected_column":
        return f"column '{column}' ('{problem['actual']}') is not in the hint"
    expected, actual = problem["expected"], problem["actual"]
    return f"type mismatch on '{column}': expected '{expected}', actual '{actual}'"


def _hint_for(problem: dict[str, str]) -> str:
    column = problem["column"]
    if problem["kind"] == "type":
        return (
            f"if '{problem['actual']}' is the intended type, set the hint for '{column}' to it; "
            "otherwise fix the source (or cast it in a Channel)"
        )
    if problem["kind"] == "missing_column":
        return f"the source lost '{column}': fix the source, or use mode: subset if it is optional"
    return f"add '{column}' to the hint, or use mode: additive to allow new upstream columns"
