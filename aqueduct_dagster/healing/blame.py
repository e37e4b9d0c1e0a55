"""Which module holds the fault when Spark raises at an action downstream of it.

Spark evaluates lazily: a CAST of `'N/A'` or a division by zero written in a Channel raises
only when an action runs, in the Assert that aggregates the Channel's output or in the
Egress that writes it. The step that failed is where the fault *surfaced*; the module to
patch is the one whose plan holds the failing expression.

Blame is decided from evidence, cheapest first:
1. the error's query context (the SQL fragment Spark points at, and the line it quotes)
   and the expression text in its message, matched against the compiled SQL and ops of the
   surfacing module and of each upstream module, nearest first (pure, no Spark);
2. where that does not decide, the upstream plans replayed in topological order on sampled
   input (the runner building frames only, a limit per Ingress, one bounded collect per
   module) until the first one raises;
3. where that does not decide either, the module where it surfaced.

`measure_safe_rewrite` then measures, on the same sample, what the safe form of the failing
expression (`try_cast`, `try_divide`) would leave of its column: the rules refuse a rewrite
that turns a column with values into one that is entirely NULL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aqueduct_dagster.blueprint import RunInfo, bind_runtime
from aqueduct_dagster.blueprint.depot import bind_depot
from aqueduct_dagster.blueprint.manifest import CompiledModule, Manifest
from aqueduct_dagster.engine.results import ModuleResult
from aqueduct_dagster.engine.runner import run_manifest
from aqueduct_dagster.healing.effect import strings_in

#: Conditions Spark raises while executing (not analysing) a plan: where they surface says
#: nothing about where they were written.
RUNTIME_CONDITIONS = frozenset(
    {"CAST_INVALID_INPUT", "CAST_OVERFLOW", "DIVIDE_BY_ZERO", "ARITHMETIC_OVERFLOW",
     "NUMERIC_VALUE_OUT_OF_RANGE", "INVALID_ARRAY_INDEX", "INVALID_ARRAY_INDEX_IN_ELEMENT_AT",
     "INVALID_FRACTION_OF_SECOND", "DATETIME_FIELD_OUT_OF_BOUNDS", "CANNOT_PARSE_TIMESTAMP",
     "INTERVAL_DIVIDED_BY_ZERO", "BINARY_ARITHMETIC_OVERFLOW"}
)  # fmt: skip
#: How many rows one replay action may bring back per module (the sample bounds the rest).
_COLLECT_FACTOR = 4

Method = Literal["surfaced", "query_context", "sample_replay", "undecided"]


@dataclass(frozen=True)
class Blame:
    """The module that holds the fault, the one where it surfaced, and why."""

    module_id: str
    surfaced_in: str
    method: Method
    reason: str
    #: The failing expression as Spark quoted it (`CAST(qty AS INT)`), when it did.
    fragment: str | None = None
    #: Measured by `measure_safe_rewrite` (None until measured).
    evidence: dict[str, Any] | None = None
    #: Schemas of the blamed module's inputs on the sample (alias -> [[name, type]]).
    input_schemas: dict[str, list[list[str]]] = field(default_factory=dict)

    @property
    def moved(self) -> bool:
        return self.module_id != self.surfaced_in

    def to_dict(self) -> dict[str, Any]:
        """What the failure package keeps (the input schemas travel as its upstream_schemas)."""
        data = asdict(self)
        data.pop("input_schemas")
        return data


# --------------------------------------------------------------------------- pure matching


def is_runtime_fault(error: Mapping[str, Any]) -> bool:
    """Raised while executing a plan (data errors): the surfacing module may not hold it."""
    condition = str(error.get("condition") or "")
    sqlstate = str(error.get("sqlstate") or "")
    return condition.split(".")[0] in RUNTIME_CONDITIONS or sqlstate.startswith("22")


def normalize_sql(text: str) -> str:
    """Case, quoting and spacing out: `CAST( qty  AS int )` and `cast(`qty` as INT)` compare equal."""
    text = text.lower().replace("`", "")
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*([(),/*+\-<>=|])\s*", r"\1", text).strip()


def sql_contexts(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The SQL query contexts of an error (DataFrame contexts name a function, not code)."""
    return [
        dict(c) for c in error.get("query_context") or []
        if str(c.get("contextType") or "SQL").upper() == "SQL" and c.get("fragment")
    ]  # fmt: skip


