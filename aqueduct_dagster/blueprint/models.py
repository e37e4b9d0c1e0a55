"""The Blueprint document model (Aqueduct 1.0 format), as pydantic records.

These records describe a Blueprint *after* templating (macros, `${ctx.*}`, `@aq.*`) and
before graph compilation. Module types form one discriminated union on `type`; adding a
type means adding its config record and listing it in `Module` below.

Config records forbid unknown keys so that a typo gets a "did you mean" error instead of
being silently ignored. Both dialects of the format are read: every key of the
aqueduct-core 2.3.0 schema, and the Aqueduct 1.x spellings 2.3 dropped (`name` optional,
top-level `spark_config`, `agent.approval_mode`, `agent.budget`, and the LLM connection keys
1.x allowed under `agent`, which are accepted and ignored: aqueduct.yml configures the LLM).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

#: Validation-context flag for re-validating a compiled Manifest: its Arcade modules carry
#: compiler-generated `<arcade>__<child>` ids, which user-written ids may not use.
GENERATED_IDS = "aqueduct_generated_ids"


class Strict(BaseModel):
    """Base for records whose unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- policies


class Backoff(Strict):
    strategy: Literal["linear", "exponential", "fixed"] = "exponential"
    base_seconds: int = 30
    max_seconds: int = 600
    jitter: bool = True


class RetryPolicy(Strict):
    max_attempts: int = 1
    backoff: Backoff = Field(default_factory=Backoff)
    deadline_seconds: int | None = Field(default=None, gt=0)
    on_exhaustion: Literal["trigger_agent", "abort", "alert_only"] = "trigger_agent"
    transient_errors: list[Any] = Field(default_factory=list)
    non_transient_errors: list[str] = Field(default_factory=list)


class ModuleRetry(Strict):
    """Per-module override of `retry_policy`; unset fields inherit field by field."""

    max_attempts: int | None = Field(default=None, ge=1)
    backoff: Backoff | None = None
    deadline_seconds: int | None = Field(default=None, gt=0)
    on_exhaustion: Literal["trigger_agent", "abort", "alert_only"] | None = None
    transient_errors: list[Any] | None = None
    non_transient_errors: list[str] | None = None


class Guardrails(Strict):
    allowed_paths: list[str] = Field(default_factory=list)
    deny_patterns: list[str] = Field(default_factory=list)
    forbidden_ops: list[str] = Field(default_factory=list)
    heal_on_errors: list[str] = Field(default_factory=list)
    never_heal_errors: list[str] = Field(default_factory=list)


ApprovalMode = Literal["disabled", "human", "ci", "auto"]


class AgentBudget(Strict):
    """Aqueduct 1.x `agent.budget` in a Blueprint (2.3 keeps the budget in aqueduct.yml)."""

    max_reprompts: int | None = Field(default=None, ge=1)
    max_seconds: float | None = Field(default=None, gt=0)
    max_tokens_total: int | None = None
    same_error_consecutive: int | None = None
    same_signature_overall: int | None = None
    progress_stalled_window: int | None = None


class Agent(Strict):
    """Per-blueprint healing policy. Connection settings live in aqueduct.yml only."""

    approval: ApprovalMode = "disabled"
    # Aqueduct 1.x spells it `approval_mode`.
    approval_mode: ApprovalMode | None = Field(default=None, exclude=True)
    allow_defer: bool = False
    confidence_threshold: float = 0.7
    deep_loop: bool = False
    guardrails: Guardrails = Field(default_factory=Guardrails)
    max_heal_attempts_per_hour: int | None = Field(default=None, ge=1)
    max_patches: int = 1
    max_reprompts: int | None = Field(default=None, ge=1)
    on_heal_failure: Literal["stage", "discard", "abort"] = "stage"
    on_pending_patches: Literal["ignore", "warn", "block"] = "warn"
    patch_validation: Literal["full_run", "sandbox"] | None = None
    prompt_context: str | None = None
    sandbox_mode: Literal["sample", "preflight", "off"] = "sample"

    # ---- Aqueduct 1.x only. The budget's reprompt cap becomes `max_reprompts`; the
    # connection keys are read and dropped, so a Blueprint never picks the LLM endpoint its
    # failure context is sent to.
    budget: AgentBudget | None = Field(default=None, exclude=True)
    aggressive_max_patches: int | None = Field(default=None, ge=1, exclude=True)
    block_on_explain_regression: bool | None = Field(default=None, exclude=True)
    provider: str | None = Field(default=None, exclude=True)
    base_url: str | None = Field(default=None, exclude=True)
    model: str | list[str] | None = Field(default=None, exclude=True)
    provider_options: dict[str, Any] | None = Field(default=None, exclude=True)
    timeout: float | None = Field(default=None, exclude=True)
    cascade: list[dict[str, Any]] | None = Field(default=None, exclude=True)

    @field_validator("approval", "approval_mode", mode="before")
    @classmethod
    def _aggressive_is_auto(cls, value: Any) -> Any:
        # 1.x `aggressive` was `auto` with several patches; the patch count is `max_patches`.
        return "auto" if value == "aggressive" else value

    def model_post_init(self, __context: Any) -> None:
        if self.approval_mode is not None and "approval" not in self.model_fields_set:
            self.approval = self.approval_mode
        if self.aggressive_max_patches is not None and "max_patches" not in self.model_fields_set:
            self.max_patches = self.aggressive_max_patches
        if self.budget is not None and self.budget.max_reprompts and self.max_reprompts is None:
            self.max_reprompts = self.budget.max_reprompts


