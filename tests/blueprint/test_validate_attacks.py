"""Hostile Blueprints through the real `aqueduct` entry point: a clean, located error or
success, in bounded work, never a traceback; `compile` and `lineage` agree with `validate`.

Each row is a class an attack run found before its fix (the symptom is in the row's comment).
Budgets are counted in work (parser events, template characters) where the fix is a limit;
a few inputs also run as a real subprocess, bounded in CPU seconds, not wall-clock ones, so a
busy CI machine does not fail them.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.blueprint import compile_text
from aqueduct_dagster.blueprint.compiler import (
    MAX_ARCADE_DEPTH,
    MAX_ARCADE_EXPANSIONS,
    MAX_BLUEPRINT_SQL_WORK,
    MAX_LINEAGE_WORK,
)
from aqueduct_dagster.blueprint.loader import MAX_NODES
from aqueduct_dagster.blueprint.suggest import closest
from aqueduct_dagster.blueprint.templating import MAX_REFERENCE_DEPTH, MAX_TEMPLATE_WORK
from aqueduct_dagster.blueprint.work import measure
from aqueduct_dagster.cli import main
from aqueduct_dagster.errors import BlueprintError

HEAD = 'aqueduct: "1.0"\nid: t\nname: t\n'
INGRESS = "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv, schema_hint: {a: int, b: int}}}\n"
LOCATED = re.compile(r"\.yml:\d+:\d+: ")


def blueprint(modules: str = "", edges: str = "", extra: str = "") -> str:
    return HEAD + extra + "modules:\n" + INGRESS + modules + (f"edges:\n{edges}" if edges else "")


def channel(query: str) -> str:
    return blueprint(
        f"  - id: c\n    type: Channel\n    config:\n      op: sql\n      query: |\n        {query}\n",
        "  - {from: raw, to: c}\n",
    )


def sql_chain(length: int, select: str) -> str:
    modules = "".join(
        f"  - {{id: m{i}, type: Channel, config: {{op: sql, query: "
        f"'SELECT {select} FROM {'raw' if i == 0 else f'm{i - 1}'}'}}}}\n"
        for i in range(length)
    )
    edges = "  - {from: raw, to: m0}\n" + "".join(
        f"  - {{from: m{i}, to: m{i + 1}}}\n" for i in range(length - 1)
    )
    return blueprint(modules, edges)


@dataclass(frozen=True)
class Attack:
    name: str
    text: str
    exit_code: int
    message: str  # "" when it succeeds


ATTACKS = [
    # RecursionError (exit 4): `${ctx.c0}` -> `${ctx.c1}` -> ... 1,000 keys deep.
    Attack(
        "context_reference_chain",
        blueprint(
            extra="context:\n"
            + "".join(f"  c{i}: '${{ctx.c{i + 1}}}'\n" for i in range(1_000))
            + "  c1000: 1\n"
        ),
        2,
        f"levels deep (the reference depth limit): ctx.c0 -> ctx.c1 -> ctx.c2 -> ctx.c3 -> ... -> ctx.c{MAX_REFERENCE_DEPTH}",
    ),
    # Minutes and gigabytes: each key doubles the text of the next, cached values are not read
    # again, so only counting what is written stops it.
    Attack(
        "context_doubling",
        blueprint(
            extra="context:\n"
            + "".join(f"  c{i}: '${{ctx.c{i + 1}}}${{ctx.c{i + 1}}}'\n" for i in range(40))
            + "  c40: x\n"
        ),
        2,
        "templates expand past the template expansion budget",
    ),
    # 1.3 s for 800,000 characters: every @aq call is parsed with ast.
    Attack(
        "many_function_calls",
        blueprint(extra='context:\n  a: "' + "@aq.env('HOME') " * 50_000 + '"\n'),
        2,
        "templates expand past the template expansion budget",
    ),
    # > 8 s: a 2 MB flow list of 500,000 values was parsed whole before any limit applied.
    Attack(
        "two_megabytes_of_values",
        HEAD + "modules: []\ncontext: {a: [" + "1," * 500_000 + "1]}\n",
        2,
        f"the document has more than {MAX_NODES:,} values (the node limit)",
    ),
    # > 8 s: 50,000 edges (the same one) built 150,000 values.
    Attack(
        "fifty_thousand_edges",
        blueprint(
            "  - {id: c, type: Channel, config: {op: filter, condition: 'a>1'}}\n",
            "  - {from: raw, to: c}\n" * 50_000,
        ),
        2,
        "(the node limit)",
    ),
    # > 8 s: context keys were merged in time quadratic in their number.
    Attack(
        "many_context_keys",
        blueprint(extra="context:\n" + "".join(f"  k{i}: &a{i} {i}\n" for i in range(12_000))),
        0,
        "",
    ),
    # 4.5 s, then a wrong "template expansion budget" error: a Blueprint of 5,000 short
    # modules is not a template bomb; it now meets the node limit while being parsed.
    Attack(
        "five_thousand_modules",
        blueprint(
            "".join(
                f"  - {{id: m{i}, type: Channel, config: {{op: filter, condition: 'a>1'}}}}\n"
                for i in range(5_000)
            ),
            "  - {from: raw, to: m0}\n"
            + "".join(f"  - {{from: m{i}, to: m{i + 1}}}\n" for i in range(4_999)),
        ),
        2,
        "(the node limit)",
    ),
    # Seconds: each edge was compared with every earlier one (5,000 edges, 12M comparisons),
    # and a Funnel's inputs with every wire.
    Attack(
        "five_thousand_edges_and_a_wide_funnel",
        blueprint(
            "".join(
                f"  - {{id: m{i}, type: Channel, config: {{op: filter, condition: 'a>1'}}}}\n"
                for i in range(100)
            )
            + "  - {id: u, type: Funnel, config: {mode: union_all, inputs: ["
            + ", ".join(f"m{i}" for i in range(100))
            + "]}}\n",
            "  - {from: raw, to: m0}\n"
            + "".join(
                f"  - {{from: m{i}, to: m{j}}}\n" for i in range(100) for j in range(i + 1, 100)
            )
            + "".join(f"  - {{from: m{i}, to: u}}\n" for i in range(100)),
        ),
        0,
        "",
    ),
    # 1 s+ in the pure-Python parser: a large file with a syntax error near its end was parsed
    # again for PyYAML's wording.
    Attack(
        "syntax_error_after_a_megabyte",
        HEAD + "modules: []\n" + "k" * 1_000_000 + "\n",
        2,
        "invalid YAML: could not find expected ':'",
    ),
]


def invoke(command: str, path: Path):
    return CliRunner().invoke(main, [command, str(path)])


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_validate_compile_and_lineage_agree_on_each_attack(attack: Attack, tmp_path):
    path = tmp_path / f"{attack.name}.yml"
    path.write_text(attack.text, encoding="utf-8")
    for command in ("validate", "compile", "lineage"):
        result = invoke(command, path)
        assert result.exit_code == attack.exit_code, (command, result.output)
        assert "internal error" not in result.output and "Traceback" not in result.output
        if attack.exit_code == 2:
            error = next(line for line in result.output.splitlines() if line.startswith("error: "))
            assert LOCATED.search(error), (command, error)
            assert attack.message in error, (command, error)


def test_node_limit_stops_the_parser_early():
    text = HEAD + "modules: []\ncontext: {a: [" + "1," * 500_000 + "1]}\n"
    with measure() as work, pytest.raises(BlueprintError, match="the node limit"):
        compile_text(text, source_path="bp.yml")
    assert work.yaml_events < MAX_NODES + 100  # not the 500,000 the file holds


def test_context_doubling_stops_within_the_template_budget():
    text = blueprint(
        extra="context:\n"
        + "".join(f"  c{i}: '${{ctx.c{i + 1}}}${{ctx.c{i + 1}}}'\n" for i in range(40))
        + "  c40: x\n"
    )
    with measure() as work, pytest.raises(BlueprintError, match="template expansion budget"):
        compile_text(text, source_path="bp.yml")
    assert work.template_chars < 2 * MAX_TEMPLATE_WORK


def test_lineage_of_a_doubling_chain_is_memoised(tmp_path):
    # 2^60 paths: `lineage` recursed through every one of them (timed out after 8 s).
    path = tmp_path / "fan.yml"
    path.write_text(sql_chain(60, "a + b AS a, a * b AS b"))
    result = invoke("lineage", path)
    assert result.exit_code == 0, result.output
    assert "m59.a <- m58.a, m58.b   (from raw.a, raw.b)" in result.output


def test_column_lineage_of_many_channels_stops_at_its_budget_with_a_warning(tmp_path):
    # 4 s for 2,000 SQL Channels, two thirds of it tracing lineage, which is best effort.
    path = tmp_path / "chain.yml"
    path.write_text(sql_chain(400, "a, b"))
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert f"exceed the lineage work budget of {MAX_LINEAGE_WORK:,}" in result.output
    lineage = invoke("lineage", path)
    assert lineage.exit_code == 0 and "m0.a <- raw.a" in lineage.output


def test_sql_of_all_channels_together_stops_at_the_blueprint_sql_budget(tmp_path):
    # 6 s: 40 Channels, each below the size and tree limits of one query.
    in_list = "SELECT a FROM raw WHERE a IN (" + ",".join(str(i) for i in range(4_000)) + ")"
    modules = "".join(
        f"  - {{id: c{i}, type: Channel, config: {{op: sql, query: '{in_list}'}}}}\n"
        for i in range(40)
    )
    path = tmp_path / "wide.yml"
    path.write_text(
        blueprint(modules, "".join(f"  - {{from: raw, to: c{i}}}\n" for i in range(40)))
    )
    with measure() as work:
        result = invoke("validate", path)
    assert result.exit_code == 2, result.output
    assert (
        f"config.query: the Blueprint's SQL exceeds the SQL work budget of {MAX_BLUEPRINT_SQL_WORK:,}"
        in result.output
    )
    assert LOCATED.search(result.output)
    assert work.sql_chars < MAX_BLUEPRINT_SQL_WORK


def test_lineage_of_select_star_over_wide_tables_stays_within_budget(tmp_path):
    # 8 minutes: `SELECT *` over 2,000 columns traces 2,000 columns, each scanning 2,000
    # outputs, in every Channel of the chain.
    columns = ", ".join(f"c{i}: int" for i in range(2_000))
    text = sql_chain(30, "*").replace(
        "schema_hint: {a: int, b: int}", f"schema_hint: {{{columns}}}"
    )
    path = tmp_path / "star.yml"
    path.write_text(text)
    result = invoke("validate", path)
    assert result.exit_code == 0, result.output
    assert (
        "column lineage was traced for the first Channels only: 30 more (from 'm0' on)"
        in result.output
    )


def test_did_you_mean_skips_huge_names_quickly():
    candidates = [f"module_{i}" for i in range(60_000)]
    assert closest("x" * 200_000, candidates) is None
    assert closest("module_1x", candidates) is not None


# ------------------------------------------------------------------- real subprocess, timed


SUBPROCESS_ATTACKS = [
    "context_doubling",
    "two_megabytes_of_values",
    "fifty_thousand_edges",
    "many_context_keys",
]


@pytest.mark.parametrize("name", SUBPROCESS_ATTACKS)
def test_aqueduct_validate_process_stays_within_its_cpu_budget(name: str, tmp_path):
    attack = next(a for a in ATTACKS if a.name == name)
    path = tmp_path / f"{name}.yml"
    path.write_text(attack.text, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aqueduct"), "validate", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert done.returncode == attack.exit_code, done.stderr
    assert "Traceback" not in done.stderr
    # The held-out bar is 2 s of wall time on an idle 2-core machine, start-up included;
    # CPU time is what this process spent, whatever else the machine is doing.
    assert cpu < 2.5, f"{name}: {cpu:.2f} s of CPU"


# ------------------------------------------------------------------- files that are not files


def test_a_fifo_or_a_device_is_refused_without_being_read(tmp_path):
    # `aqueduct validate pipe.yml` waited forever for a writer; a link to /dev/zero is a device.
    fifo = tmp_path / "pipe.yml"
    os.mkfifo(fifo)
    device = tmp_path / "zero.yml"
    device.symlink_to("/dev/zero")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aqueduct"), "validate", str(fifo), str(device)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert (
        f"{fifo}: this is a named pipe (FIFO), not a regular file, so it is not read" in done.stderr
    )
    assert f"{device}: this is a device, not a regular file, so it is not read" in done.stderr


def test_compile_of_a_folder_and_validate_of_a_folder_without_blueprints(tmp_path):
    folder = tmp_path / "looks_like.yml"
    folder.mkdir()
    compiled = invoke("compile", folder)
    assert compiled.exit_code == 2
    assert f"{folder}: this is a folder, not a Blueprint file" in compiled.output
    validated = invoke("validate", folder)
    assert validated.exit_code == 2
    assert f"error: no Blueprint files found in {folder}" in validated.output


# ------------------------------------------------------------------- Arcade references


def arcade_file(*refs: str) -> str:
    modules = "".join(
        f"  - {{id: a{i}, type: Arcade, ref: '{ref}'}}\n" for i, ref in enumerate(refs)
    )
    return HEAD + "modules:\n" + INGRESS + modules + "edges: []\n"


def test_arcade_ref_through_a_symlink_loop_is_located(tmp_path):
    # RuntimeError from Path.resolve (exit 4), and again from listing a folder holding a loop.
    (tmp_path / "loop1.yml").symlink_to("loop2.yml")
    (tmp_path / "loop2.yml").symlink_to("loop1.yml")
    for ref, message in [
        ("loop1.yml", "module 'a0': Arcade file 'loop1.yml' cannot be opened: Symlink loop"),
        ("missing.yml", "module 'a0': Arcade file 'missing.yml' not found"),
    ]:
        path = tmp_path / "bp.yml"
        path.write_text(arcade_file(ref))
        result = invoke("validate", path)
        assert result.exit_code == 2, result.output
        assert f"{path}:6:33: {message}" in result.output


def test_arcade_ref_to_a_device_or_a_folder_is_refused(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "bp.yml"
    path.write_text(arcade_file("/dev/zero", "sub"))
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert "6:33: module 'a0': Arcade file '/dev/zero' is not a regular file" in result.output


def test_arcades_that_double_per_level_stop_at_the_expansion_limit(tmp_path):
    # Each file used the next one twice: 2^25 expansions, effectively forever.
    for level in range(12):
        (tmp_path / f"e{level}.yml").write_text(
            arcade_file(f"e{level + 1}.yml", f"e{level + 1}.yml")
            if level < 11
            else HEAD + "modules:\n" + INGRESS
        )
    result = invoke("validate", tmp_path / "e0.yml")
    assert result.exit_code == 2, result.output
    assert (
        f"the Blueprint expands more than {MAX_ARCADE_EXPANSIONS} sub-Blueprints" in result.output
    )
    assert LOCATED.search(result.output)


def test_arcades_nested_past_the_depth_limit_are_located(tmp_path):
    for level in range(MAX_ARCADE_DEPTH + 5):
        (tmp_path / f"d{level}.yml").write_text(arcade_file(f"d{level + 1}.yml"))
    result = invoke("validate", tmp_path / "d0.yml")
    assert result.exit_code == 2, result.output
    assert f"Arcades nest more than {MAX_ARCADE_DEPTH} levels deep" in result.output
    assert f"d{MAX_ARCADE_DEPTH}.yml:6:5: module 'a0'" in result.output


def test_validate_of_a_symlink_loop_says_so(tmp_path):
    # It said "no such file or folder" while compile said why.
    (tmp_path / "a.yml").symlink_to("b.yml")
    (tmp_path / "b.yml").symlink_to("a.yml")
    result = invoke("validate", tmp_path / "a.yml")
    assert result.exit_code == 2
    assert "cannot read the Blueprint file: Too many levels of symbolic links" in result.output
