"""Running the healed pipeline for real, on data generated from the Blueprint (`execute=True`)."""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlglot
import yaml
from sqlglot import exp

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_text, referenced_columns
from aqueduct_dagster.engine.session import run_session
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.benchmark.attempt import HealAttempt
from aqueduct_dagster.healing.benchmark.injection import plan_schemas
from aqueduct_dagster.healing.benchmark.scenario import LoadedScenario
from aqueduct_dagster.healing.gates import run_on_spark

#: Failures that only a cluster (or another engine) reproduces, and why.
_CLUSTER_ONLY: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"YARN|Container killed|exceeding memory limits", re.I), "needs a cluster: container memory limits"),
    (re.compile(r"OutOfMemory|_OOM\b|GC overhead", re.I), "needs a cluster: executor memory pressure"),
    (re.compile(r"broadcast", re.I), "needs a cluster: a broadcast larger than the threshold"),
    (re.compile(r"maxResultSize|RESULT_TOO_LARGE", re.I), "needs a cluster: driver result size at scale"),
    (re.compile(r"ExecutorLost|executor lost|small files|object store", re.I),
     "needs a cluster: executor / object-store behaviour"),
)  # fmt: skip


@dataclass
class Execution:
    """The healed pipeline run for real on generated data (`execute=True`)."""

    executed: bool
    passed: bool | None = None
    #: Whether the unpatched Blueprint failed on the same data (the data reproduces the bug).
    reproduced: bool | None = None
    reason: str = ""
    seconds: float = 0.0


def not_executable_reason(loaded: LoadedScenario) -> str | None:
    failure = loaded.scenario.inject_failure
    if failure.engine != "spark":
        return f"the failure is on the {failure.engine} engine; this project runs Spark"
    condition = (failure.structured.error_class or "") if failure.structured else ""
    text = "\n".join([failure.error_message, failure.stack_trace or "", condition])
    if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
        return "where the missing file really is cannot be known offline"
    for pattern, reason in _CLUSTER_ONLY:
        if pattern.search(text):
            return reason
    return None


def execute_scenario(loaded: LoadedScenario, attempt: HealAttempt, spark: Any, scratch: Path) -> Execution:
    """Generate input data from the Blueprint, run the unpatched and the healed pipeline."""
    started = time.monotonic()
    if not attempt.applied or attempt.patched_text is None:
        return Execution(False, reason="no applied patch to run")
    reason = not_executable_reason(loaded)
    if reason is not None:
        return Execution(False, reason=f"not executable locally: {reason}")
    data_dir = scratch / "data"
    headers = write_input_data(loaded, data_dir, spark)
    reproduced: bool | None = None
    try:
        _run_text(loaded.blueprint_text, loaded, data_dir, headers, spark, scratch / "original")
        reproduced = False
    except Exception:  # noqa: BLE001 - the unpatched pipeline is expected to fail
        reproduced = True
    try:
        _run_text(attempt.patched_text, loaded, data_dir, headers, spark, scratch / "healed")
    except Exception as error:  # noqa: BLE001 - any failure of the healed run is the result
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        reason = f"the healed pipeline failed: {message[:300]}"
        return Execution(True, False, reproduced, reason, time.monotonic() - started)
    return Execution(True, True, reproduced, "the healed pipeline ran", time.monotonic() - started)


def _run_text(text: str, loaded: LoadedScenario, data_dir: Path, headers: set[str], spark: Any,
              scratch: Path) -> None:  # fmt: skip
    runnable = runnable_text(text, data_dir, headers, scratch / "sinks")
    manifest = compile_text(runnable, source_path=loaded.blueprint_path)
    manifest = bind_runtime(manifest, RunInfo(run_id="benchmark", started_at=datetime.now(UTC)))
    session = run_session(spark, manifest.engine.spark.conf)
    run_on_spark(session, manifest, sample_rows=None, scratch=scratch)


def runnable_text(text: str, data_dir: Path, headers: set[str], sinks: Path) -> str:
    """The Blueprint reading the generated data, with every terminal module written somewhere.

    Paths move under `data_dir`; a CSV Ingress that leaves `header` unset reads the generated
    header row; modules nobody consumes get an Egress so that their SQL really runs.
    """
    data = yaml.safe_load(text)
    modules = data.get("modules") or []
    edges = data.setdefault("edges", []) or []
    data["edges"] = edges
    consumed = {e.get("from") for e in edges if isinstance(e, dict)}
    for module in list(modules):
        if not isinstance(module.get("config"), dict):
            module["config"] = {}
        config = module["config"]
        if module.get("type") == "Ingress" and isinstance(config.get("path"), str):
            if module["id"] in headers and config.get("header") is None:
                config["header"] = True
            config["path"] = str(data_dir / config["path"].lstrip("/"))
        if module.get("type") not in ("Egress", "Assert") and module["id"] not in consumed:
            sink = f"benchmark_sink_{module['id']}"
            target = {"format": "parquet", "path": str(sinks / module["id"]), "mode": "overwrite"}
            modules.append({"id": sink, "type": "Egress", "config": target})
            edges.append({"from": module["id"], "to": sink})
    return yaml.safe_dump(data, sort_keys=False)


