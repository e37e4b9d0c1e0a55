"""End-to-end heal benchmark: realistic upstream breakages, healed as a user would meet them.

    .venv/bin/python bench/heal_e2e.py [--cases NAME,...] [--json OUT]
    .venv/bin/python bench/heal_e2e.py --reference   # check the cases: hand-written fixes, no heal
    .venv/bin/python bench/heal_e2e.py --heldout     # only the held-out cases (HELDOUT_MODULES)

Not a test: a benchmark of what the healer does to real breakages (the cases are in
bench/heal_cases/, one module each). Every case gets its own project folder (Blueprint,
data, state, patch queue, a real Dagster instance in its own DAGSTER_HOME) and goes through:

1. the good input and a good run (the Blueprint's job from `build_definitions`, executed in
   process on the instance: the store records the run as a real run would);
2. the upstream change, and the run that fails on it;
3. the heal: `aqueduct_heal_job`, as the failure sensor launches it and `aqueduct heal` runs
   it, with `approval: human`, so a patch is staged, not applied;
4. `PatchQueue.apply` (what `aqueduct patch apply` and the approve job do) and the run again;
5. the published table against the answer the case computes with pandas from the changed
   input files alone (never from the project's output).

Grades: FIXED (the output equals the answer), DEFERRED-OK (a defer case, nothing applied),
WRONG (a patch that publishes something else than the answer, or any patch staged where only
a defer is honest), NOT-FIXED (a fixable case without a working patch), ERROR (the harness or
the product crashed; the exception is printed). One SparkSession (the project's own
`create_base_session`) serves every case, started and warmed before anything is timed.
"""

from __future__ import annotations

import argparse
import decimal
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # the cases package lives beside this script

import pandas as pd  # noqa: E402
from heal_cases import HELDOUT_MODULES, all_cases  # noqa: E402
from heal_cases.common import Case  # noqa: E402

GRADES = ("FIXED", "DEFERRED-OK", "WRONG", "NOT-FIXED", "ERROR")
#: Heal statuses that leave a patch in patches/pending/.
STAGED = ("staged", "escalated")
NOTE_WIDTH = 150
#: Runs log to the instance as usual; the console only gets what this script prints.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class CaseResult:
    case: str
    breakage: str
    expect: str
    grade: str = "ERROR"
    seconds: float = 0.0
    note: str = ""
    phase: str = "setup"  # where the case stopped
    failure: str = ""  # how the broken run failed
    heal_status: str = ""
    heal_message: str = ""
    heal_seconds: float | None = None
    #: A defer case the heal skipped without diagnosing: nothing staged, but by luck.
    unseen: bool = False
    gates: list[str] = field(default_factory=list)
    patch_diff: str = ""
    error: str = ""  # traceback of a crash


# --------------------------------------------------------------------------- one case