class SparkEngineBlock(Strict):
    conf: dict[str, Any] = Field(default_factory=dict)
    master_url: str | None = None


class DuckDBEngineBlock(Strict):
    memory_limit: str | None = None
    threads: int | None = Field(default=None, gt=0)


class EngineBlock(Strict):
    spark: SparkEngineBlock = Field(default_factory=SparkEngineBlock)
    duckdb: DuckDBEngineBlock = Field(default_factory=DuckDBEngineBlock)


class HookEntry(Strict):
    """One hook action: chain a Blueprint (its id or file), call a webhook, or run a command.

    `in_process` is the peer's (reuse its session); here a chained Blueprint is always a
    Dagster run of its own job. `timeout` bounds a command, in seconds.
    """

    blueprint: str | None = None
    command: str | None = None
    in_process: bool = False
    timeout: int = 300
    webhook: str | dict[str, Any] | None = None
    #: Fire only when the failure's error type, condition or exception class is one of these.
    when_error: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_action(self) -> HookEntry:
        # An entry without one is accepted, as the peer's schema does, and skipped with a warning.
        actions = [key for key in ("blueprint", "webhook", "command") if getattr(self, key)]
        if len(actions) > 1:
            raise ValueError(f"a hook takes exactly one of blueprint:, webhook:, command: (it has "
                             f"{', '.join(actions)}); write one entry per action")  # fmt: skip
        return self

    @property
    def action(self) -> str | None:
        return next((key for key in ("blueprint", "webhook", "command") if getattr(self, key)), None)


class Hooks(Strict):
    """Lifecycle hooks: on_success / on_failure after a run ends; on_patch_pending when a heal
    stages a patch for review, on_healed when a patch is applied (dagster/hooks.py runs them)."""

    on_success: list[HookEntry] = Field(default_factory=list)
    on_failure: list[HookEntry] = Field(default_factory=list)
    on_patch_pending: list[HookEntry] = Field(default_factory=list)
    on_healed: list[HookEntry] = Field(default_factory=list)

    @field_validator("on_success")
    @classmethod
    def _success_has_no_error(cls, entries: list[HookEntry]) -> list[HookEntry]:
        if any(entry.when_error for entry in entries):
            raise ValueError("when_error matches a failure: on_success has none; move the entry to on_failure")
        return entries


