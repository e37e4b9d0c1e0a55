"""Gates a candidate patch must pass, in order: guardrails, compile, effect, lineage, sandbox,
full run.

Each gate answers pass / reject with a message a person (or the LLM, as a field-level
correction) can act on. Cheap gates run first; the effect gate judges what the compiled
patched Blueprint would read, write, load and run (`effect.py`, `sql_policy.py`) before any
Spark gate executes anything. The Spark gates check that again themselves right before they
execute, write only under a scratch folder, and run on a fresh session of their own, so a
broken candidate can never stop or poison the session of the run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from aqueduct_dagster.blueprint import (
    compile_text,
    parse_single_select,
    referenced_columns,
)
from aqueduct_dagster.blueprint.depot import uses_depot
from aqueduct_dagster.blueprint.lineage import analysable_sql
from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.blueprint.models import Agent
from aqueduct_dagster.engine.errors import ModuleFailed
from aqueduct_dagster.engine.registry import execute_module
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.runner import RunResult, run_manifest
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.arcade_files import PatchTarget, route_patch
from aqueduct_dagster.healing.blame import bound_for_replay
from aqueduct_dagster.healing.contract import OutputProfile, profile_output, violations
from aqueduct_dagster.healing.effect import (
    EffectPolicy,
    compiled_effect,
    judge_effect,
    names_a_location,
    sql_problems_of,
)
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.patch import (
    AddProbe,
    DeferToHuman,
    InsertModule,
    PatchError,
    PatchSpec,
    ReplaceMacro,
    ReplaceModuleConfig,
    SetEngineConfig,
    SetModuleConfigKey,
    apply_patch_text,
)
from aqueduct_dagster.healing.policy import ENGINE_CONFIG_ALLOWLIST, SQL_KEYS
from aqueduct_dagster.healing.redaction import Redactor
from aqueduct_dagster.settings import current_settings


@dataclass(frozen=True)
class Candidate:
    """A patch on its way through the gates, with what earlier gates produced.

    Frozen: a gate that produces something (the compile gate its Manifest, the sandbox its
    measured outputs) hands the next gate a new Candidate (`Gate.run`), so what a gate
    reads is what the gates before it passed, never a half-filled object.
    """

    patch: PatchSpec
    #: The failure being healed; None for a preview or a re-check at apply time.
    package: FailurePackage | None
    blueprint_text: str
    policy: Agent
    #: The root Blueprint file (defaults to the package's).
    blueprint_path: Path | None = None
    #: Operator guardrails (`agent.guardrails` of aqueduct.yml); None: read aqueduct.yml.
    operator_guardrails: Any = None
    #: The folder relative paths resolve from (the engine's: the working folder).
    base_dir: Path | None = None
    #: The file the patch edits (an Arcade's sub-Blueprint, or the Blueprint itself).
    target: PatchTarget | None = None
    patched_text: str | None = None
    manifest: Manifest | None = None
    #: The unpatched Blueprint compiled (set by the effect gate).
    base_manifest: Manifest | None = None
    #: The manifest whose effect and SQL the effect gate passed (the Spark gates insist on it).
    effect_checked: Manifest | None = None
    #: Per Egress id, what the sandbox replay would publish (set by the sandbox gate).
    sandbox_outputs: dict[str, OutputProfile] = field(default_factory=dict)
    #: Whether that replay read every input row (no Ingress had more than the sample).
    sandbox_whole_input: bool = False

    @property
    def root_path(self) -> Path:
        if self.blueprint_path is not None:
            return Path(self.blueprint_path)
        if self.package is None:
            raise ValueError("a Candidate needs a blueprint_path when it has no FailurePackage")
        return Path(self.package.blueprint_path)

    def compiled(self, gate: str) -> Manifest:
        """The patched Manifest, for `gate`; GateOrderError if the compile gate has not passed."""
        if self.manifest is None:
            raise GateOrderError(f"the {gate} gate judges the compiled patch, and the compile gate has not "
                                 "passed this candidate", hint="run CompileGate before it")  # fmt: skip
        return self.manifest


class GateOrderError(AqueductError):
    """A gate ran before the gate that produces what it reads (a wiring error, not the patch's)."""


@dataclass(frozen=True)
class GateResult:
    gate: str
    passed: bool
    message: str = ""
    #: Passed, but a person must approve (low confidence, policy) whatever the mode.
    escalate: bool = False


class Judged(NamedTuple):
    """A gate's verdict, and the candidate with what the gate produced (the same candidate
    when it produces nothing, or rejects)."""

    result: GateResult
    candidate: Candidate


class Gate:
    """A gate overrides `check` when it only judges, `run` when it also produces something
    that later gates read."""

    name = "gate"

    def check(self, candidate: Candidate) -> GateResult:
        """The verdict alone."""
        if type(self).run is Gate.run:
            raise NotImplementedError(f"{type(self).__name__} overrides neither check nor run")
        return self.run(candidate).result

    def run(self, candidate: Candidate) -> Judged:
        """The verdict, and the candidate the next gate judges."""
        return Judged(self.check(candidate), candidate)

    def ok(self, message: str = "", *, escalate: bool = False) -> GateResult:
        return GateResult(self.name, True, message, escalate)

    def reject(self, message: str) -> GateResult:
        return GateResult(self.name, False, message)


# --------------------------------------------------------------------------- guardrails

_TEMPLATE = re.compile(r"\{\{\s*macros\.(\w+)(?:\([^)]*\))?\s*\}\}")
_CONTEXT = re.compile(r"\$\{[^}]*\}|@aq\.[\w.]+\([^)]*\)")


class GuardrailsGate(Gate):
    """Policy: allowed ops, engine-config allowlist, confidence, SQL shape (cheap, on the patch text).

    Where a patch reads or writes, and what its SQL may call, is judged on the compiled
    result by the effect gate: text checks cannot see `..`, context values or new modules.
    """

    name = "guardrails"

    def check(self, candidate: Candidate) -> GateResult:
        patch, policy = candidate.patch, candidate.policy
        guardrails = policy.guardrails
        for op in patch.operations:
            if op.op in guardrails.forbidden_ops:
                return self.reject(f"operation '{op.op}' is forbidden by agent.guardrails.forbidden_ops")
            if isinstance(op, DeferToHuman) and not policy.allow_defer:
                return self.reject("defer_to_human is not allowed for this blueprint (agent.allow_defer: false)")
            module = getattr(op, "module", None) or getattr(op, "config", None) or {}
            if isinstance(module, dict) and (module.get("type") == "Arcade" or "ref" in module):
                # A new sub-Blueprint file: the compiler would read (and quote) any file named.
                return self.reject(f"operation '{op.op}' references an Arcade file (`ref`); a patch may "
                                   "not add Arcade references: a person must")  # fmt: skip
            if isinstance(op, SetEngineConfig) and op.engine == "spark" and op.key not in ENGINE_CONFIG_ALLOWLIST:
                return self.reject(
                    f"engine config key '{op.key}' is not on the allowlist "
                    f"({', '.join(sorted(ENGINE_CONFIG_ALLOWLIST))})"
                )
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
        # A macro may hold a path or a fragment as well as SQL: the effect gate judges the
        # compiled values of every module that uses it.
    return found


def _macros_after(candidate: Candidate) -> dict[str, str]:
    macros = dict(candidate.package.macros) if candidate.package is not None else _macros_of(candidate.blueprint_text)
    for op in candidate.patch.operations:
        if isinstance(op, ReplaceMacro):
            macros[op.name] = op.value
    return macros


def _macros_of(blueprint_text: str) -> dict[str, str]:
    import yaml

    try:
        data = yaml.safe_load(blueprint_text) or {}
    except yaml.YAMLError:
        return {}
    macros = data.get("macros") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in macros.items()} if isinstance(macros, dict) else {}