class CaseRunner:
    """Runs one case in its own project folder, the way a user meets the breakage."""

    def __init__(self, case: Case, root: Path, reference: bool = False) -> None:
        self.case = case
        #: Apply the case's hand-written fix instead of healing: checks the benchmark itself.
        self.reference = reference
        self.project = root / case.name
        self.data = self.project / "data"
        self.blueprints = self.project / "blueprints"
        self.result = CaseResult(case.name, case.breakage, case.expect)

    def run(self) -> CaseResult:
        started = time.perf_counter()
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - one crash must not stop the benchmark
            self.result.grade = "ERROR"
            self.result.error = traceback.format_exc()
            self.result.note = f"crashed in {self.result.phase}: {type(error).__name__}: {_first_line(error)}"
        finally:
            self.result.seconds = round(time.perf_counter() - started, 1)
        return self.result

    def _run(self) -> None:
        import dagster as dg

        case, result = self.case, self.result
        self._set_up_project()
        instance = dg.DagsterInstance.local_temp(str(self.project / "dagster_home"))
        try:
            result.phase = "good run"
            case.write_good(self.data)
            good = self._execute(instance)
            if not good.success:
                result.note = f"the good run failed (harness): {_run_failure(good)}"
                return
            result.phase = "broken run"
            case.break_input(self.data)
            broken = self._execute(instance)
            if broken.success:
                result.note = "the breakage did not fail the run (harness: the case breaks nothing)"
                return
            result.failure = _run_failure(broken)

            if self.reference:
                result.phase = "reference fix"
                self._apply_reference()
                self._grade_patched(self._rerun(instance))
                return
            result.phase = "heal"
            summary = self._heal(instance, broken.run_id)
            if summary is None:
                return
            if result.heal_status not in STAGED:
                self._grade_without_patch(summary)
                return

            result.phase = "apply"
            self._apply(summary)
            result.phase = "rerun"
            self._grade_patched(self._rerun(instance))
        finally:
            instance.dispose()

    def _set_up_project(self) -> None:
        self.blueprints.mkdir(parents=True)
        self.data.mkdir()
        (self.project / "dagster_home").mkdir()
        (self.project / "aqueduct.yml").write_text("{}\n")  # no LLM: the offline rules
        (self.blueprints / f"{self.case.name}.yml").write_text(self.case.blueprint)
        # Fresh state, queue and heal rate limit per case: nothing one case did reaches the next.
        os.environ.update(
            AQUEDUCT_DATA_DIR=str(self.data),
            AQUEDUCT_BLUEPRINTS_DIR=str(self.blueprints),
            AQUEDUCT_STATE_DIR=str(self.project / "state"),
            AQUEDUCT_PATCHES_DIR=str(self.project / "patches"),
            AQUEDUCT_CONFIG=str(self.project / "aqueduct.yml"),
            DAGSTER_HOME=str(self.project / "dagster_home"),
        )

    def _execute(self, instance: Any) -> Any:
        """The Blueprint's job as it is on disk now (a fresh code location load, as after a reload)."""
        from aqueduct_dagster.dagster import build_definitions

        job = build_definitions(self.blueprints).resolve_job_def(self.case.name)
        return job.execute_in_process(run_config=QUIET, instance=instance, raise_on_error=False)

    def _rerun(self, instance: Any) -> Any:
        # The good run's table goes first: what is compared is what the patched run wrote.
        shutil.rmtree(self.data / self.case.output, ignore_errors=True)
        rerun = self._execute(instance)
        self.result.phase = "compare"
        return rerun

    def _heal(self, instance: Any, run_id: str) -> dict[str, Any] | None:
        from aqueduct_dagster.dagster.healing import aqueduct_heal_job
        from aqueduct_dagster.dagster.tags import HEAL_TAG

        result = self.result
        started = time.perf_counter()
        heal = aqueduct_heal_job.execute_in_process(
            run_config={"ops": {"heal": {"config": {"run_id": run_id}}}, **QUIET},
            instance=instance, raise_on_error=False, tags={HEAL_TAG: run_id},
        )  # fmt: skip
        result.heal_seconds = round(time.perf_counter() - started, 2)
        if not heal.success:
            result.note = f"the heal job failed: {_run_failure(heal)}"
            return None
        summary = heal.output_for_node("heal")
        result.heal_status = str(summary.get("status"))
        result.heal_message = str(summary.get("message", ""))
        result.gates = list(summary.get("gates") or [])
        return summary

    def _grade_without_patch(self, summary: dict[str, Any]) -> None:
        result = self.result
        said = f"{result.heal_status}: {result.heal_message}"
        if self.case.expect == "defer":
            result.grade = "DEFERRED-OK"
            if result.heal_status == "skipped":  # the heal never looked at the failure
                result.unseen = True
                result.note = f"nothing staged, but no evidence shown: the heal skipped the failure; {said}"
            else:
                result.note = f"nothing staged; {said}"
        else:
            result.grade = "NOT-FIXED"
            result.note = f"no patch; {said}"

    def _apply(self, summary: dict[str, Any]) -> None:
        from aqueduct_dagster.healing.heal import PatchQueue
        from aqueduct_dagster.settings import current_settings

        pending = summary.get("pending_path")
        if pending and Path(pending).is_file():
            self.result.patch_diff = json.loads(Path(pending).read_text()).get("diff", "")
        PatchQueue.from_settings(current_settings()).apply(summary["patch_id"])

    def _apply_reference(self) -> None:
        path = self.blueprints / f"{self.case.name}.yml"
        text = path.read_text()
        for old, new in self.case.reference:
            if old not in text:
                raise ValueError(f"case {self.case.name}: reference text {old!r} is not in the Blueprint")
            text = text.replace(old, new)
        self.result.patch_diff = "\n".join(f"- {old}\n+ {new}" for old, new in self.case.reference)
        self.result.heal_status = "reference"
        path.write_text(text)

    def _grade_patched(self, rerun: Any) -> None:
        case, result = self.case, self.result
        change = _diff_summary(result.patch_diff)
        escalated = result.heal_status == "escalated"
        if not rerun.success:
            outcome, mismatch = f"rerun failed: {_run_failure(rerun)}", "rerun failed"
        elif case.answer is None:
            outcome, mismatch = f"published {_describe(self._published())}", "published"
        else:
            mismatch = compare_tables(self._published(), case.answer(self.data))
            outcome = "output equals the independent answer" if mismatch is None else f"output differs: {mismatch}"
        tag = "escalated, " if escalated else ""
        if case.expect == "defer":
            # An escalated patch carries its evidence to a person: the defer the issue allows.
            result.grade = "DEFERRED-OK" if escalated else "WRONG"
            result.note = f"{tag}patch staged where only a defer is honest: {change}; {outcome}"
        elif mismatch is None:
            result.grade = "FIXED"
            result.note = f"{tag}{change}"
        elif not rerun.success:
            result.grade = "NOT-FIXED"
            result.note = f"{tag}patch {change}; {outcome}"
        else:
            result.grade = "NOT-FIXED" if escalated else "WRONG"
            result.note = f"{tag}patch {change}; {outcome}"

    def _published(self) -> pd.DataFrame:
        path = self.data / self.case.output
        if self.case.output_format == "delta":
            import pyarrow  # noqa: F401  (before deltalake)
            from deltalake import DeltaTable

            return DeltaTable(str(path)).to_pandas()
        return pd.read_parquet(path)


