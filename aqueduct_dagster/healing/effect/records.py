"""The records of an effect: a location, a SQL value, an Effect, the policy it is judged under."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aqueduct_dagster.healing.sql_policy import SqlKind

#: Spark settings a patch may change, with the largest value it may set (operators change
#: a ceiling with `agent.guardrails.engine_conf_ceilings` in aqueduct.yml). A bool ceiling
#: means "true or false"; a size is bytes ("16g"); None means any value of the key's kind.
DEFAULT_ENGINE_CEILINGS: dict[str, Any] = {
    "spark.sql.shuffle.partitions": 4000,
    "spark.driver.maxResultSize": "8g",
    "spark.sql.autoBroadcastJoinThreshold": "1g",
    "spark.sql.broadcastTimeout": 3600,
    "spark.sql.adaptive.enabled": True,
    "spark.sql.adaptive.skewJoin.enabled": True,
    "spark.sql.files.maxPartitionBytes": "2g",
    "spark.executor.memory": "64g",
    "spark.executor.memoryOverhead": "16g",
    "spark.driver.memory": "32g",
    "duckdb.memory_limit": "64g",
    "duckdb.threads": 64,
}


@dataclass(frozen=True)
class Target:
    """One location: `kind` (path, table, jdbc, url, catalog, checkpoint, depot, code, hook)."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind} {self.value}"


@dataclass(frozen=True)
class SqlValue:
    where: str
    text: str
    kind: SqlKind


@dataclass
class Effect:
    """Every location a compiled Blueprint touches; each maps to where it is configured."""

    reads: dict[Target, str] = field(default_factory=dict)
    writes: dict[Target, str] = field(default_factory=dict)
    code: dict[Target, str] = field(default_factory=dict)
    engine_conf: dict[str, Any] = field(default_factory=dict)
    #: module id -> its SQL-bearing values, compiled.
    sql: dict[str, list[SqlValue]] = field(default_factory=dict)
    #: module id -> names its SQL may read (input aliases).
    inputs: dict[str, set[str]] = field(default_factory=dict)
    udfs: set[str] = field(default_factory=set)
    #: Environment variables and secrets the compiled values were made from (names only).
    env: set[str] = field(default_factory=set)
    #: One per Egress (its id and format), also one that names no place (console, noop).
    outputs: dict[Target, str] = field(default_factory=dict)
    #: Egress module id -> how it writes (format, mode, keys, schema handling, maintenance).
    write_modes: dict[str, str] = field(default_factory=dict)
    #: Assert module id -> its rules (as dicts): the quality checks the Blueprint runs.
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Egress module id -> the Asserts every path of data into it passes.
    guards: dict[str, set[str]] = field(default_factory=dict)
    #: Where a retry policy is set -> its values (the Blueprint's, each module's).
    retry: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: `module 'x' config.key` -> a count or duration the module asks the engine for.
    amounts: dict[str, Any] = field(default_factory=dict)
    #: Module id -> its `on_failure:` block.
    on_failure: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class EffectPolicy:
    allowed_paths: Sequence[str] = ()
    denied_paths: Sequence[str] = ()
    engine_ceilings: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_ENGINE_CEILINGS))

    @classmethod
    def from_settings(cls, agent_guardrails: Any = None, operator: Any = None) -> EffectPolicy:
        """The Blueprint's `agent.guardrails` and the operator's (aqueduct.yml) combined.

        Denials add up; allowed paths narrow (both must allow); ceilings are the operator's.
        """
        allowed = list(getattr(agent_guardrails, "allowed_paths", None) or [])
        allowed += list(getattr(operator, "allowed_paths", None) or [])
        denied = list(getattr(agent_guardrails, "deny_patterns", None) or [])
        denied += list(getattr(agent_guardrails, "denied_paths", None) or [])
        denied += list(getattr(operator, "denied_paths", None) or [])
        # The operator moves ceilings; which keys a patch may set at all is fixed in code.
        ceilings = dict(DEFAULT_ENGINE_CEILINGS)
        for key, value in (getattr(operator, "engine_conf_ceilings", None) or {}).items():
            if key in ceilings:
                ceilings[key] = value
        return cls(tuple(allowed), tuple(denied), ceilings)
