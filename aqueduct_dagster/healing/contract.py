"""The output contract: what a patched pipeline must still publish, judged after the sandbox.

A patch that runs is not yet a fix: `TRY_CAST` over currency strings runs and publishes a
column of NULLs; qualifying an ambiguous column with the wrong side runs and publishes the
other table's values. The sandbox's outputs are held against what the last good run of the
same job published (`FailurePackage.contracts`, recorded with that run at no extra cost):

- the same column names and types, in any order;
- no column without a single value on a sample where rows came out (a column whose values
  all became NULL is a defer, not a fix);
- rows: some came out where the last good run published some; and, when the sample was the
  whole input, a count within `row_band` of the last good run's;
- when the sample was the whole input, no date or timestamp column whose newest value is older
  than the last good run's (from the statistics Delta logged with that write).

A violation rejects the patch with the measured evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Patched rows / last good rows allowed when the sample held the whole input.
DEFAULT_ROW_BAND = (0.5, 2.0)


@dataclass(frozen=True)
class OutputProfile:
    """One sandbox output, measured in one Spark job."""

    columns: list[tuple[str, str]]
    rows: int
    non_null: dict[str, int] = field(default_factory=dict)
    #: The newest value of each date/timestamp column, as ISO text.
    newest: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [list(c) for c in self.columns], "rows": self.rows, "non_null": dict(self.non_null),
                "newest": dict(self.newest)}  # fmt: skip


TEMPORAL = ("date", "timestamp", "timestamp_ntz")


def profile_output(frame: Any) -> OutputProfile:
    from pyspark.sql import functions as F

    columns = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]
    quoted = {name: "`" + name.replace("`", "``") + "`" for name, _ in columns}
    aggregates = [F.count(F.lit(1)).alias("__rows")]
    aggregates += [F.count(F.col(quoted[name])).alias(f"__c{i}") for i, (name, _) in enumerate(columns)]
    aggregates += [F.max(F.col(quoted[name])).cast("string").alias(f"__t{i}")
                   for i, (name, kind) in enumerate(columns) if kind in TEMPORAL]  # fmt: skip
    row = frame.agg(*aggregates).collect()[0]
    return OutputProfile(
        columns=columns,
        rows=int(row["__rows"]),
        non_null={name: int(row[f"__c{i}"]) for i, (name, _) in enumerate(columns)},
        newest={name: row[f"__t{i}"] for i, (name, kind) in enumerate(columns)
                if kind in TEMPORAL and row[f"__t{i}"] is not None},  # fmt: skip
    )


def violations(contract: Mapping[str, Any], profile: OutputProfile, *, whole_input: bool,
               row_band: tuple[float, float] = DEFAULT_ROW_BAND) -> list[str]:  # fmt: skip
    """What in `profile` breaks `contract` (the last good run's), each with its measure."""
    found: list[str] = []
    before = {str(c["name"]).lower(): str(c["type"]) for c in contract.get("columns") or []}
    after = {name.lower(): kind for name, kind in profile.columns}
    missing = sorted(set(before) - set(after))
    extra = sorted(set(after) - set(before))
    retyped = sorted(f"{n} {before[n]} -> {after[n]}" for n in set(before) & set(after) if before[n] != after[n])
    if missing:
        found.append(f"columns no longer published: {', '.join(missing)}")
    if extra:
        found.append(f"columns the last good run did not publish: {', '.join(extra)}")
    if retyped:
        found.append(f"column types changed: {', '.join(retyped)}")
    good = contract.get("profile") or {}
    if profile.rows:
        # Without statistics of the last good output, any column left without a value counts.
        had_values = {str(c).lower() for c, n in (good.get("null_count") or {}).items() if good.get("rows", 0) > n}
        empty = sorted(name for name, count in profile.non_null.items()
                       if count == 0 and (not good or name.lower() in had_values))  # fmt: skip
        if empty:
            found.append(f"no value left in {', '.join(empty)} ({profile.rows} sampled output rows, all NULL there)")
    if whole_input:
        highs = {str(c).lower(): str(v) for c, v in (good.get("max") or {}).items()}
        for name, newest in profile.newest.items():
            before = highs.get(name.lower())
            if before and _instant(newest) < _instant(before):
                found.append(f"{name} moved backwards: newest {newest} against {before} in the last good run")
    published = contract.get("rows_written")
    if isinstance(published, int) and published > 0:
        if profile.rows == 0:
            found.append(f"no rows published on the sample; the last good run published {published}")
        elif whole_input:
            low, high = row_band
            ratio = profile.rows / published
            if not low <= ratio <= high:
                found.append(f"{profile.rows} rows against {published} in the last good run "
                             f"(x{ratio:.2f}, allowed x{low:g} to x{high:g})")  # fmt: skip
    return found


def _instant(text: str) -> str:
    """ISO date/time text in one comparable shape (`2026-01-03 00:00:00` ~ `2026-01-03T00:00:00.000Z`)."""
    return text.replace("T", " ").rstrip("Z").split("+")[0][:19]