# --------------------------------------------------------------------------- comparing


def _family(series: pd.Series) -> str:
    """number | string | bool | temporal | null: what a consumer of the column relies on."""
    kinds = pd.api.types
    if kinds.is_bool_dtype(series):
        return "bool"
    if kinds.is_numeric_dtype(series):
        return "number"
    if kinds.is_datetime64_any_dtype(series):
        return "temporal"
    value = next((v for v in series if _normal(v) is not None), None)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | decimal.Decimal):
        return "number"
    if isinstance(value, date | datetime | pd.Timestamp):
        return "temporal"
    return "string"


def _normal(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _normal(value.item())
    if isinstance(value, int | float | decimal.Decimal):
        return round(float(value), 6)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime().isoformat()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def compare_tables(published: pd.DataFrame, expected: pd.DataFrame) -> str | None:
    """None when both hold the same rows (any order), column names and type families; else why not."""
    if sorted(published.columns) != sorted(expected.columns):
        return f"columns {list(published.columns)}, expected {list(expected.columns)}"
    columns = list(expected.columns)
    for column in columns:
        got, want = _family(published[column]), _family(expected[column])
        if "null" not in (got, want) and got != want:
            return f"column {column} is {got}, expected {want}"

    def rows(frame: pd.DataFrame) -> list[tuple]:
        return sorted((tuple(_normal(v) for v in row) for row in frame[columns].itertuples(index=False)), key=repr)

    have, want = rows(published), rows(expected)
    if len(have) != len(want):
        return f"{len(have)} rows, expected {len(want)}"
    for got_row, want_row in zip(have, want, strict=True):
        if got_row != want_row:
            return f"row {dict(zip(columns, got_row, strict=True))}, expected {dict(zip(columns, want_row, strict=True))}"
    return None


def _describe(frame: pd.DataFrame) -> str:
    nulls = {c: int(frame[c].isna().sum()) for c in frame.columns if frame[c].isna().any()}
    return f"{len(frame)} rows, NULLs per column {nulls or 'none'}"


# --------------------------------------------------------------------------- run facts


def _first_line(error: Any) -> str:
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__


def _run_failure(result: Any) -> str:
    """Where and how an in-process Dagster run failed: failed steps, then failed checks."""
    parts = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            cause = error.cause or error
            while cause.cause is not None:
                cause = cause.cause
            parts.append(f"step {event.step_key}: {error.cls_name}: {_first_line(error.message)}"
                         + (f" (cause {cause.cls_name}: {_first_line(cause.message)})" if cause is not error else ""))  # fmt: skip
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                parts.append(f"check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed")
    return "; ".join(parts) or "failed (no step failure recorded)"


def _diff_summary(diff: str) -> str:
    changed = [f"{line[0]} {line[1:].strip()}" for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()]  # fmt: skip
    return " | ".join(changed)[:400] or "(empty diff)"


# --------------------------------------------------------------------------- report


def print_report(results: list[CaseResult]) -> dict[str, Any]:
    headers = ("case", "class", "expected", "grade", "seconds", "note")
    rows = [(r.case, r.breakage, r.expect, r.grade, f"{r.seconds:.1f}", _clip(r.note)) for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers[:-1])]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)) + "  note"
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])

    fixable = [r for r in results if r.expect == "fix"]
    defers = [r for r in results if r.expect == "defer"]
    count = {g: sum(r.grade == g for r in results) for g in GRADES}
    staged = [r.heal_seconds for r in results if r.heal_status in STAGED and r.heal_seconds is not None]
    heals = [r.heal_seconds for r in results if r.heal_seconds is not None]
    summary = {
        "fixed": sum(r.grade == "FIXED" for r in fixable),
        "fixable": len(fixable),
        "wrong": count["WRONG"],
        "deferred_ok": sum(r.grade == "DEFERRED-OK" for r in defers),
        "deferred_ok_unseen": sum(r.grade == "DEFERRED-OK" and r.unseen for r in defers),
        "defer_cases": len(defers),
        "not_fixed": count["NOT-FIXED"],
        "errors": count["ERROR"],
        "median_heal_to_staged_s": round(statistics.median(staged), 2) if staged else None,
        "median_heal_s": round(statistics.median(heals), 2) if heals else None,
    }
    print()
    print(f"fixed {summary['fixed']}/{summary['fixable']} fixable, wrong {summary['wrong']}, "
          f"deferred-ok {summary['deferred_ok']}/{summary['defer_cases']}, errors {summary['errors']}")  # fmt: skip
    if summary["deferred_ok_unseen"]:
        print(f"  ({summary['deferred_ok_unseen']} of the deferred-ok: the heal skipped the failure, no evidence shown)")
    print(f"median heal latency (failure -> staged patch): {_seconds(summary['median_heal_to_staged_s'])} "
          f"over {len(staged)} staged; every heal: {_seconds(summary['median_heal_s'])} over {len(heals)}")  # fmt: skip

    print("\ndetails")
    for r in results:
        print(f"\n[{r.grade}] {r.case} ({r.breakage})")
        print(f"  broken run: {r.failure or '-'}")
        print(f"  heal: {r.heal_status or '-'}: {r.heal_message or '-'}" + (f" ({r.heal_seconds} s)" if r.heal_seconds else ""))
        for gate in r.gates:
            print(f"    gate {gate}")
        if r.patch_diff:
            print(f"  patch: {_diff_summary(r.patch_diff)}")
        print(f"  note: {r.note}")
        if r.error:
            print("  " + r.error.rstrip().replace("\n", "\n  "))
    return summary


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= NOTE_WIDTH else text[: NOTE_WIDTH - 3] + "..."


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