class Partitions(Strict):
    """How a Blueprint's runs are sliced (a Dagster PartitionsDefinition): `daily` and
    `hourly` from `start` (ISO date/time, up to `end` if given), or `static` `values`. A run of
    one partition binds `@aq.date.*` to the partition's start and `@aq.run.partition()` to
    its key, so a backfill of a day reads and writes that day."""

    type: Literal["daily", "hourly", "static"]
    start: str | None = None
    end: str | None = None
    values: list[str] = Field(default_factory=list)
    timezone: str = "UTC"

    @field_validator("values")
    @classmethod
    def _static_needs_values(cls, values: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("type") == "static" and not values:
            raise ValueError("static partitions need `values` (a list of keys)")
        return [str(v) for v in values]

    def model_post_init(self, __context: Any) -> None:
        if self.type in ("daily", "hourly") and not self.start:
            raise ValueError(f"{self.type} partitions need `start` (e.g. start: '2026-01-01')")


class Warnings(Strict):
    suppress: list[str] = Field(default_factory=list)


class HealedByRecord(Strict):
    patch_id: str
    engine: str
    classification: Literal["dialect_neutral", "engine_shaped"]
    applied_at: str
    reverted_at: str | None = None
    validated_on: list[Any] = Field(default_factory=list)


class Udf(Strict):
    id: str
    lang: Literal["python", "java", "scala"] = "python"
    module: str | None = None
    entry: str | None = None
    class_: str | None = Field(default=None, alias="class")
    jar: str | None = None
    path: str | None = None
    label: str | None = None
    return_type: str | None = None
    deterministic: bool = True
    params: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- module configs


class IngressTimeTravel(Strict):
    version: int | None = None
    timestamp: str | None = None


class IngressConfig(Strict):
    format: str | None = None
    path: str | None = None
    table: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    header: bool | None = None
    infer_schema: bool | None = None
    schema_hint: dict[str, Any] | list[Any] | None = None
    known_columns: list[str] | None = None
    on_new_columns: Literal["allow", "fail", "alert"] | None = None
    partition_filters: str | None = None
    class_: str | None = Field(default=None, alias="class")
    time_travel: IngressTimeTravel | None = None

    @model_validator(mode="after")
    def _custom_source_is_whole(self) -> IngressConfig:
        custom = (self.format or "").lower() == "custom"
        if custom and not self.class_:
            raise ValueError("`format: custom` reads with a data source of your own: name it with "
                             "`class: <module>.<DataSource subclass>` (the module beside the Blueprint)")  # fmt: skip
        if self.class_ and not custom:
            raise ValueError(f"`class` names a data source of your own, read with `format: custom` "
                             f"(this Ingress has format: {self.format or 'none'}); write format: custom")  # fmt: skip
        return self


ChannelOp = Literal[
    "sql", "join", "filter", "select", "rename", "cast", "deduplicate",
    "union", "sort", "repartition", "coalesce", "cache",
]  # fmt: skip


class ChannelConfig(Strict):
    op: ChannelOp | None = None
    query: str | None = None
    # filter
    condition: str | None = None
    expr: str | None = None
    # select / rename / cast / deduplicate: list of names, or a mapping old -> new / name -> type
    columns: list[str] | dict[str, str] | str | None = None
    cols: list[str] | None = None
    col: str | None = None
    column: str | None = None
    key: str | list[str] | None = None
    # join
    left: str | None = None
    right: str | None = None
    join_type: Literal["inner", "left", "right", "full", "semi", "anti", "cross"] | None = None
    broadcast_side: Literal["left", "right"] | None = None
    allow_missing_columns: bool | None = None
    # sort / repartition / coalesce / cache
    order_by: str | list[str] | None = None
    num: int | None = None
    num_partitions: int | None = None
    storage_level: (
        Literal[
            "MEMORY_AND_DISK", "MEMORY_AND_DISK_SER", "MEMORY_ONLY", "MEMORY_ONLY_SER",
            "DISK_ONLY", "DISK_ONLY_2", "OFF_HEAP",
        ]
        | None
    ) = None  # fmt: skip
    spillway_condition: str | None = None
    metrics_boundary: bool | None = None


class EgressMaintenance(Strict):
    optimize: bool | None = None
    zorder_by: str | list[str] | None = None
    vacuum: int | float | None = None
    compaction: bool | None = None
    clean: bool | None = None
    expire_snapshots: bool | None = None
    rewrite_data_files: bool | None = None


EgressMode = Literal[
    "overwrite", "append", "error", "errorifexists", "ignore", "merge", "overwrite_partitions"
]


class EgressConfig(Strict):
    format: str | None = None
    path: str | None = None
    table: str | None = None
    mode: EgressMode | None = None
    merge_key: str | list[str] | None = None
    merge_schema: bool | None = None
    overwrite_schema: bool | None = None
    partition_by: list[str] | None = None
    replace_where: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    header: bool | None = None
    coalesce: int | bool | None = None
    repartition: int | bool | None = None
    register_as_table: str | None = None
    on_new_columns: Literal["allow", "fail", "alert"] | None = None
    maintenance: EgressMaintenance | None = None
    class_: str | None = Field(default=None, alias="class")
    # format: depot
    key: str | None = None
    value: str | None = None
    value_expr: str | None = None
    watermark_key: str | None = None


OnFailAction = Literal["abort", "warn", "webhook", "quarantine", "trigger_agent"]


class AssertOnFailBlock(Strict):
    action: OnFailAction
    url: str | None = None


AssertRuleType = Literal[
    "schema_match", "min_rows", "max_rows", "not_null", "null_rate", "freshness",
    "sql", "sql_row", "custom", "spillway_rate",
]  # fmt: skip


#: The keys each rule type cannot do without (the engine reads these, the compiler checks them).
RULE_REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "min_rows": ("min",),
    "max_rows": ("max",),
    "not_null": ("column",),
    "null_rate": ("column", "max"),
    "schema_match": ("expected",),
    "freshness": ("column", "max_age_hours"),
    "sql": ("expr",),
    "sql_row": ("expr",),
    "spillway_rate": ("max",),
    "custom": ("fn",),
}