_FILE_FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def write_input_data(loaded: LoadedScenario, data_dir: Path, spark: Any) -> set[str]:
    """Three rows per Ingress, at its path, in the format its file name says; returns CSV Ingress ids."""
    csv_ingresses = set()
    for module_id, columns in ingress_columns(loaded).items():
        config = loaded.manifest.module(module_id).config
        if not isinstance(config.path, str):
            continue
        suffix = Path(config.path).suffix.lower()
        fmt = _FILE_FORMATS.get(suffix) or (config.format or "parquet").lower()
        hints = _hint_types(config.schema_hint)
        rows = [{c: _value(c, hints.get(c.lower()), n) for c in columns} for n in range(1, 4)]
        target = data_dir / config.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            csv_ingresses.add(module_id)
            with target.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        elif fmt == "json":
            target.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            file = target if suffix else target / "part-00000.parquet"
            file.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), file)
        else:  # delta and other Spark formats: let Spark write them
            spark.createDataFrame(rows).write.format(fmt).mode("overwrite").save(str(target))
    return csv_ingresses


def ingress_columns(loaded: LoadedScenario) -> dict[str, list[str]]:
    """Ingress id -> the columns its data needs: the plan Spark printed, else what readers read."""
    failure = loaded.scenario.inject_failure
    plan = plan_schemas("\n".join([failure.error_message, failure.stack_trace or ""]))
    given = failure.input_schemas or {}
    manifest = loaded.manifest
    columns: dict[str, list[str]] = {}
    for module in manifest.modules.values():
        if not module.reads_source:
            continue
        if module.id in given:
            columns[module.id] = list(given[module.id])
            continue
        if module.id in plan:
            columns[module.id] = list(plan[module.id])
            continue
        wanted: list[str] = []
        hint = _hint_types(module.config.schema_hint)
        wanted += [c for c in hint if c not in wanted]
        for consumer in manifest.consumers(module.id):
            names = [i.alias for i in consumer.inputs if i.source == module.id]
            if consumer.sql:
                try:
                    used = referenced_columns(consumer.sql)
                except AqueductError:
                    continue
                aliases = set(names) | _table_aliases(consumer.sql, names)
                for qualifier, cols in used.items():
                    if qualifier is None or qualifier in aliases:
                        wanted += sorted(c for c in cols if c not in wanted)
            else:
                for key in ("columns", "cols", "key", "column", "col"):
                    value = getattr(consumer.config, key, None)
                    for name in [value] if isinstance(value, str) else (value or []):
                        if isinstance(name, str) and name not in wanted:
                            wanted.append(name)
        columns[module.id] = wanted or ["id"]
    return columns


def _table_aliases(sql: str, tables: Iterable[str]) -> set[str]:
    try:
        query = sqlglot.parse_one(sql, read="spark")
    except Exception:  # noqa: BLE001 - no aliases is the safe answer
        return set()
    names = set(tables)
    return {t.alias for t in query.find_all(exp.Table) if t.name in names and t.alias}


def _hint_types(hint: Any) -> dict[str, str]:
    if isinstance(hint, dict) and isinstance(hint.get("columns"), list):
        hint = hint["columns"]
    if isinstance(hint, dict):
        return {str(k).lower(): str(v).lower() for k, v in hint.items()}
    if isinstance(hint, list):
        return {str(e.get("name")).lower(): str(e.get("type")).lower() for e in hint if isinstance(e, dict)}
    return {}


def _value(column: str, hinted: str | None, n: int) -> Any:
    """A plausible value by name; a string/date hint is honoured (numeric hints may be the bug)."""
    name = column.lower()
    if hinted in ("string", "varchar"):
        return f"{name}-{n}"
    if hinted == "date" or "date" in name:
        return f"2024-01-0{n}"
    if name.endswith(("_ts", "_time", "_at")) or "timestamp" in name or hinted == "timestamp":
        return f"2024-01-0{n} 10:00:00"
    if name == "id" or name.endswith("_id"):
        return n
    if any(word in name for word in ("amount", "price", "total", "cost", "revenue")):
        return round(10.25 * n, 2)
    if any(word in name for word in ("count", "qty", "quantity")):
        return n * 2
    return f"{name}_{n}"
