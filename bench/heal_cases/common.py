"""What a heal case is, and the small file writers the cases share."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

Expect = Literal["fix", "defer"]


@dataclass(frozen=True)
class Case:
    """One realistic breakage, run as a user would meet it.

    All paths are relative to the case's data folder (AQUEDUCT_DATA_DIR, which the Blueprint
    reads as `${ctx.data_dir}`).
    """

    name: str  # also the Blueprint id and its job name
    breakage: str  # the failure class, for the table
    expect: Expect  # "fix": a correct patch exists; "defer": the only honest answer is to defer
    blueprint: str  # the Blueprint's YAML text
    write_good: Callable[[Path], None]  # the input of the last good run
    break_input: Callable[[Path], None]  # what changed upstream
    #: The correct output for the changed input; None where no output is honest (a defer case).
    answer: Callable[[Path], pd.DataFrame] | None
    output: str  # the published table, relative to the data folder
    output_format: Literal["parquet", "delta"] = "parquet"
    why: str = ""  # what a correct healer does, one line
    #: A correct fix written by hand, as (old, new) text replacements in the Blueprint: run
    #: with `--reference` in place of the heal, it proves the case's answer (fix cases only).
    reference: tuple[tuple[str, str], ...] = ()


def blueprint(case_id: str, body: str, *, title: str) -> str:
    """A Blueprint with the project's usual header: data under AQUEDUCT_DATA_DIR, human approval."""
    return (
        f'aqueduct: "1.0"\nid: {case_id}\nname: {title}\n\n'
        "context:\n  data_dir: \"@aq.env('AQUEDUCT_DATA_DIR', 'data')\"\n\n"
        "agent:\n  approval: human\n\n" + body.strip() + "\n"
    )


def rng(seed: int) -> random.Random:
    return random.Random(seed)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]], delimiter: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def write_parquet(path: Path, records: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def read_csv(path: Path, **options: Any) -> pd.DataFrame:
    """A CSV as pandas reads it, every column as text (the case decides the types)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, **options)