class AssertRule(Strict):
    type: AssertRuleType
    id: str | None = None
    column: str | None = None
    expected: dict[str, str] | None = None
    expr: str | None = None
    fn: str | None = None
    fraction: float | None = None
    min: int | None = None
    max: float | None = None
    max_age_hours: float | None = None
    min_pass_rate: float | None = None
    error_type: str | None = None
    on_fail: OnFailAction | AssertOnFailBlock | None = None

    @model_validator(mode="after")
    def _has_required_keys(self) -> AssertRule:
        # Found when the Blueprint loads (file:line in the error), not when the run reaches it.
        missing = [key for key in RULE_REQUIRED_KEYS.get(self.type, ()) if getattr(self, key) is None]
        if missing:
            example = {"fn": "quality.check_orders", "column": "<column>", "expr": "<SQL expression>",
                       "expected": "{column: type}"}  # fmt: skip
            sample = ", ".join(f"{key}: {example.get(key, '<value>')}" for key in missing)
            raise ValueError(f"a `{self.type}` rule needs {' and '.join(missing)} (e.g. {sample})")
        return self

    @property
    def action(self) -> OnFailAction:
        if self.on_fail is None:
            return "abort"
        return self.on_fail if isinstance(self.on_fail, str) else self.on_fail.action

    @property
    def name(self) -> str:
        return self.id or (f"{self.type}:{self.column}" if self.column else self.type)


class AssertConfig(Strict):
    rules: list[AssertRule] = Field(default_factory=list)


class JunctionBranch(Strict):
    id: str
    condition: str | None = None
    value: str | None = None


class JunctionConfig(Strict):
    mode: Literal["conditional", "broadcast", "partition"] | None = None
    branches: list[JunctionBranch] = Field(default_factory=list)
    partition_key: str | None = None


class FunnelConfig(Strict):
    mode: Literal["union_all", "union", "coalesce", "zip"] | None = None
    inputs: list[str] = Field(default_factory=list)
    schema_check: Literal["strict", "permissive"] | None = None


class ProbeSignal(Strict):
    type: str
    id: str | None = None
    column: str | None = None
    columns: list[str] | None = None
    fraction: float | None = None
    n: int | None = None
    percentiles: list[float] | None = None
    method: Literal["sample", "spark_listener"] | None = None
    allow_sample: bool | None = None
    expr: str | None = None
    sql: str | None = None
    passed_when: str | None = None
    module: str | None = None
    entry: str | None = None
    plugin: str | None = None


class ProbeConfig(Strict):
    signals: list[ProbeSignal] = Field(default_factory=list)
    report: Literal["stdout"] | None = None


class RegulatorConfig(Strict):
    on_block: Literal["skip", "abort", "trigger_agent"] | None = None
    timeout_seconds: float | None = None
    poll_seconds: float | None = None


class ArcadeConfig(Strict):
    pass


# --------------------------------------------------------------------------- modules