def fault_fragment(error: Mapping[str, Any]) -> str | None:
    """The failing expression as Spark quoted it, or None."""
    contexts = sql_contexts(error)
    return str(contexts[0]["fragment"]) if contexts else None


def quoted_line(context: Mapping[str, Any]) -> str | None:
    """The SQL line a query context's summary quotes (Spark elides long lines with `...`)."""
    lines = str(context.get("summary") or "").splitlines()
    for index, line in enumerate(lines):
        if line.startswith("== SQL") and index + 1 < len(lines):
            text = lines[index + 1].strip()
            text = text.removeprefix("...").removesuffix("...").strip()
            return text or None
    return None


_MESSAGE_EXPRESSION = re.compile(r"`([^`]*[(/][^`]*)`")
_CAST_TARGET = re.compile(r'cannot be cast to "([^"]+)"')


def message_expressions(error: Mapping[str, Any]) -> list[str]:
    """Expressions the message quotes in backticks (`CAST(amount AS INT)`, `revenue / orders`).

    Spark's own advice (`try_cast`, `try_divide`) is a function name, not an expression.
    """
    found = _MESSAGE_EXPRESSION.findall(str(error.get("message") or ""))
    return [e for e in found if not re.fullmatch(r"try_\w+", e.strip(), re.I)]


def cast_target(error: Mapping[str, Any]) -> str | None:
    """The type a failed CAST was casting to (`INT`, `DECIMAL(12,2)`), unquoted."""
    target = str((error.get("message_parameters") or error.get("parameters") or {}).get("targetType") or "")
    if not target:
        match = _CAST_TARGET.search(str(error.get("message") or ""))
        target = match.group(1) if match else ""
    return target.strip('"').strip() or None


def module_texts(module: CompiledModule) -> list[str]:
    """Every text of a module's compiled config: SQL queries, op expressions, Assert rules."""
    return [text for _, text in strings_in(module.spec.config.model_dump(mode="json", by_alias=True))]


def upstream_nearest_first(manifest: Manifest, module_id: str) -> list[str]:
    """The modules `module_id` reads from, directly or not, nearest first.

    At equal distance the later module in topological order comes first (it is nearer the
    data's end of the plan).
    """
    order = {mid: index for index, mid in enumerate(manifest.modules)}
    distance: dict[str, int] = {}
    frontier, step = [module_id], 0
    while frontier:
        step += 1
        following = []
        for current in frontier:
            for edge in manifest.module(current).inputs:
                if edge.source not in distance and edge.source != module_id:
                    distance[edge.source] = step
                    following.append(edge.source)
        frontier = following
    return sorted(distance, key=lambda mid: (distance[mid], -order[mid]))


def _cast_pattern(target: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.])(?:try_)?cast\(.+? as {re.escape(normalize_sql(target))}\)", re.I)


def score_module(module: CompiledModule, error: Mapping[str, Any]) -> tuple[int, str]:
    """How strongly a module's text holds the error's expression: 3 the quoted SQL line,
    2 the fragment, 1 an expression the message quotes, 0 nothing; and what matched."""
    texts = [normalize_sql(t) for t in module_texts(module)]
    best: tuple[int, str] = (0, "")
    for context in sql_contexts(error):
        line, fragment = quoted_line(context), str(context["fragment"])
        if line and normalize_sql(fragment) in normalize_sql(line) and any(normalize_sql(line) in t for t in texts):
            return 3, f"the SQL line Spark quotes ({line!r})"
        if any(normalize_sql(fragment) in t for t in texts):
            best = max(best, (2, f"the failing expression {fragment!r}"))
    for expression in message_expressions(error):
        if any(normalize_sql(expression) in t for t in texts):
            best = max(best, (1, f"the expression the message quotes {expression!r}"))
    return best


def blame_by_text(manifest: Manifest, surfaced_in: str, error: Mapping[str, Any]) -> Blame | None:
    """The one module (the surfacing one or an upstream one) whose text holds the expression.

    None when nothing matches, or when two modules match equally well: text cannot tell them
    apart, the sample replay can.
    """
    candidates = [surfaced_in, *upstream_nearest_first(manifest, surfaced_in)]
    scored = [(score_module(manifest.module(mid), error), mid) for mid in candidates]
    top = max(score for (score, _), _ in scored)
    if top == 0:
        return None
    winners = [(why, mid) for (score, why), mid in scored if score == top]
    if len(winners) > 1:
        return None
    why, module_id = winners[0]
    return Blame(module_id, surfaced_in, "query_context", f"'{module_id}' holds {why}",
                 fragment=fault_fragment(error))  # fmt: skip


