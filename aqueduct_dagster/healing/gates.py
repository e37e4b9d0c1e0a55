"""Gates a candidate patch must pass, in order: guardrails, compile, lineage, sandbox, full run.

Each gate answers pass / reject with a message a person (or the LLM, as a field-level
correction) can act on. Cheap gates run first; the Spark gates run on a fresh session of
their own, so a broken candidate can never stop or poison the session of the run.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.arcade_files import PatchTarget, route_patch
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import (
    DeferToHuman,
    InsertModule,
    PatchError,
    PatchSpec,
    ReplaceMacro,
    ReplaceModuleConfig,
    SetEngineConfig,
    SetModuleConfigKey,
    AddProbe,
    apply_patch_text,
)
from aqueduct_dagster.healing.rules import ENGINE_CONFIG_ALLOWLIST, SQL_KEYS


@dataclass
class Candidate:
    """A patch on its way through the gates, with what earlier gates produced."""

    patch: PatchSpec
    package: FailurePackage
    blueprint_text: str
    policy: Agent
    #: The file the patch edits (an Arcade's sub-Blueprint, or the Blueprint itself).
    target: PatchTarget | None = None
    patched_text: str | None = None
    manifest: Manifest | None = None
    escalate_reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    message: str = ""
    #: Passed, but a person must approve (low confidence, policy) whatever the mode.
    escalate: bool = False


class Gate:
    name = "gate"

    def check(self, candidate: Candidate) -> GateResult:  # pragma: no cover - interface
        raise NotImplementedError

    def ok(self, message: str = "", *, escalate: bool = False) -> GateResult:
        return GateResult(self.name, True, message, escalate)

    def reject(self, message: str) -> GateResult:
        return GateResult(self.name, False, message)


# --------------------------------------------------------------------------- guardrails

_TEMPLATE = re.compile(r"\{\{\s*macros\.(\w+)(?:\([^)]*\))?\s*\}\}")
_CONTEXT = re.compile(r"\$\{[^}]*\}|@aq\.[\w.]+\([^)]*\)")


class GuardrailsGate(Gate):
    """Policy: allowed ops and paths, engine-config allowlist, confidence, SQL shape."""

    name = "guardrails"

    def check(self, candidate: Candidate) -> GateResult:
        patch, policy = candidate.patch, candidate.policy
        guardrails = policy.guardrails
        for op in patch.operations:
            if op.op in guardrails.forbidden_ops:
                return self.reject(f"operation '{op.op}' is forbidden by agent.guardrails.forbidden_ops")
            if isinstance(op, DeferToHuman) and not policy.allow_defer:
                return self.reject("defer_to_human is not allowed for this blueprint (agent.allow_defer: false)")
            if isinstance(op, SetEngineConfig) and op.engine == "spark" and op.key not in ENGINE_CONFIG_ALLOWLIST:
                return self.reject(
                    f"engine config key '{op.key}' is not on the allowlist "
                    f"({', '.join(sorted(ENGINE_CONFIG_ALLOWLIST))})"
                )
        for path in _paths_written(patch):
            problem = _path_problem(path, guardrails.allowed_paths, guardrails.deny_patterns)
            if problem:
                return self.reject(problem)
        macros = _macros_after(candidate)
        for where, sql, is_query in _sql_written(patch):
            problem = _sql_problem(sql, macros, is_query)
            if problem:
                return self.reject(f"{where}: {problem}")
        threshold = policy.confidence_threshold
        if patch.confidence is None or patch.confidence < threshold:
            return self.ok(
                f"confidence {patch.confidence} is below the threshold {threshold}: needs a person",
                escalate=True,
            )
        return self.ok()


def _paths_written(patch: PatchSpec) -> list[str]:
    paths = []
    for op in patch.operations:
        if isinstance(op, SetModuleConfigKey) and op.key == "path" and isinstance(op.value, str):
            paths.append(op.value)
        elif isinstance(op, ReplaceModuleConfig) and isinstance(op.config.get("path"), str):
            paths.append(op.config["path"])
        elif isinstance(op, (InsertModule, AddProbe)):
            path = (op.module.get("config") or {}).get("path")
            if isinstance(path, str):
                paths.append(path)
    return paths


def _path_problem(path: str, allowed: Sequence[str], denied: Sequence[str]) -> str | None:
    if allowed and not any(fnmatch.fnmatch(path, pattern) for pattern in allowed):
        return f"path '{path}' is outside agent.guardrails.allowed_paths ({', '.join(allowed)})"
    for pattern in denied:
        if fnmatch.fnmatch(path, pattern):
            return f"path '{path}' matches the denied pattern '{pattern}'"
    return None


def _sql_written(patch: PatchSpec) -> list[tuple[str, str, bool]]:
    """(where, text, must be a whole SELECT) for every SQL value a patch writes."""
    found: list[tuple[str, str, bool]] = []

    def visit(where: str, config: dict[str, Any]) -> None:
        for key, value in config.items():
            if key in SQL_KEYS and isinstance(value, str) and key in ("query", "condition", "expr", "spillway_condition"):
                found.append((f"{where} config.{key}", value, key == "query"))

    for op in patch.operations:
        if isinstance(op, SetModuleConfigKey) and op.key in ("query", "condition", "expr", "spillway_condition"):
            if isinstance(op.value, str):
                found.append((f"module '{op.module_id}' config.{op.key}", op.value, op.key == "query"))
        elif isinstance(op, ReplaceModuleConfig):
            visit(f"module '{op.module_id}'", op.config)
        elif isinstance(op, (InsertModule, AddProbe)):
            visit(f"module '{op.module.get('id')}'", op.module.get("config") or {})
        elif isinstance(op, ReplaceMacro):
            found.append((f"macro '{op.name}'", op.value, False))
    return found


def _macros_after(candidate: Candidate) -> dict[str, str]:
    macros = dict(candidate.package.macros)
    for op in candidate.patch.operations:
        if isinstance(op, ReplaceMacro):
            macros[op.name] = op.value
    return macros


def _sql_problem(sql: str, macros: dict[str, str], is_query: bool) -> str | None:
    import sqlglot
    from sqlglot import exp

    # Templates are not SQL: inline macro bodies, stand a literal in for context values.
    text = _TEMPLATE.sub(lambda m: f"({macros.get(m.group(1), 'TRUE')})", sql)
    text = _CONTEXT.sub("NULL", text)
    if is_query:
        from aqueduct_dagster.blueprint import parse_single_select

        try:
            parse_single_select(text)
        except AqueductError as error:
            return f"SQL must be a single SELECT: {error.message}"
        return None
    try:
        expressions = sqlglot.parse(f"SELECT 1 WHERE {text}", read="spark")
    except sqlglot.errors.ParseError as error:
        return f"not a valid SQL expression: {str(error).splitlines()[0]}"
    if len(expressions) != 1 or not isinstance(expressions[0], exp.Select):
        return "a condition must be one SQL expression"
    return None


# --------------------------------------------------------------------------- compile, lineage


class CompileGate(Gate):
    """The patched Blueprint applies and compiles like any hand-written one."""

    name = "compile"

    def check(self, candidate: Candidate) -> GateResult:
        from aqueduct_dagster.blueprint import compile_text

        root = candidate.package.blueprint_path
        try:
            target = route_patch(root, candidate.blueprint_text, candidate.patch)
            candidate.target = target
            candidate.patched_text = apply_patch_text(target.text, target.patch)
            if target.is_root:
                candidate.manifest = compile_text(candidate.patched_text, source_path=root)
            else:  # the sub-Blueprint compiles within the Blueprint that uses it
                candidate.manifest = compile_text(
                    candidate.blueprint_text, source_path=root,
                    file_overrides={target.path: candidate.patched_text},
                )  # fmt: skip
        except PatchError as error:
            return self.reject(f"the patch does not apply: {error.message}")
        except AqueductError as error:
            return self.reject(f"the patched blueprint does not compile: {error}")
        return self.ok()


class LineageGate(Gate):
    """Every column the patched SQL reads exists in the upstream schemas we know."""

    name = "lineage"

    def check(self, candidate: Candidate) -> GateResult:
        from aqueduct_dagster.blueprint import referenced_columns

        assert candidate.manifest is not None, "the compile gate runs first"
        package = candidate.package
        known = package.upstream_columns()
        if not known or package.failed_module not in candidate.manifest.modules:
            return self.ok("no upstream schemas known: skipped")
        module = candidate.manifest.module(package.failed_module)
        if not module.sql:
            return self.ok("not a SQL module: skipped")
        available = {c.lower() for cols in known.values() for c in cols}
        outputs = _select_aliases(module.sql)
        try:
            used = referenced_columns(module.sql)
        except AqueductError as error:
            return self.reject(f"the patched SQL does not parse: {error.message}")
        missing = sorted(
            {
                column
                for columns in used.values()
                for column in columns
                if column.lower() not in available and column.lower() not in outputs
            }
        )
        if missing:
            return self.reject(
                f"module '{module.id}' reads {', '.join(missing)}, which no input provides "
                f"(inputs have: {', '.join(sorted(available))})"
            )
        return self.ok()


def _select_aliases(sql: str) -> set[str]:
    return {m.lower() for m in re.findall(r"\bAS\s+`?(\w+)`?", sql, re.I)}


# --------------------------------------------------------------------------- Spark gates


def _scratch_module(module: CompiledModule, scratch: Path, *, staging: bool = False) -> CompiledModule:
    """An Egress redirected to a scratch folder; merge/error/ignore become a plain overwrite.

    `staging` writes lossless parquet without partitioning, to be read back for promotion.
    """
    config = module.spec.config
    mode = config.mode if config.mode not in ("merge", "error", "errorifexists", "ignore") else "overwrite"
    update: dict[str, Any] = {"path": str(scratch / module.id), "table": None, "mode": mode, "register_as_table": None}
    if staging:
        update.update(format="parquet", partition_by=None, options={}, maintenance=None, mode="overwrite")
    new_config = config.model_copy(update=update)
    return module.model_copy(update={"spec": module.spec.model_copy(update={"config": new_config})})


def run_on_spark(spark: Any, manifest: Manifest, *, sample_rows: int | None, scratch: Path,
                 on_egress: Callable[[CompiledModule, Any], None] | None = None,
                 staging: bool = False) -> None:  # fmt: skip
    """Run a manifest with Egress writes redirected to `scratch`, optionally on sampled input.

    Ports are honoured as in a real run: Junction branches, spillways (with `error_types`),
    Probe signals into Regulators; a closed Regulator skips what is downstream of it.
    """
    from aqueduct_dagster.engine import AssertionFailed, execute_module, filter_spillway
    from aqueduct_dagster.engine.udfs import register_udfs

    register_udfs(spark, manifest)
    outputs: dict[str, dict[str, Any]] = {}
    for module in manifest.modules.values():
        inputs: dict[str, Any] = {}
        for edge in module.inputs:
            published = outputs.get(edge.source)
            if published is None or (edge.port not in published and "main" not in published):
                break  # upstream skipped (closed Regulator): so is this module
            value = published.get(edge.port, published.get("main"))
            if edge.port == "spillway" and edge.error_types:
                value = filter_spillway(value, list(edge.error_types))
            inputs[edge.alias] = value
        else:
            if module.type == "Egress":
                target = _scratch_module(module, scratch, staging=staging)
                execute_module(spark, target, inputs)
                if on_egress is not None:
                    on_egress(module, target)
                outputs[module.id] = {}
                continue
            result = execute_module(spark, module, inputs)
            if result.assertion is not None and result.assertion.blocking:
                raise AssertionFailed(module.id, result.assertion)
            published = dict(result.outputs)
            if module.type == "Probe":
                published = {"main": result.metadata.get("signals", [])}
            if module.type == "Ingress" and sample_rows is not None and "main" in published:
                published["main"] = published["main"].limit(sample_rows)
            if module.type == "Regulator" and result.metadata.get("skipped"):
                continue
            outputs[module.id] = published


class SandboxGate(Gate):
    """Replay the patched pipeline on sampled input; Egress writes go to a scratch folder."""

    name = "sandbox"

    def __init__(self, spark_factory: Callable[[], Any], *, sample_rows: int = 1000,
                 scratch_root: Path | None = None,
                 depot_lookup: Callable[[str], str | None] | None = None) -> None:  # fmt: skip
        self.spark_factory = spark_factory
        self.sample_rows = sample_rows
        self.scratch_root = scratch_root
        #: Committed Depot values (watermarks): the sandbox reads the slice the run would.
        self.depot_lookup = depot_lookup

    def check(self, candidate: Candidate) -> GateResult:
        assert candidate.manifest is not None, "the compile gate runs first"
        if candidate.policy.sandbox_mode == "off":
            return self.ok("sandbox_mode: off")
        sample = None if candidate.policy.sandbox_mode == "preflight" else self.sample_rows
        scratch = Path(tempfile.mkdtemp(prefix="aq-sandbox-", dir=self.scratch_root))
        try:
            manifest = _bound(candidate.manifest, self.depot_lookup)
            run_on_spark(self.spark_factory(), manifest, sample_rows=sample, scratch=scratch)
        except AqueductError as error:
            return self.reject(f"the patched pipeline fails on sampled input: {error}")
        except Exception as error:  # noqa: BLE001 - any failure of the candidate is a rejection
            return self.reject(f"the patched pipeline fails on sampled input: {type(error).__name__}: {error}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.ok(f"replayed on {sample or 'all'} input rows per Ingress")


def _bound(manifest: Manifest, depot_lookup: Callable[[str], str | None] | None = None) -> Manifest:
    """Run tokens bound; Depot reads see the committed values (a gate never writes the Depot)."""
    from datetime import datetime, timezone

    from aqueduct_dagster.blueprint import RunInfo, bind_runtime
    from aqueduct_dagster.blueprint.depot import bind_depot

    bound = bind_runtime(manifest, RunInfo(run_id="sandbox", started_at=datetime.now(timezone.utc)))
    return bind_depot(bound, depot_lookup or (lambda key: None))


class FullRunGate(Gate):
    """Auto mode: the whole pipeline on all data, outputs in scratch, promoted only on success."""

    name = "full_run"

    def __init__(self, spark_factory: Callable[[], Any], *, scratch_root: Path | None = None) -> None:
        self.spark_factory = spark_factory
        self.scratch_root = scratch_root

    def check(self, candidate: Candidate) -> GateResult:
        from aqueduct_dagster.blueprint.depot import uses_depot
        from aqueduct_dagster.engine import execute_module

        assert candidate.manifest is not None, "the compile gate runs first"
        if uses_depot(candidate.manifest):
            # Publishing outside a Dagster run could not advance the watermark with the data
            # (the next run would append the same slice again): a person applies it instead.
            return self.reject("the pipeline keeps state in the Depot (watermarks): it is not "
                               "re-run and published outside a Dagster run")  # fmt: skip
        spark = self.spark_factory()
        written: list[tuple[CompiledModule, CompiledModule]] = []
        scratch = Path(tempfile.mkdtemp(prefix="aq-fullrun-", dir=self.scratch_root))
        try:
            manifest = _bound(candidate.manifest)
            run_on_spark(spark, manifest, sample_rows=None, scratch=scratch, staging=True,
                         on_egress=lambda real, target: written.append((real, target)))  # fmt: skip
            # Every output was produced: now publish them with their real write semantics.
            for real, target in written:
                frame = spark.read.parquet(target.spec.config.path)
                execute_module(spark, real, {real.inputs[0].alias: frame})
        except Exception as error:  # noqa: BLE001 - any failure keeps the real outputs untouched
            return self.reject(f"the full re-run failed, nothing was published: {error}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.ok(f"re-ran and published {len(written)} output(s)")


def run_gates(candidate: Candidate, gates: Sequence[Gate]) -> list[GateResult]:
    """Run gates in order, stopping at the first rejection."""
    results = []
    for gate in gates:
        result = gate.check(candidate)
        results.append(result)
        if result.escalate:
            candidate.escalate_reasons.append(result.message)
        if not result.passed:
            break
    return results