def _sql_problem(sql: str, macros: dict[str, str], is_query: bool) -> str | None:
    import sqlglot
    from sqlglot import exp

    # Templates are not SQL: inline macro bodies, stand a literal in for context values.
    text = _TEMPLATE.sub(lambda m: f"({macros.get(m.group(1), 'TRUE')})", sql)
    text = _CONTEXT.sub("NULL", text)
    if is_query:
        try:
            parse_single_select(text)
        except AqueductError as error:
            return f"SQL must be a single SELECT: {error.message}"
        return None
    try:
        expressions = sqlglot.parse(f"SELECT 1 WHERE {text}", read="spark")
    except sqlglot.errors.ParseError as error:
        return f"not a valid SQL expression: {str(error).splitlines()[0]}"
    except (sqlglot.errors.SqlglotError, RecursionError) as error:
        return f"the SQL expression is too complex to check: {type(error).__name__}"
    if len(expressions) != 1 or not isinstance(expressions[0], exp.Select):
        return "a condition must be one SQL expression"
    return None


# --------------------------------------------------------------------------- compile, lineage


class CompileGate(Gate):
    """The patched Blueprint applies and compiles like any hand-written one."""

    name = "compile"

    def run(self, candidate: Candidate) -> Judged:
        root = candidate.root_path
        target: PatchTarget | None = None
        try:
            target = route_patch(root, candidate.blueprint_text, candidate.patch)
            patched_text = apply_patch_text(target.text, target.patch)
            if target.is_root:
                manifest = compile_text(patched_text, source_path=root)
            else:  # the sub-Blueprint compiles within the Blueprint that uses it
                manifest = compile_text(candidate.blueprint_text, source_path=root,
                                        file_overrides={target.path: patched_text})  # fmt: skip
        except PatchError as error:
            return Judged(self.reject(f"the patch does not apply: {error.message}"), candidate)
        except AqueductError as error:
            foreign = _foreign_file(error, candidate, target)
            if foreign is not None:
                # An Arcade `ref` moved by a context value or a macro made the compiler read a
                # file the Blueprint never used; its error would quote that file's content.
                return Judged(self.reject(f"the patched blueprint would load the file {foreign}, which the "
                                          "Blueprint does not use; a patch may not change which Blueprint "
                                          "files (Arcades) load: a person must"), candidate)  # fmt: skip
            return Judged(self.reject(f"the patched blueprint does not compile: {error}"), candidate)
        return Judged(self.ok(), replace(candidate, target=target, patched_text=patched_text, manifest=manifest))


