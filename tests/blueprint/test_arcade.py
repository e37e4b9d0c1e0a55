"""Arcade modules: sub-Blueprints by `ref`, flattened into the parent at compile time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aqueduct_dagster.blueprint import RunInfo, bind_runtime, compile_blueprint
from aqueduct_dagster.blueprint.manifest import ModuleInput
from aqueduct_dagster.errors import BlueprintError

from .conftest import TEST_ENV

HEAD = 'aqueduct: "1.0"\nid: {id}\nname: {id}\n'


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of `text` that holds `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


ORDERS = (
    "  - id: orders\n    type: Ingress\n    config:\n      format: csv\n"
    "      path: /data/orders.csv\n      schema_hint: {id: int, amount: double, region: string}\n"
)

#: A reusable cleaner: reads the parent's frame as `source`, two Channels, one exit.
CLEAN = (
    HEAD.format(id="clean_orders")
    + "required_context: [threshold]\n"
    "context:\n  threshold: 0\n  label: cleaned\n"
    "macros:\n  above: \"amount > {{ limit }}\"\n"
    "modules:\n"
    "  - id: filtered\n    type: Channel\n    config:\n      op: sql\n"
    "      query: \"SELECT * FROM source WHERE {{ macros.above(limit=${ctx.threshold}) }}\"\n"
    "  - id: deduped\n    type: Channel\n    label: ${ctx.label}\n    config:\n"
    "      op: sql\n      query: SELECT DISTINCT * FROM filtered\n"
)

PARENT = (
    HEAD.format(id="shop")
    + "context:\n  min_amount: 10\n"
    "modules:\n"
    + ORDERS
    + "  - id: clean\n    type: Arcade\n    ref: arcades/clean.yml\n"
    "    context_override:\n      threshold: ${ctx.min_amount}\n"
    "  - id: report\n    type: Channel\n    config:\n      op: sql\n"
    "      query: SELECT region, SUM(amount) AS total FROM clean GROUP BY region\n"
    "  - {id: out, type: Egress, config: {format: parquet, path: /out}}\n"
    "edges:\n"
    "  - {from: orders, to: clean, as: source}\n"
    "  - {from: clean, to: report}\n"
    "  - {from: report, to: out}\n"
)


@pytest.fixture
def project(write_blueprint, tmp_path):
    """`project(files)` writes {relative path: text} and compiles blueprint.yml;
    `project.error(files)` returns the BlueprintError instead."""

    def write(files: dict[str, str]):
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            write_blueprint(text, name=name)

    def compile_(files: dict[str, str], root: str = "blueprint.yml"):
        write(files)
        return compile_blueprint(tmp_path / root, env=TEST_ENV)

    def error(files: dict[str, str], root: str = "blueprint.yml"):
        with pytest.raises(BlueprintError) as caught:
            compile_(files, root)
        return caught.value

    compile_.error = error
    return compile_


def test_arcade_expands_into_namespaced_modules_wired_through_entry_and_exit(project):
    manifest = project({"blueprint.yml": PARENT, "arcades/clean.yml": CLEAN})
    assert list(manifest.modules) == [
        "orders", "clean__filtered", "clean__deduped", "report", "out",
    ]  # fmt: skip
    filtered = manifest.module("clean__filtered")
    # The entry takes the edge into the Arcade, under the alias the parent gave it.
    assert filtered.inputs == (ModuleInput(source="orders", alias="source"),)
    assert filtered.arcade == ("clean",) and filtered.local_id == "filtered"
    assert manifest.module("clean__deduped").inputs[0].source == "clean__filtered"
    # The exit feeds the edge out; the consumer's SQL still calls it `clean`.
    report = manifest.module("report")
    assert report.inputs == (ModuleInput(source="clean__deduped", alias="clean"),)
    assert report.column_lineage["total"][0].module == "clean__deduped"
    edges = {(e.from_, e.to, e.as_) for e in manifest.edges}
    assert ("orders", "clean__filtered", "source") in edges
    assert ("clean__deduped", "report", "clean") in edges
    assert "clean" not in manifest.modules


def test_sub_blueprint_uses_its_macros_and_context_override_from_the_parent_context(project):
    manifest = project({"blueprint.yml": PARENT, "arcades/clean.yml": CLEAN})
    assert manifest.module("clean__filtered").sql == "SELECT * FROM source WHERE amount > 10"
    # Its own context supplies what the override does not.
    assert manifest.module("clean__deduped").spec.label == "cleaned"
    # The Manifest's context stays the parent's.
    assert manifest.context == {"min_amount": 10}


def test_child_values_have_provenance_and_locations_in_the_sub_blueprint_file(project):
    manifest = project({"blueprint.yml": PARENT, "arcades/clean.yml": CLEAN})
    filtered = manifest.module("clean__filtered")
    assert filtered.location.file.endswith("arcades/clean.yml")
    assert filtered.location.line == line_of(CLEAN, "id: filtered")
    provenance = manifest.provenance["modules.clean__filtered.config.query"]
    assert provenance.source == "context_override"
    assert provenance.location.file.endswith("arcades/clean.yml")
    assert provenance.location.line == line_of(CLEAN, "query: \"SELECT * FROM source")
    assert "macro macros.above" in provenance.detail


def test_parent_context_is_inherited_below_the_sub_blueprints_own(project):
    parent = PARENT.replace("  min_amount: 10\n", "  min_amount: 10\n  threshold: 3\n")
    parent = parent.replace("    context_override:\n      threshold: ${ctx.min_amount}\n", "")
    sub = CLEAN.replace("  threshold: 0\n", "")
    manifest = project({"blueprint.yml": parent, "arcades/clean.yml": sub})
    assert manifest.module("clean__filtered").sql.endswith("amount > 3")


def test_missing_required_context_names_the_sub_blueprint_and_the_arcade(project):
    sub = CLEAN.replace("context:\n  threshold: 0\n", "context:\n")
    parent = PARENT.replace("    context_override:\n      threshold: ${ctx.min_amount}\n", "")
    error = project.error({"blueprint.yml": parent, "arcades/clean.yml": sub})
    assert "required context key(s) missing: 'threshold'" in error.message
    assert error.location.file.endswith("arcades/clean.yml")
    assert error.location.line == line_of(sub, "required_context")
    assert "(inside Arcade clean)" in error.message
    assert "context_override" in error.hint


def test_nested_arcades_expand_recursively(project):
    inner = (
        HEAD.format(id="inner")
        + "modules:\n  - id: shout\n    type: Channel\n    config:\n      op: sql\n"
        "      query: SELECT UPPER(region) AS region, amount FROM rows\n"
    )
    outer = (
        HEAD.format(id="outer")
        + "modules:\n  - id: keep\n    type: Channel\n    config:\n      op: sql\n"
        "      query: SELECT * FROM source WHERE amount > 0\n"
        "  - {id: upper, type: Arcade, ref: inner.yml}\n"
        "  - {id: last, type: Channel, config: {op: sql, query: SELECT * FROM upper}}\n"
        "edges:\n  - {from: keep, to: upper, as: rows}\n  - {from: upper, to: last}\n"
    )
    parent = (
        HEAD.format(id="shop") + "modules:\n" + ORDERS
        + "  - {id: prep, type: Arcade, ref: arcades/outer.yml}\n"
        "  - {id: out, type: Egress, config: {format: parquet, path: /out}}\n"
        "edges:\n  - {from: orders, to: prep, as: source}\n  - {from: prep, to: out}\n"
    )  # fmt: skip
    manifest = project(
        {"blueprint.yml": parent, "arcades/outer.yml": outer, "arcades/inner.yml": inner}
    )
    assert list(manifest.modules) == [
        "orders", "prep__keep", "prep__upper__shout", "prep__last", "out",
    ]  # fmt: skip
    shout = manifest.module("prep__upper__shout")
    assert shout.arcade == ("prep", "upper") and shout.local_id == "shout"
    assert shout.inputs == (ModuleInput(source="prep__keep", alias="rows"),)
    assert shout.location.file.endswith("arcades/inner.yml")
    assert manifest.module("prep__last").inputs[0].source == "prep__upper__shout"
    assert manifest.module("out").inputs[0].source == "prep__last"


SPLIT = (
    HEAD.format(id="split")
    + "modules:\n"
    "  - {id: big, type: Channel, config: {query: SELECT * FROM source WHERE amount > 100}}\n"
    "  - {id: small, type: Channel, config: {query: SELECT * FROM source WHERE amount <= 100}}\n"
    "  - {id: seen, type: Probe, attach_to: big, config: {signals: [{type: row_count}]}}\n"
    "edges: []\n"
)


def _split_parent(edge_out: str) -> str:
    return (
        HEAD.format(id="shop") + "modules:\n" + ORDERS
        + "  - {id: split, type: Arcade, ref: split.yml}\n"
        "  - {id: out, type: Egress, config: {format: parquet, path: /out}}\n"
        "edges:\n  - {from: orders, to: split, as: source}\n" + edge_out
    )  # fmt: skip


def test_every_entry_gets_the_arcade_input(project):
    manifest = project(
        {"blueprint.yml": _split_parent("  - {from: split, to: out, port: big}\n"),
         "split.yml": SPLIT}
    )  # fmt: skip
    for entry in ("split__big", "split__small"):
        assert manifest.module(entry).inputs == (ModuleInput(source="orders", alias="source"),)
    assert manifest.module("split__seen").spec.attach_to == "split__big"


def test_several_exits_need_a_port_and_the_error_lists_them(project):
    parent = _split_parent("  - {from: split, to: out}\n")
    error = project.error({"blueprint.yml": parent, "split.yml": SPLIT})
    assert "which has 2 exits" in error.message and "'big', 'small'" in error.message
    assert error.location.file.endswith("blueprint.yml")
    assert error.location.line == line_of(parent, "{from: split, to: out}")
    assert error.module_id == "out" and "port: <exit>" in error.hint


def test_a_port_that_is_no_exit_suggests_the_closest(project):
    error = project.error(
        {"blueprint.yml": _split_parent("  - {from: split, to: out, port: smal}\n"),
         "split.yml": SPLIT}
    )  # fmt: skip
    assert "(did you mean 'small'?)" in error.message


def test_port_picks_the_exit_and_the_default_alias_names_it(project):
    parent = _split_parent(
        "  - {from: split, to: both, port: big}\n  - {from: split, to: both, port: small}\n"
        "  - {from: both, to: out}\n"
    )
    parent = parent.replace(
        "  - {id: out,",
        "  - {id: both, type: Funnel, config: {mode: union_all, inputs: [split.small]}}\n"
        "  - {id: out,",
    )
    manifest = project({"blueprint.yml": parent, "split.yml": SPLIT})
    both = manifest.module("both")
    assert [(i.source, i.alias) for i in both.inputs] == [
        ("split__small", "split_small"), ("split__big", "split_big"),
    ]  # fmt: skip
    assert both.spec.config.inputs == ["split__small"]


def test_depends_on_an_arcade_waits_for_all_of_it_and_a_self_contained_arcade(project):
    load = (
        HEAD.format(id="load")
        + "context:\n  day: today\nmodules:\n"
        "  - {id: read, type: Ingress, config: {format: csv, path: '/in/${ctx.day}.csv'}}\n"
        "  - {id: write, type: Egress, config: {format: parquet, path: /staged}}\n"
    )
    parent = (
        HEAD.format(id="shop") + "modules:\n" + ORDERS
        + "  - {id: staging, type: Arcade, ref: load.yml, depends_on: [orders],"
        " context_override: {day: monday}}\n"
        "  - {id: out, type: Egress, depends_on: [staging], config: {format: parquet, path: /o}}\n"
        "edges:\n  - {from: orders, to: out}\n"
    )  # fmt: skip
    manifest = project({"blueprint.yml": parent, "load.yml": load})
    assert manifest.module("staging__read").after == ("orders",)
    assert manifest.module("staging__read").spec.config.path == "/in/monday.csv"
    assert manifest.module("out").after == ("staging__write",)
    assert manifest.module("out").spec.depends_on == ["staging__write"]


def test_an_edge_into_an_arcade_without_entries_is_an_error(project):
    load = HEAD.format(id="load") + "modules:\n  - {id: read, type: Ingress, config: {path: /x}}\n"
    parent = (
        HEAD.format(id="shop") + "modules:\n" + ORDERS
        + "  - {id: staging, type: Arcade, ref: load.yml}\n"
        "edges:\n  - {from: orders, to: staging}\n"
    )  # fmt: skip
    error = project.error({"blueprint.yml": parent, "load.yml": load})
    assert "Arcade 'staging' takes no data input" in error.message
    assert "depends_on: [orders]" in error.hint


def test_arcade_files_that_refer_to_each_other_print_the_cycle(project):
    a = HEAD.format(id="a") + "modules:\n  - {id: to_b, type: Arcade, ref: b.yml}\nedges: []\n"
    b = HEAD.format(id="b") + "modules:\n  - {id: to_a, type: Arcade, ref: a.yml}\nedges: []\n"
    parent = HEAD.format(id="p") + "modules:\n  - {id: start, type: Arcade, ref: sub/a.yml}\n"
    parent += "edges: []\n"
    error = project.error({"blueprint.yml": parent, "sub/a.yml": a, "sub/b.yml": b})
    assert "cycle: sub/a.yml -> sub/b.yml -> sub/a.yml" in error.message
    assert error.location.file.endswith("sub/b.yml")
    assert "(inside Arcade start -> to_b)" in error.message


def test_missing_ref_suggests_a_sibling_file(project):
    parent = PARENT.replace("arcades/clean.yml", "arcades/clen.yml")
    error = project.error({"blueprint.yml": parent, "arcades/clean.yml": CLEAN})
    assert "Arcade file 'arcades/clen.yml' not found" in error.message
    assert "(did you mean 'arcades/clean.yml'?)" in error.message
    assert error.location.line == line_of(parent, "ref: arcades/clen.yml")
    assert error.module_id == "clean"


def test_an_error_deep_inside_names_the_sub_blueprint_line_and_the_arcade_chain(project):
    inner = (
        HEAD.format(id="inner")
        + "modules:\n  - id: shout\n    type: Channel\n    config:\n      op: sql\n"
        "      query: SELECT * FROM nowhere\n"
    )
    outer = HEAD.format(id="outer") + "modules:\n  - {id: deeper, type: Arcade, ref: inner.yml}\n"
    outer += "edges: []\n"
    parent = HEAD.format(id="p") + "modules:\n  - {id: top, type: Arcade, ref: outer.yml}\n"
    parent += "edges: []\n"
    error = project.error({"blueprint.yml": parent, "outer.yml": outer, "inner.yml": inner})
    assert error.location.file.endswith("inner.yml")
    assert error.location.line == line_of(inner, "nowhere")
    assert "reads table 'nowhere'" in error.message
    assert "(inside Arcade top -> deeper)" in error.message
    assert str(error).count("inside Arcade") == 1


def test_a_template_error_inside_names_the_sub_blueprint_and_the_arcade(project):
    sub = CLEAN.replace("${ctx.label}", "${ctx.lable}")
    error = project.error({"blueprint.yml": PARENT, "arcades/clean.yml": sub})
    assert error.location.file.endswith("arcades/clean.yml")
    assert error.location.line == line_of(sub, "lable")
    assert "unknown context key 'lable'" in error.message
    assert "(did you mean 'label'?)" in error.message
    assert "(inside Arcade clean)" in error.message


def test_double_underscore_is_still_rejected_in_user_written_ids(project):
    root = HEAD.format(id="p") + "modules:\n  - {id: a__b, type: Ingress}\n"
    error = project.error({"blueprint.yml": root})
    assert "contains '__', which is reserved for Arcade namespacing" in error.message
    sub = CLEAN.replace("id: deduped", "id: de__duped")
    error = project.error({"blueprint.yml": PARENT, "arcades/clean.yml": sub})
    assert "reserved for Arcade namespacing" in error.message
    assert error.location.file.endswith("arcades/clean.yml")


def test_an_arcade_needs_a_ref(compile_error):
    error = compile_error(HEAD.format(id="p") + "modules:\n  - {id: a, type: Arcade}\nedges: []\n")
    assert "an Arcade needs `ref:`" in error.message and error.module_id == "a"


def test_a_disabled_arcade_is_dropped_without_reading_its_file(project):
    parent = PARENT.replace("ref: arcades/clean.yml\n", "ref: gone.yml\n    enabled: false\n")
    manifest = project({"blueprint.yml": parent})
    assert list(manifest.modules) == ["orders"]
    assert any("module 'clean' is disabled" in w for w in manifest.warnings)


def test_sub_blueprint_warnings_name_the_arcade(project):
    sub = CLEAN + "  - {id: spare, type: Channel, enabled: false, config: {query: SELECT 1}}\n"
    manifest = project({"blueprint.yml": PARENT, "arcades/clean.yml": sub})
    assert "Arcade clean: module 'spare' is disabled (enabled: false)" in manifest.warnings


def test_a_flattened_manifest_binds_runtime_tokens(project):
    manifest = project({"blueprint.yml": PARENT, "arcades/clean.yml": CLEAN})
    run = RunInfo(run_id="r1", started_at=datetime(2024, 1, 2, tzinfo=UTC))
    bound = bind_runtime(manifest, run)
    assert list(bound.modules) == list(manifest.modules)
    assert bound.module("clean__filtered").arcade == ("clean",)