class ModuleBase(Strict):
    """What every module has; each type's record adds its config and says what it does.

    The class-level answers below describe behaviour, not identity: a later layer asks
    `module.writes_sink` rather than comparing type names, so a new type states its
    behaviour here once and every layer follows.
    """

    #: Reads data from outside the Blueprint (files, a table, a service); takes no data input.
    reads_source: ClassVar[bool] = False
    #: Writes its input out of the Blueprint; its main output is that write.
    writes_sink: ClassVar[bool] = False
    #: A quality check of its input's rows: its main output is its input (less any rows
    #: quarantined to its spillway port), and it can stand as a Dagster asset check.
    is_quality_check: ClassVar[bool] = False
    #: Watches the module it is attached to and emits signals, never rows: its edges carry
    #: no data, and only a module that gates on signals may read it.
    emits_signals: ClassVar[bool] = False
    #: Reads Probe signals and, while they say closed, publishes nothing: every module
    #: downstream of it is skipped.
    gates_on_signals: ClassVar[bool] = False
    #: Makes one output of many inputs, in the order its `config.inputs` lists them.
    merges_inputs: ClassVar[bool] = False
    #: Stands for a sub-Blueprint (`ref:`) whose modules replace it when it is compiled.
    expands_into_modules: ClassVar[bool] = False
    #: Its output is a frame worth checkpointing (not a write, not signals).
    checkpointable: ClassVar[bool] = True
    #: Its output has the columns of its (first) input, whatever its config says.
    passes_columns_through: ClassVar[bool] = False
    #: Its outputs are lazy filters of its one data input (or that input itself): whoever
    #: reads them reads that input, so the input is what a runner caches.
    filters_its_input: ClassVar[bool] = False
    #: One data input and one output: a Blueprint without `edges:` may chain it.
    chainable: ClassVar[bool] = False
    #: An aqtest can run it alone on inline rows (its result depends on its inputs only).
    testable_alone: ClassVar[bool] = False

    @property
    def output_ports(self) -> tuple[str, ...]:
        """The ports its data leaves by, besides the spillway: `main`, or a Junction's branches."""
        return ("main",)

    @property
    def runs_sql(self) -> bool:
        """Whether its output is the result of a SQL query it holds (`config.query`)."""
        return False

    @property
    def materializes_incrementally(self) -> bool:
        """Whether each run processes only the rows past a watermark kept in the Depot."""
        return False

    id: str
    label: str | None = None
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    enabled: bool | str = True
    engine: str | None = None
    checkpoint: bool = False
    retry: ModuleRetry | None = None
    on_failure: dict[str, Any] | None = None
    on_failure_webhook: str | dict[str, Any] | None = None
    spillway: str | None = None

    @field_validator("id")
    @classmethod
    def _id_is_a_plain_name(cls, value: str, info: ValidationInfo) -> str:
        if not value or not value.strip():
            raise ValueError("module id must not be empty")
        if "__" in value and not (info.context or {}).get(GENERATED_IDS):
            raise ValueError(
                f"module id '{value}' contains '__', which is reserved for Arcade namespacing"
            )
        if any(ch in value for ch in " ./\\:"):
            raise ValueError(
                f"module id '{value}' may only hold letters, digits, '_' and '-' "
                "(it becomes part of a Dagster asset key and a SQL view name)"
            )
        return value


class Ingress(ModuleBase):
    type: Literal["Ingress"]
    chainable: ClassVar[bool] = True
    reads_source: ClassVar[bool] = True
    config: IngressConfig = Field(default_factory=IngressConfig)


class Channel(ModuleBase):
    type: Literal["Channel"]
    chainable: ClassVar[bool] = True
    testable_alone: ClassVar[bool] = True
    config: ChannelConfig = Field(default_factory=ChannelConfig)
    materialize: Literal["incremental"] | None = None
    watermark_column: str | None = None

    @property
    def runs_sql(self) -> bool:
        return self.config.op in (None, "sql")

    @property
    def materializes_incrementally(self) -> bool:
        return self.materialize == "incremental"


class Egress(ModuleBase):
    type: Literal["Egress"]
    chainable: ClassVar[bool] = True
    writes_sink: ClassVar[bool] = True
    checkpointable: ClassVar[bool] = False
    passes_columns_through: ClassVar[bool] = True
    config: EgressConfig = Field(default_factory=EgressConfig)


class Assert(ModuleBase):
    type: Literal["Assert"]
    filters_its_input: ClassVar[bool] = True
    chainable: ClassVar[bool] = True
    testable_alone: ClassVar[bool] = True
    is_quality_check: ClassVar[bool] = True
    passes_columns_through: ClassVar[bool] = True
    config: AssertConfig = Field(default_factory=AssertConfig)