def _foreign_file(error: AqueductError, candidate: Candidate, target: PatchTarget | None) -> str | None:
    """The file an error comes from when the unpatched Blueprint does not load it, else None."""
    import os

    location = getattr(error, "location", None)
    where = getattr(location, "file", None)
    if not where:
        return None
    known = {os.path.realpath(candidate.root_path)}
    if target is not None:
        known.add(os.path.realpath(target.path))
    known |= _blueprint_files(candidate)
    resolved = os.path.realpath(where if os.path.isabs(where) else candidate.root_path.parent / where)
    return None if resolved in known else resolved


def _blueprint_files(candidate: Candidate) -> set[str]:
    """Every file the unpatched Blueprint compiles from (the root and its Arcades)."""
    import os

    try:
        base = compile_text(candidate.blueprint_text, source_path=candidate.root_path)
    except AqueductError:
        return set()
    return {os.path.realpath(m.location.file) for m in base.modules.values() if m.location and m.location.file}


class EffectGate(Gate):
    """What the patched Blueprint would read, write, load and run, against the unpatched one.

    Judged on the compiled Manifests, so every route to a location counts (a path, a reader
    option, a context value, an env var, a macro, a new module). Also the SQL allowlist on
    every SQL-bearing value whose compiled text the patch changed.
    """

    name = "effect"

    def run(self, candidate: Candidate) -> Judged:
        manifest = candidate.compiled(self.name)
        try:
            operator = _operator_guardrails(candidate)
        except AqueductError as error:
            return Judged(self.reject(f"the operator guardrails cannot be read: {error}"), candidate)
        root = candidate.root_path
        try:
            base = compile_text(candidate.blueprint_text, source_path=root)
        except AqueductError as error:
            return Judged(self.reject(f"the unpatched blueprint does not compile, so what the patch changes "
                                      f"cannot be judged: {error}"), candidate)  # fmt: skip
        policy = EffectPolicy.from_settings(candidate.policy.guardrails, operator)
        before = compiled_effect(base, candidate.base_dir)
        after = compiled_effect(manifest, candidate.base_dir)
        problems = judge_effect(before, after, policy, candidate.base_dir)
        if problems:
            more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:3])})" if len(problems) > 1 else ""
            return Judged(self.reject(problems[0] + more), candidate)
        return Judged(self.ok(), replace(candidate, base_manifest=base, effect_checked=manifest))


