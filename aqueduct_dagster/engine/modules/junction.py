"""Junction: split one frame into named branches, lazily (no Spark job).

Outputs are keyed by branch id (there is no `main`):

- `conditional`: each branch gets the rows its `condition` holds for. Branches are NOT
  exclusive (as in aqueduct-core): a row matching two conditions goes to both. The branch
  whose condition is `_else_` gets the rows no other branch's condition holds for, wherever
  it is declared; a condition that is null for a row counts as not holding, so no row is
  lost between the branches.
- `broadcast`: every branch gets every row (the same plan; no copy, no shuffle).
- `partition`: each branch gets the rows whose `partition_key` equals its `value` (its id when
  no value is given); a branch with value or condition `_else_` gets every other row,
  null keys included.

In `conditional` and `partition` modes the `spillway` port carries the rows no branch took
(always empty when there is an `_else_` branch), tagged with `_aq_error_*` columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aqueduct_dagster.blueprint.models import JunctionBranch, JunctionConfig
from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.modules.common import require, single_input
from aqueduct_dagster.engine.modules.spillway import with_error_columns
from aqueduct_dagster.engine.results import ModuleResult

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from aqueduct_dagster.blueprint.manifest import CompiledModule

ELSE = "_else_"
SPILLWAY = "spillway"
#: `_aq_error_type` of rows no branch took.
UNROUTED = "JunctionUnrouted"
_MODES = ("conditional", "broadcast", "partition")


def execute_junction(
    spark: SparkSession, module: CompiledModule, inputs: Mapping[str, DataFrame]
) -> ModuleResult:
    config: JunctionConfig = module.config
    frame = single_input(module, inputs)
    mode = config.mode or "conditional"
    branches = require(config.branches, "branches", module, f" for mode: {mode}")
    _check_unique(branches)
    if mode == "broadcast":
        outputs = {branch.id: frame for branch in branches}
        return ModuleResult(outputs=outputs, metadata=_facts(mode, branches))
    if mode == "conditional":
        matches = {b.id: _condition(b, module) for b in branches}
    elif mode == "partition":
        key = require(config.partition_key, "partition_key", module, " for mode: partition")
        matches = {b.id: _partition_value(key, b) for b in branches}
    else:  # pragma: no cover - the model only admits the three modes
        raise ConditionError(
            "AQ_JUNCTION_MODE_UNKNOWN", f"unknown Junction mode '{mode}'", {"mode": mode}
        )
    outputs, taken = _route(frame, matches)
    if SPILLWAY not in outputs:
        outputs[SPILLWAY] = with_error_columns(
            frame.filter(~taken),
            module_id=module.id,
            rule=mode,
            error_type=UNROUTED,
            message=f"row matches no branch of Junction '{module.id}'",
        )
    metadata = _facts(mode, branches)
    if mode == "partition":
        metadata["partition_key"] = config.partition_key
    return ModuleResult(outputs=outputs, metadata=metadata)


def _route(
    frame: DataFrame, matches: dict[str, Column | None]
) -> tuple[dict[str, DataFrame], Column]:
    """Branch frames for explicit matches, `_else_` (None) for the rest; and 'taken by any'."""
    from pyspark.sql import functions as F

    explicit = [m for m in matches.values() if m is not None]
    taken = F.lit(False)
    for match in explicit:
        taken = taken | match
    outputs: dict[str, DataFrame] = {}
    for branch_id, match in matches.items():
        outputs[branch_id] = frame.filter(~taken) if match is None else frame.filter(match)
    if any(m is None for m in matches.values()):
        taken = F.lit(True)  # `_else_` takes the rest: nothing is left for the spillway
    return outputs, taken


def _condition(branch: JunctionBranch, module: CompiledModule) -> Column | None:
    from pyspark.sql import functions as F

    condition = branch.condition
    if condition is None or not condition.strip():
        raise ConditionError(
            "AQ_MISSING_CONFIG",
            f"branch '{branch.id}' needs a `condition` in mode: conditional",
            {"key": "condition", "moduleType": module.type, "branch": branch.id},
            hint=f"set a SQL condition, or condition: {ELSE} for the rows no other branch takes",
        )
    if condition.strip() == ELSE:
        return None
    # Null counts as not matching: the row then belongs to `_else_`, not to nobody.
    return F.coalesce(F.expr(condition), F.lit(False))


def _partition_value(key: str, branch: JunctionBranch) -> Column | None:
    from pyspark.sql import functions as F

    value = branch.value if branch.value is not None else branch.id
    if value == ELSE or (branch.condition or "").strip() == ELSE:
        return None
    return F.coalesce(F.col(key) == F.lit(value), F.lit(False))


def _check_unique(branches: list[JunctionBranch]) -> None:
    seen: set[str] = set()
    for branch in branches:
        if branch.id in seen:
            raise ConditionError(
                "AQ_JUNCTION_BRANCH_DUPLICATE",
                f"branch id '{branch.id}' is used twice",
                {"branch": branch.id},
                hint="branch ids name the Junction's output ports: make them unique",
            )
        seen.add(branch.id)


def _facts(mode: str, branches: list[JunctionBranch]) -> dict[str, object]:
    return {"mode": mode, "branches": [branch.id for branch in branches]}