# --------------------------------------------------------------------------- main


def select_cases(names: str | None, heldout: bool = False) -> list[Case]:
    cases = [c for c in all_cases(include_heldout=True) if c.name in HELDOUT_MODULES] if heldout else all_cases()
    if not names:
        return cases
    by_name = {c.name: c for c in all_cases(include_heldout=True)}  # a case by name, from either set
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in wanted]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--json", type=Path, help="also write every case's facts here")
    parser.add_argument("--reference", action="store_true",
                        help="check the benchmark: apply each fix case's hand-written fix instead of healing")  # fmt: skip
    parser.add_argument("--heldout", action="store_true", help="run only the held-out cases (HELDOUT_MODULES)")
    args = parser.parse_args(argv)
    cases = select_cases(args.cases, heldout=args.heldout)
    if args.reference:
        cases = [c for c in cases if c.expect == "fix"]
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from aqueduct_dagster.engine.session import create_base_session

    with tempfile.TemporaryDirectory(prefix="aq-heal-e2e-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        # Every run and heal after this gets this JVM (create_base_session returns the live one).
        spark = create_base_session(app_name="bench-heal-e2e", state_dir=root / "spark-state")
        spark.range(10).count()
        print(f"SparkSession warm in {time.perf_counter() - started:.1f} s; {len(cases)} case(s)\n", flush=True)
        results = []
        for case in cases:
            result = CaseRunner(case, root, reference=args.reference).run()
            print(f"  {case.name}: {result.grade} ({result.seconds:.1f} s)", flush=True)
            results.append(result)
        spark.stop()
    print()
    summary = print_report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "cases": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    main()