def _operator_guardrails(candidate: Candidate) -> Any:
    if candidate.operator_guardrails is not None:
        return candidate.operator_guardrails
    # A caller that passed none (the benchmark, a queue built by hand) still gets the operator's
    # limits: a forgotten argument must never lift them.
    return current_settings().config.agent.guardrails


class LineageGate(Gate):
    """Every column the patched SQL reads exists in the upstream schemas we know."""

    name = "lineage"

    def check(self, candidate: Candidate) -> GateResult:
        manifest = candidate.compiled(self.name)
        package = candidate.package
        if package is None:
            return self.ok("no failure package (no upstream schemas known): skipped")
        known = package.upstream_columns()
        if not known or package.failed_module not in manifest.modules:
            return self.ok("no upstream schemas known: skipped")
        module = manifest.module(package.failed_module)
        if not module.sql:
            return self.ok("not a SQL module: skipped")
        edited_upstream = _edited_upstream(candidate.patch, manifest, module.id)
        if edited_upstream:
            # The recorded schemas are those of the inputs before the patch changed them.
            return self.ok(f"the patch changes {', '.join(edited_upstream)} upstream: the sandbox judges the reads")
        available = {c.lower() for cols in known.values() for c in cols}
        outputs = _select_aliases(module.sql)
        try:
            used = referenced_columns(module.sql)
            tables = _table_names(module.sql)
        except AqueductError as error:
            return self.reject(f"the patched SQL does not parse: {error.message}")
        missing = sorted(
            {
                column
                for qualifier, columns in used.items()
                # `device.os.family` reads a field of the struct column `device`: the flat
                # schemas cannot tell; the sandbox does.
                if qualifier is None or qualifier.lower() in tables
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


def _edited_upstream(patch: PatchSpec, manifest: Manifest, module_id: str) -> list[str]:
    """Modules upstream of `module_id` that the patch edits."""
    upstream = manifest.ancestors(module_id)
    edited = {getattr(op, "module_id", None) for op in patch.operations}
    return sorted(m for m in edited if m in upstream)


def _table_names(sql: str) -> set[str]:
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(analysable_sql(sql), read="spark")
    except sqlglot.errors.ParseError as error:
        raise AqueductError(f"the SQL does not parse: {error}") from None
    return {name.lower() for t in tree.find_all(exp.Table) for name in (t.name, t.alias_or_name) if name}


def _select_aliases(sql: str) -> set[str]:
    return {m.lower() for m in re.findall(r"\bAS\s+`?(\w+)`?", sql, re.I)}


# --------------------------------------------------------------------------- Spark gates


_SCRATCH_FORMATS = frozenset({"parquet", "delta", "csv", "json", "orc", "text", "avro"})


def _scratch_module(module: CompiledModule, scratch: Path, *, staging: bool = False) -> CompiledModule:
    """An Egress redirected to a scratch folder; merge/error/ignore become a plain overwrite.

    `staging` writes lossless parquet without partitioning, to be read back for promotion.
    """
    config = module.spec.config
    mode = config.mode if config.mode not in ("merge", "error", "errorifexists", "ignore") else "overwrite"
    fmt = (config.format or "parquet").lower()
    update: dict[str, Any] = {
        "path": str(scratch / module.id), "table": None, "mode": mode, "register_as_table": None,
        # Only a file format writes under scratch (jdbc, kafka, depot... write elsewhere).
        "format": fmt if fmt in _SCRATCH_FORMATS else "parquet",
        # Reader/writer options that name a location (path, checkpointLocation, url) go.
        "options": {k: v for k, v in config.options.items() if not names_a_location(k)},
        "maintenance": None,
    }  # fmt: skip
    if staging:
        update.update(format="parquet", partition_by=None, options={}, maintenance=None, mode="overwrite")
    new_config = config.model_copy(update=update)
    return module.model_copy(update={"spec": module.spec.model_copy(update={"config": new_config})})


class ScratchRun(NamedTuple):
    """A replay with its writes in scratch: the runner's result, and every Egress written as
    (the Egress of the Manifest, the scratch Egress that wrote in its place)."""

    result: RunResult
    written: list[tuple[CompiledModule, CompiledModule]]


def run_on_spark(spark: Any, manifest: Manifest, *, sample_rows: int | None, scratch: Path,
                 staging: bool = False) -> ScratchRun:  # fmt: skip
    """Run a manifest as a real run does (`run_manifest`: ports, spillways, Probes, polling
    Regulators, shared frames cached), Egress writes redirected to `scratch`, optionally on
    `sample_rows` rows per Ingress. A blocking Assert raises AssertionFailed.
    """
    targets: dict[str, CompiledModule] = {}
    written: list[tuple[CompiledModule, CompiledModule]] = []

    def redirect(egress: CompiledModule) -> CompiledModule:
        targets[egress.id] = _scratch_module(egress, scratch, staging=staging)
        return targets[egress.id]

    def record(module: CompiledModule, _outcome: ModuleResult) -> None:
        if module.id in targets:  # an Egress that finished writing
            written.append((module, targets[module.id]))

    result = run_manifest(spark, manifest, sample_rows=sample_rows, redirect=redirect, on_module_end=record)
    return ScratchRun(result, written)


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

    def run(self, candidate: Candidate) -> Judged:
        compiled = candidate.compiled(self.name)
        if candidate.policy.sandbox_mode == "off":
            return Judged(self.ok("sandbox_mode: off"), candidate)
        sample = None if candidate.policy.sandbox_mode == "preflight" else self.sample_rows
        try:
            manifest = bound_for_replay(compiled, self.depot_lookup, run_id="sandbox")
        except AqueductError as error:
            return Judged(self.reject(f"the patched pipeline cannot be prepared for a replay: {error}"), candidate)
        refusal = _refuse_unchecked(candidate, manifest)
        if refusal:
            return Judged(self.reject(refusal), candidate)
        scratch = Path(tempfile.mkdtemp(prefix="aq-sandbox-", dir=self.scratch_root))
        spark = self.spark_factory()
        replayed = candidate
        try:
            run = run_on_spark(spark, manifest, sample_rows=sample, scratch=scratch)
            contracts = candidate.package.contracts if candidate.package is not None else {}
            if contracts:  # measured only where there is a last good output to hold it against
                replayed = replace(candidate, sandbox_outputs=_published(run, contracts),
                                   sandbox_whole_input=run.result.whole_input())  # fmt: skip
        except Exception as error:  # noqa: BLE001 - any failure of the candidate is a rejection
            message = f"the patched pipeline fails on sampled input: {_failure_text(candidate, error)}"
            return Judged(self.reject(message), candidate)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return Judged(self.ok(f"replayed on {sample or 'all'} input rows per Ingress"), replayed)


def _published(run: ScratchRun, contracts: dict[str, Any]) -> dict[str, OutputProfile]:
    """What each Egress with a contract received in the replay, measured (one job each)."""
    outcomes = run.result.modules
    return {egress: profile_output(outcomes[egress].outputs["main"])
            for egress in contracts if egress in outcomes and "main" in outcomes[egress].outputs}  # fmt: skip


class ContractGate(Gate):
    """The sandbox's outputs keep the last good run's contract (healing/contract.py)."""

    name = "contract"

    def check(self, candidate: Candidate) -> GateResult:
        package = candidate.package
        if package is None or not package.contracts:
            return self.ok("no last good run on record: skipped")
        if not candidate.sandbox_outputs:
            return self.ok("no published output was replayed: skipped")
        found = []
        for egress, profile in candidate.sandbox_outputs.items():
            found += [f"'{egress}': {v}" for v in
                      violations(package.contracts[egress], profile, whole_input=candidate.sandbox_whole_input)]  # fmt: skip
        if found:
            return self.reject(f"the patched pipeline runs but breaks the output of {package.last_good}: "
                               + "; ".join(found))  # fmt: skip
        return self.ok(f"outputs keep the contract of {package.last_good}")



def _failure_text(candidate: Candidate, error: Exception) -> str:
    """A replay's error, redacted where it is made: data values go as the structured error says.

    The message goes back to the diagnoser and into the store; the error's own facts (its
    SQLSTATE class, its parameters) decide what is data, which later text-only redaction
    could not tell from an operation or module name in quotes.
    """
    redactor = candidate.package.redactor if candidate.package is not None else Redactor.for_manifest(candidate.manifest)
    text = str(error) if isinstance(error, AqueductError) else f"{type(error).__name__}: {error}"
    if isinstance(error, ModuleFailed):
        return redactor.error_text(text, error.error.to_dict())
    # No structured facts: treat every quoted value as data.
    return redactor.text(text, data_literals=True)


def _refuse_unchecked(candidate: Candidate, bound: Manifest) -> str | None:
    """Why `bound` must not execute, or None: its effect and SQL passed, checked again here.

    Defence in depth: a caller that skipped the effect gate gets it run now, and the SQL
    allowlist runs on the exact (run-token bound) Manifest about to execute.
    """
    if candidate.effect_checked is not candidate.manifest:
        verdict, candidate = EffectGate().run(candidate)
        if not verdict.passed:
            return f"not executed: the effect gate rejects the patch: {verdict.message}"
    problems = sql_problems_of(bound, candidate.base_manifest)
    if problems:
        return f"not executed: {problems[0]}"
    return None


class FullRunGate(Gate):
    """Auto mode: the whole pipeline on all data, outputs in scratch, promoted only on success."""

    name = "full_run"

    def __init__(self, spark_factory: Callable[[], Any], *, scratch_root: Path | None = None) -> None:
        self.spark_factory = spark_factory
        self.scratch_root = scratch_root

    def check(self, candidate: Candidate) -> GateResult:
        compiled = candidate.compiled(self.name)
        if uses_depot(compiled):
            # Publishing outside a Dagster run could not advance the watermark with the data
            # (the next run would append the same slice again): a person applies it instead.
            return self.reject("the pipeline keeps state in the Depot (watermarks): it is not "
                               "re-run and published outside a Dagster run")  # fmt: skip
        try:
            manifest = bound_for_replay(compiled, run_id="sandbox")
        except AqueductError as error:
            return self.reject(f"the patched pipeline cannot be prepared for a re-run: {error}")
        refusal = _refuse_unchecked(candidate, manifest)
        if refusal:
            return self.reject(refusal)
        spark = self.spark_factory()
        scratch = Path(tempfile.mkdtemp(prefix="aq-fullrun-", dir=self.scratch_root))
        try:
            written = run_on_spark(spark, manifest, sample_rows=None, scratch=scratch, staging=True).written
            # Every output was produced: now publish them with their real write semantics.
            for real, target in written:
                frame = spark.read.parquet(target.spec.config.path)
                execute_module(spark, real, {real.inputs[0].alias: frame})
        except Exception as error:  # noqa: BLE001 - any failure keeps the real outputs untouched
            return self.reject(f"the full re-run failed, nothing was published: {_failure_text(candidate, error)}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.ok(f"re-ran and published {len(written)} output(s)")


class GateRun(NamedTuple):
    """Every verdict, in order, up to the first rejection; and the candidate as the gates that
    passed left it (its target, patched text and Manifest once the compile gate passed)."""

    results: list[GateResult]
    candidate: Candidate


def run_gates(candidate: Candidate, gates: Sequence[Gate]) -> GateRun:
    """Run gates in order, each on the candidate the one before produced, stopping at the
    first rejection (`escalations` reads what passed but needs a person).

    A gate that cannot judge a patch (any error of its own) rejects it: the gates fail
    closed, and one hostile patch never aborts the heal that the next proposal could finish.
    """
    results = []
    for gate in gates:
        try:
            result, candidate = gate.run(candidate)
        except Exception as error:  # noqa: BLE001 - fail closed, keep the heal going
            result = gate.reject(f"the {gate.name} gate could not judge the patch: "
                                 f"{type(error).__name__}: {str(error)[:300]}")  # fmt: skip
        results.append(result)
        if not result.passed:
            break
    return GateRun(results, candidate)


def escalations(results: Sequence[GateResult]) -> list[str]:
    """Why gates that passed still want a person to approve (low confidence, policy flags)."""
    return [result.message for result in results if result.passed and result.escalate]