# --------------------------------------------------------------------------- Spark replay


def bound_for_replay(manifest: Manifest, depot_lookup: Callable[[str], str | None] | None = None, *,
                     run_id: str = "blame") -> Manifest:  # fmt: skip
    """Run tokens bound for a replay outside a Dagster run (blame's, the gates' sandbox and
    full run); Depot reads see the committed values (a replay never writes the Depot)."""
    bound = bind_runtime(manifest, RunInfo(run_id=run_id, started_at=datetime.now(UTC)))
    return bind_depot(bound, depot_lookup or (lambda key: None))


def replay_sampled(spark: Any, manifest: Manifest, upto: str, *, sample_rows: int,
                   on_module_start: Callable[[CompiledModule, dict[str, Any]], None] | None = None,
                   on_module_end: Callable[[CompiledModule, ModuleResult], None] | None = None) -> None:  # fmt: skip
    """Rebuild `upto` and every module it reads from on sampled input, through the runner.

    Ingress outputs are limited to `sample_rows`; frames are routed as in a real run, but
    nothing acts outside or on signals (`run_manifest(frames_only=True)`: no Egress writes,
    no Assert checks, no Probes). The hooks see each module as the runner does.
    """
    run_manifest(spark, manifest, only=[upto], frames_only=True, sample_rows=sample_rows,
                 on_module_start=on_module_start, on_module_end=on_module_end)  # fmt: skip


def blame_by_replay(spark: Any, manifest: Manifest, surfaced_in: str, error: Mapping[str, Any], *,
                    sample_rows: int) -> Blame | None:  # fmt: skip
    """The first upstream module (topological order) whose plan raises the same condition on
    the sample; None when none does (the bad rows may be outside the sample)."""
    from aqueduct_dagster.engine.errors import extract_spark_error

    condition = str(error.get("condition") or "")
    raised: list[str] = []

    def act(module: CompiledModule, outcome: ModuleResult) -> None:
        frame = outcome.outputs.get("main")
        if raised or frame is None:
            return
        try:
            frame.limit(sample_rows * _COLLECT_FACTOR).collect()
        except Exception as exc:  # noqa: BLE001 - the failure is the evidence
            if (extract_spark_error(exc).condition or "") == condition:
                raised.append(module.id)

    try:
        replay_sampled(spark, manifest, surfaced_in, sample_rows=sample_rows, on_module_end=act)
    except Exception:  # noqa: BLE001 - a module that cannot even be built tells nothing here
        pass
    if not raised:
        return None
    module_id = raised[0]
    return Blame(module_id, surfaced_in, "sample_replay",
                 f"replayed on {sample_rows} input rows per Ingress, '{module_id}' is the first module that raises {condition}",
                 fragment=fault_fragment(error))  # fmt: skip


def blame(manifest: Manifest, surfaced_in: str, error: Mapping[str, Any], *,
          spark_factory: Callable[[], Any] | None = None, sample_rows: int = 1000) -> Blame:  # fmt: skip
    """The module that holds the fault `error` (a SparkErrorInfo dict) that surfaced in `surfaced_in`."""
    if surfaced_in not in manifest.modules or not is_runtime_fault(error):
        return Blame(surfaced_in, surfaced_in, "surfaced", "raised where it was written (not a runtime fault)")
    found = blame_by_text(manifest, surfaced_in, error)
    if found is not None:
        return found
    if spark_factory is not None:
        found = blame_by_replay(spark_factory(), manifest, surfaced_in, error, sample_rows=sample_rows)
        if found is not None:
            return found
    return Blame(surfaced_in, surfaced_in, "undecided",
                 "neither the query context nor a replay on sampled input points upstream",
                 fragment=fault_fragment(error))  # fmt: skip


# --------------------------------------------------------------------------- evidence

_CAST_FRAGMENT = re.compile(r"^\s*cast\s*\((?P<operand>.+)\s+as\s+(?P<target>[^()]+(?:\([^()]*\))?)\s*\)\s*$", re.I | re.S)
_DIVIDE_FRAGMENT = re.compile(r"^(?P<a>[^/]+?)\s*/\s*(?P<b>[^/]+)$", re.S)


#: Texts that stand for "no value" in exports: a try_cast turning them into NULL loses nothing.
NULL_MARKERS = ("", "n/a", "na", "null", "none", "nan", "-", "--", "?", "#n/a", "nil", "missing", "unknown", ".")


