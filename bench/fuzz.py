"""Fuzz the Blueprint compiler longer than CI does, and report throughput and the slowest inputs.

    python bench/fuzz.py [-n 20000] [--seed 1] [--top 10] [--save DIR] [--load-only]

Same seeds, mutations and properties as tests/blueprint/test_fuzz.py: every input ends in a
Manifest or in one AqueductError with a line number, within the work budget. Prints inputs per
second, how the inputs ended, any property violations, and the slowest inputs with their time
(`--save` writes those inputs to files, to rerun them through `aqueduct validate`). Exit 1 when
any input broke a property.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.blueprint.fuzz_support import check, mutate, project_seeds, run_one, seed_files  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="Number of inputs.")
    parser.add_argument("--seed", type=int, default=1, help="Random seed (same seed, same inputs).")
    parser.add_argument("--top", type=int, default=10, help="How many of the slowest inputs to list.")
    parser.add_argument("--save", type=Path, default=None, help="Write the slowest inputs here.")
    parser.add_argument("--load-only", action="store_true", help="Only load the YAML; do not compile.")
    args = parser.parse_args()

    shared = Path(os.environ.get("AQUEDUCT_SHARED", REPO.parent / "shared"))
    seeds = seed_files(shared / "reference" / "aqueduct-gallery") + project_seeds()
    texts = [(str(path), path.read_text(encoding="utf-8")) for path in seeds]
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    violations: list[str] = []
    timings: list[tuple[float, int, str, str]] = []
    started = time.perf_counter()
    for index in range(args.n):
        path, text = rng.choice(texts)
        mutated = mutate(text, rng)
        began = time.perf_counter()
        try:
            outcome = run_one(mutated, path, compile_it=not args.load_only)
            check(outcome, mutated)
            outcomes[type(outcome.error).__name__ if outcome.error else "compiled"] += 1
        except Exception as error:  # noqa: BLE001 - a violation is what the bench reports
            outcomes["VIOLATION"] += 1
            violations.append(f"input {index} (seed {path}): {type(error).__name__}: "
                              f"{traceback.format_exception_only(error)[-1].strip()[:300]}")  # fmt: skip
        timings.append((time.perf_counter() - began, index, path, mutated))
    elapsed = time.perf_counter() - started
    timings.sort(reverse=True)
    slowest = [
        {"seconds": round(seconds, 4), "input": index, "seed": Path(path).parent.name + "/" + Path(path).name,
         "chars": len(text), "starts": text[:60]}
        for seconds, index, path, text in timings[: args.top]
    ]  # fmt: skip
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for _, index, _, text in timings[: args.top]:
            (args.save / f"slow_{index}.yml").write_text(text, encoding="utf-8", errors="surrogatepass")
    report = {
        "inputs": args.n, "seed": args.seed, "seconds": round(elapsed, 2),
        "inputs_per_second": round(args.n / elapsed, 1), "outcomes": dict(outcomes.most_common()),
        "violations": violations[:20], "slowest": slowest,
    }  # fmt: skip
    print(json.dumps(report, indent=2, ensure_ascii=True))
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
