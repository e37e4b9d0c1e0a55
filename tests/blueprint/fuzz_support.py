"""Seeds and mutations for fuzzing the Blueprint compiler (the CI test and bench/fuzz.py).

Seeds are the shared aqueduct-gallery's Blueprints and the project's own; mutations are the
classes a fuzz run found crashes with: byte flips, truncation, deep nesting, YAML tags and
aliases, wrong types, odd unicode, and SQL / template hazards.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.lineage import MAX_SQL_CHARS
from aqueduct_dagster.blueprint.loader import MAX_NODES, load_document
from aqueduct_dagster.blueprint.templating import MAX_TEMPLATE_WORK
from aqueduct_dagster.blueprint.work import WorkMeter, measure
from aqueduct_dagster.errors import AqueductError

REPO = Path(__file__).resolve().parents[2]
_NOT_BLUEPRINTS = (".aqtest.yml", ".aqtest.yaml", ".aqscenario.yml", ".aqscenario.yaml")
#: Environment the seeds read (`@aq.env('HOME')`); never the real one.
FUZZ_ENV = {"HOME": "/home/fuzz", "USER": "fuzz"}


def seed_files(*folders: Path) -> list[Path]:
    files = []
    for folder in folders:
        for path in sorted(folder.rglob("*.y*ml")):
            if path.name.endswith(_NOT_BLUEPRINTS) or path.name.startswith("aqueduct."):
                continue
            files.append(path)
    return files


def project_seeds() -> list[Path]:
    return seed_files(REPO / "blueprints", REPO / "gallery")


# --------------------------------------------------------------------------- mutations

_ODD_TEXT = [
    "\x00", "\x07", "\x1b[31m", "\ufeff", "\u202e", "\u0301", "\U0001f4a5", "\ud800", "\udfff",
    '"\\ud800"', '"\\udc00x"', "\\", "'", '"', "\t", "\r", "\x85", "\u2028", "%", "@aq.", "${",
    "{{", "}}", "#", "&", "*", "!", "|", ">", "? ", "- ", ": ", ",", "[", "]", "{", "}", "---\n",
    "...\n",
]  # fmt: skip
_TAGS = [
    "!!python/name:os.system ", "!!python/object/apply:os.system ", "!!int ", "!!bool ",
    "!!float ", "!!binary ", "!!set ", "!!omap ", "!!timestamp ", "!foo ", "!<tag:x> ", "!! ",
]  # fmt: skip
_ALIASES = [
    "&a ", "*a", "x: &a [*a]\n", "<<: 5\n", "<<: *a\n", "<<: [*a, *a]\n", "y: &b {k: 1}\n",
    "z: {<<: *b}\n", "*undefined",
]  # fmt: skip
_VALUES = [
    "[1, 2]", "{a: 1}", "2020-02-30", "~", "1e999", "-.inf", ".nan", "0x1F", "0o17", "1_000",
    "190:20:30", "yes", "null", "''", "9" * 5000, "2001-12-14t21:59:43.10-05:00", "=", "<<",
]  # fmt: skip


def _hazards(rng: random.Random) -> list[str]:
    depth = rng.choice([10, 70, 1_500, 30_000])
    return [
        "[" * depth, "{a: " * min(depth, 3_000), "(" * rng.choice([30, 60, 500]),
        " OR a=1" * rng.choice([100, 3_000, 20_000]), "{{ macros.a(" * rng.choice([10, 3_000]),
        "CASE WHEN a THEN " * rng.choice([30, 200]), "${ctx." * 50, "@aq.env(" * 200,
        "\n" + "  " * rng.choice([40, 400]) + "- x",
    ]


def mutate(text: str, rng: random.Random) -> str:
    """One to three mutations of `text`."""
    for _ in range(rng.randint(1, 3)):
        position = rng.randint(0, len(text))
        kind = rng.randrange(8)
        if kind == 0:  # flip a character
            end = min(len(text), position + 1)
            text = text[:position] + chr(rng.randrange(0, 0x3000)) + text[end:]
        elif kind == 1:
            text = text[:position]
        elif kind == 2:
            text = text[:position] + rng.choice(_ODD_TEXT) + text[position:]
        elif kind == 3:
            text = text[:position] + rng.choice(_TAGS) + text[position:]
        elif kind == 4:
            text = text[:position] + rng.choice(_ALIASES) + text[position:]
        elif kind == 5:  # a wrong type where a value starts
            colon = text.find(": ", position)
            if colon >= 0:
                end = text.find("\n", colon)
                end = len(text) if end < 0 else end
                text = text[: colon + 2] + rng.choice(_VALUES) + text[end:]
        elif kind == 6:
            text = text[:position] + rng.choice(_hazards(rng)) + text[position:]
        else:  # duplicate a slice (repeats keys, grows documents)
            end = rng.randint(position, min(len(text), position + 400))
            text = text[:end] + text[position:end] + text[end:]
    return text


# --------------------------------------------------------------------------- one input


@dataclass
class Outcome:
    error: AqueductError | None
    work: WorkMeter
    length: int


def work_budget(length: int) -> int:
    """The most work one input of `length` characters may cause."""
    return 40 * length + MAX_NODES + MAX_TEMPLATE_WORK + 8 * MAX_SQL_CHARS


def run_one(text: str, source_path: str, compile_it: bool = True) -> Outcome:
    """Load (and compile) one input; only project errors may escape it, and each is located."""
    with measure() as work:
        try:
            if compile_it:
                compile_text(text, source_path=source_path, env=FUZZ_ENV)
            else:
                load_document(text, source_path)
        except AqueductError as error:
            return Outcome(error, work, len(text))
    return Outcome(None, work, len(text))


def check(outcome: Outcome, text: str) -> None:
    """The properties every input must have."""
    error = outcome.error
    if error is not None:
        assert error.location is not None and error.location.line is not None, (
            f"an error without a line number: {error!r}"
        )
    assert outcome.work.total <= work_budget(len(text)), (
        f"{outcome.work} is over the work budget {work_budget(len(text))}"
    )


Mutator = Callable[[str, random.Random], str]