class Junction(ModuleBase):
    type: Literal["Junction"]
    filters_its_input: ClassVar[bool] = True
    testable_alone: ClassVar[bool] = True
    passes_columns_through: ClassVar[bool] = True
    config: JunctionConfig = Field(default_factory=JunctionConfig)

    @property
    def output_ports(self) -> tuple[str, ...]:
        return tuple(branch.id for branch in self.config.branches)


class Funnel(ModuleBase):
    type: Literal["Funnel"]
    testable_alone: ClassVar[bool] = True
    merges_inputs: ClassVar[bool] = True
    passes_columns_through: ClassVar[bool] = True
    config: FunnelConfig = Field(default_factory=FunnelConfig)


class Probe(ModuleBase):
    type: Literal["Probe"]
    emits_signals: ClassVar[bool] = True
    checkpointable: ClassVar[bool] = False
    passes_columns_through: ClassVar[bool] = True
    config: ProbeConfig = Field(default_factory=ProbeConfig)
    attach_to: str | None = None


class Regulator(ModuleBase):
    type: Literal["Regulator"]
    filters_its_input: ClassVar[bool] = True
    gates_on_signals: ClassVar[bool] = True
    passes_columns_through: ClassVar[bool] = True
    config: RegulatorConfig = Field(default_factory=RegulatorConfig)


class Arcade(ModuleBase):
    type: Literal["Arcade"]
    expands_into_modules: ClassVar[bool] = True
    config: ArcadeConfig = Field(default_factory=ArcadeConfig)
    ref: str | None = None
    context_override: dict[str, Any] | None = None


Module = Annotated[
    Ingress | Channel | Egress | Assert | Junction | Funnel | Probe | Regulator | Arcade,
    Field(discriminator="type"),
]

#: The module records, and their `type:` names, in the order `Module` lists them.
MODULE_MODELS: tuple[type[ModuleBase], ...] = get_args(get_args(Module)[0])
MODULE_TYPES: tuple[str, ...] = tuple(
    get_args(model.model_fields["type"].annotation)[0] for model in MODULE_MODELS
)


def module_types_where(behaviour: Callable[[type[ModuleBase]], bool]) -> tuple[str, ...]:
    """The type names whose model has `behaviour` (e.g. `lambda model: model.chainable`),
    in declaration order: for messages that list what a Blueprint may use."""
    return tuple(name for name, model in zip(MODULE_TYPES, MODULE_MODELS, strict=True) if behaviour(model))


class Edge(Strict):
    from_: str = Field(alias="from")
    to: str
    port: str = "main"
    as_: str | None = Field(default=None, alias="as")
    error_types: list[str] = Field(default_factory=list)


class Blueprint(Strict):
    """A whole Blueprint document."""

    aqueduct: str
    id: str
    #: Required by 2.3, optional in 1.x: the id stands in.
    name: str | None = None
    description: str = ""
    context: dict[str, Any] = Field(default_factory=dict)
    context_profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    required_context: list[str] = Field(default_factory=list)
    macros: dict[str, str] = Field(default_factory=dict)
    engine: EngineBlock = Field(default_factory=EngineBlock)
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    agent: Agent = Field(default_factory=Agent)
    hooks: Hooks = Field(default_factory=Hooks)
    warnings: Warnings = Field(default_factory=Warnings)
    checkpoint: bool = False
    healed_by: list[HealedByRecord] = Field(default_factory=list)
    udf_registry: list[Udf] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list)
    #: Dagster-native scheduling: partitions, a cron schedule, an automation condition.
    partitions: Partitions | None = None
    schedule: str | None = None
    automation: Literal["eager", "on_cron"] | None = None
    modules: list[Module]
    edges: list[Edge] | None = None
    #: Aqueduct 1.x: the Blueprint's Spark settings, `engine.spark.conf` since 2.0.
    spark_config: dict[str, Any] = Field(default_factory=dict, exclude=True)

    def model_post_init(self, __context: Any) -> None:
        if self.name is None:
            self.name = self.id
        if self.spark_config:
            # Both spellings in one file: the 2.x block wins key by key.
            self.engine.spark.conf = {**self.spark_config, **self.engine.spark.conf}

    @field_validator("aqueduct", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # `aqueduct: 1.0` unquoted is a YAML float.
        return str(value) if isinstance(value, (int, float)) else value