def lost_data_values(evidence: Mapping[str, Any] | None) -> int:
    """Values a safe cast would drop that are not empty markers (0 for a division)."""
    if not evidence or not evidence.get("measured") or evidence.get("kind") != "cast" or "lost_markers" not in evidence:
        return 0  # a division, or evidence from before markers were counted
    return int(evidence["had_values"]) - int(evidence["kept_values"]) - int(evidence.get("lost_markers", 0))


def safe_expressions(fragment: str) -> tuple[str, str, str] | None:
    """(kind, what had values before, the safe form) for a failing CAST or division."""
    cast = _CAST_FRAGMENT.match(fragment)
    if cast:
        operand, target = cast["operand"].strip(), cast["target"].strip()
        return "cast", operand, f"try_cast({operand} AS {target})"
    divide = _DIVIDE_FRAGMENT.match(fragment.strip())
    if divide:
        a, b = divide["a"].strip(), divide["b"].strip()
        return "divide", f"IF(({a}) IS NOT NULL AND ({b}) IS NOT NULL, 1, NULL)", f"try_divide({a}, {b})"
    return None


def measure_safe_rewrite(spark: Any, manifest: Manifest, found: Blame, *, sample_rows: int) -> Blame:
    """`found` with the evidence the rules need: on the blamed module's sampled inputs, how many
    values the failing expression had, and how many its safe form (`try_cast`, `try_divide`)
    keeps. Measured only for a fragment that is written in that module (the text blame said
    so, or its texts hold it): nothing but the Blueprint's own SQL is evaluated.
    """
    from dataclasses import replace

    fragment = found.fragment
    module = manifest.module(found.module_id)
    if not fragment:
        return replace(found, evidence={"measured": False, "why": "Spark quoted no failing expression"})
    if not any(normalize_sql(fragment) in normalize_sql(t) for t in module_texts(module)):
        return replace(found, evidence={"measured": False, "why": "the failing expression is not written in the module"})
    forms = safe_expressions(fragment)
    if forms is None:
        return replace(found, evidence={"measured": False, "why": f"{fragment!r} is not a CAST or a division"})
    kind, before, after = forms
    inputs: dict[str, Any] = {}

    def keep_inputs(replayed: CompiledModule, routed: dict[str, Any]) -> None:
        if replayed.id == module.id:
            inputs.update(routed)

    try:
        replay_sampled(spark, manifest, module.id, sample_rows=sample_rows, on_module_start=keep_inputs)
    except Exception as error:  # noqa: BLE001 - the evidence is then missing, and says why
        return replace(found, evidence={"measured": False, "why": f"the sample could not be built: {type(error).__name__}"})
    schemas = {alias: [[f.name, f.dataType.simpleString()] for f in frame.schema.fields] for alias, frame in inputs.items()}
    # Values a try_cast drops that are empty markers ('N/A', '-') were never data; any other
    # dropped value is data in a new shape (another date format, a currency sign).
    markers = ", ".join(f"'{m}'" for m in NULL_MARKERS)
    marker_loss = (f"count(CASE WHEN ({before}) IS NOT NULL AND ({after}) IS NULL AND "
                   f"lower(trim(CAST(({before}) AS STRING))) IN ({markers}) THEN 1 END) AS lost_markers")  # fmt: skip
    for alias, frame in inputs.items():
        try:
            row = frame.alias(alias).selectExpr(
                "count(1) AS rows", f"count({before}) AS had_values", f"count({after}) AS kept_values",
                marker_loss if kind == "cast" else "0 AS lost_markers",
            ).collect()[0]
        except Exception:  # noqa: BLE001 - the expression reads another input: try the next
            continue
        evidence = {"measured": True, "kind": kind, "expression": fragment, "safe_expression": after,
                    "input": alias, "sample_rows": sample_rows, "rows": int(row["rows"]),
                    "had_values": int(row["had_values"]), "kept_values": int(row["kept_values"]),
                    "lost_markers": int(row["lost_markers"])}  # fmt: skip
        return replace(found, evidence=evidence, input_schemas=schemas)
    return replace(found, evidence={"measured": False, "why": f"{fragment!r} does not resolve against one input"},
                   input_schemas=schemas)  # fmt: skip


def nulls_whole_column(evidence: Mapping[str, Any] | None) -> bool:
    """The safe form keeps no value of a column that had values on the sample."""
    return bool(evidence and evidence.get("measured") and evidence.get("had_values", 0) > 0
                and evidence.get("kept_values", 0) == 0)  # fmt: skip
