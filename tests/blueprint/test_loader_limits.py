"""Each class of hostile input from the fuzz run ends in one located BlueprintError, quickly.

One test per class, with the exact input and the error text a user reads. Time is bounded
in work (nodes built, characters scanned), not seconds, so the tests are machine-independent.
"""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_blueprint, compile_text
from aqueduct_dagster.blueprint.lineage import MAX_SQL_NESTING, referenced_columns
from aqueduct_dagster.blueprint.loader import (
    MAX_ALIAS_NODES,
    MAX_DOCUMENT_BYTES,
    MAX_NESTING_DEPTH,
    load_document,
)
from aqueduct_dagster.blueprint.work import measure
from aqueduct_dagster.errors import BlueprintError

HEAD = 'aqueduct: "1.0"\nid: t\nname: t\n'


def channel(query: str) -> str:
    return (
        HEAD + "modules:\n"
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv, schema_hint: {a: int}}}\n"
        "  - id: c\n    type: Channel\n    config:\n      op: sql\n      query: |\n"
        f"        {query}\n"
    )


def load_error(text: str) -> str:
    with pytest.raises(BlueprintError) as caught:
        load_document(text, "bp.yml")
    return str(caught.value)


def compile_error(text: str) -> str:
    with pytest.raises(BlueprintError) as caught:
        compile_text(text, source_path="bp.yml")
    return str(caught.value)


# ----------------------------------------------------------------------------- aliases


def test_recursive_alias_is_located_not_a_recursion_error():
    assert load_error("x: &a [*a]\n").startswith(
        "bp.yml:1:8: recursive alias '*a': it is inside the value its anchor '&a' names (line 1)"
    )


def test_alias_bomb_stops_at_the_expansion_budget_after_bounded_work():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ",".join([f"*{previous}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    assert len(bomb) < 600  # the 589-byte "billion laughs"
    with measure() as work:
        message = load_error(bomb)
    assert message.startswith("bp.yml:")
    assert f"aliases expand to more than {MAX_ALIAS_NODES:,} values (the alias expansion budget)" in message
    assert work.nodes_built <= MAX_ALIAS_NODES + 200


def test_merge_key_on_a_scalar():
    assert load_error("a: 1\nb:\n  <<: 5\n").startswith(
        "bp.yml:3:7: the merge key `<<` needs a mapping or a list of mappings, found a plain value"
    )


def test_merge_keys_still_merge_with_explicit_keys_winning():
    data = load_document("d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  y: 3\n", "bp.yml").data
    assert data["e"] == {"x": 1, "y": 3}


# ----------------------------------------------------------------------------- tags and values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!python/name:os.system : x\n",
         "bp.yml:1:1: the YAML tag '!!python/name:os.system' is not allowed in a Blueprint"),
        ("a: !!python/object/apply:os.system [ls]\n",
         "bp.yml:1:4: the YAML tag '!!python/object/apply:os.system' is not allowed in a Blueprint"),
        ("a: !custom text\n", "bp.yml:1:4: the YAML tag '!custom' is not allowed in a Blueprint"),
        ("a: !!set {x}\n", "bp.yml:1:4: the YAML tag '!!set' is not allowed in a Blueprint"),
        ("a: !!binary aGk=\n", "bp.yml:1:4: the YAML tag '!!binary' is not allowed in a Blueprint"),
        ("when: 2020-02-30\n",
         "bp.yml:1:7: '2020-02-30' reads as a date but is not a valid one (day is out of range for month)"),
        ("n: !!int abc\n", "bp.yml:1:4: 'abc' is not a valid int"),
        ("flag: !!bool maybe\n", "bp.yml:1:7: 'maybe' is not a boolean"),
        ("f: !!float x\n", "bp.yml:1:4: 'x' is not a valid float"),
        ("n: " + "9" * 5000 + "\n", "bp.yml:1:4: '9999999999999999999999999999999999999999...' is not a valid int"),
    ],
)  # fmt: skip
def test_constructor_errors_are_located(text, expected):
    assert load_error(text).startswith(expected)


# ----------------------------------------------------------------------------- depth and size


@pytest.mark.parametrize("depth", [1_500, 30_000])
def test_deep_flow_nesting_is_rejected_before_any_recursion(depth):
    text = "a: " + "[" * depth + "]" * depth + "\n"
    with measure() as work:
        message = load_error(text)
    assert message.startswith(
        f"bp.yml:1:{3 + MAX_NESTING_DEPTH}: mappings and lists nest deeper than the nesting "
        f"depth limit of {MAX_NESTING_DEPTH} levels"
    )
    assert work.yaml_events < 2 * MAX_NESTING_DEPTH  # stopped at the limit, not at the end


def test_deep_block_nesting_is_rejected():
    text = "a:\n" + "".join(" " * level + "- \n" for level in range(200))
    assert "nesting depth limit of 64 levels" in load_error(text)


def test_aliases_cannot_smuggle_depth_past_the_limit():
    inner = "[" * 40 + "]" * 40
    text = f"a: &a {inner}\nb: {'[' * 40}*a{']' * 40}\n"
    assert "nesting depth limit of 64 levels" in load_error(text)


def test_document_size_limit():
    text = "a: |\n" + ("  " + "x" * 99 + "\n") * (MAX_DOCUMENT_BYTES // 100 + 10)
    message = load_error(text)
    assert f"the file exceeds the document size limit of {MAX_DOCUMENT_BYTES:,} bytes" in message
    assert message.startswith("bp.yml:")


def test_context_nested_400_deep_is_rejected_by_compile_and_validate_alike(tmp_path):
    path = tmp_path / "deep.yml"
    path.write_text(HEAD + "context:\n  x: " + "{a: " * 400 + "1" + "}" * 400 + "\nmodules: []\n")
    with pytest.raises(BlueprintError, match="nesting depth limit of 64 levels") as caught:
        compile_blueprint(path)
    assert str(caught.value).startswith(f"{path}:5:")


def test_a_context_just_inside_the_depth_limit_compiles_and_serializes():
    nested = "{a: " * (MAX_NESTING_DEPTH - 3) + "1" + "}" * (MAX_NESTING_DEPTH - 3)
    text = (
        HEAD + f"context:\n  x: {nested}\nmodules:\n"
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv}}\n"
    )
    manifest = compile_text(text)
    assert '"a"' in manifest.model_dump_json(by_alias=True)


# ----------------------------------------------------------------------------- characters


def test_non_utf8_bytes_give_line_and_column(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes(HEAD.encode() + "description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(BlueprintError) as caught:
        compile_blueprint(path)
    assert str(caught.value).startswith(
        f"{path}:4:17: the file is not UTF-8 text: byte 0xe9 cannot be decoded"
    )


def test_control_characters_give_line_and_column():
    assert load_error("a: 1\nb: x\x07y\n").startswith(
        "bp.yml:2:5: a control character U+0007 is not allowed in YAML"
    )


def test_a_lone_surrogate_escape_is_located_at_the_escape():
    assert load_error('a: 1\nb: "x\\ud800y"\n').startswith(
        "bp.yml:2:6: the escape \\ud800 is an unpaired surrogate (half of a UTF-16 pair)"
    )


def test_a_lone_surrogate_in_a_key_is_rejected_too():
    assert "unpaired surrogate" in load_error('"k\\udc00": 1\n')


# ----------------------------------------------------------------------------- compile in bounded time


def test_fifty_nested_parentheses_are_a_clean_error_naming_the_module():
    query = "SELECT " + "(" * 50 + "a" + ")" * 50 + " FROM raw"
    message = compile_error(channel(query))
    assert "module 'c': config.query: SQL is too complex to analyse: parentheses and CASE nest " \
        f"more than {MAX_SQL_NESTING} levels deep (the SQL nesting limit)" in message
    assert message.startswith("bp.yml:")


def test_deep_case_nesting_is_a_clean_error():
    query = "SELECT " + "CASE WHEN a > 0 THEN " * 60 + "1" + " END" * 60 + " FROM raw"
    assert "the SQL nesting limit" in compile_error(channel(query))


def test_parentheses_inside_strings_do_not_count_as_nesting():
    query = "SELECT '" + "(" * 60 + "' AS s, a FROM raw"
    assert "c" in compile_text(channel(query)).modules


def test_twenty_thousand_or_terms_are_rejected_without_minutes_of_lineage():
    query = "SELECT a FROM raw WHERE " + " OR ".join(f"a={i % 10}" for i in range(20_000))
    message = compile_error(channel(query))
    assert "module 'c': config.query: SQL is too complex to analyse" in message


def test_a_long_but_shallow_or_chain_still_compiles():
    query = "SELECT a FROM raw WHERE " + " OR ".join(f"a = {i}" for i in range(50))
    assert compile_text(channel(query)).modules["c"].column_lineage


def test_referenced_columns_bounds_deep_sql_for_the_gates():
    with pytest.raises(BlueprintError, match="SQL is too complex to analyse"):
        referenced_columns("SELECT " + "(" * 200 + "a" + ")" * 200 + " FROM t")


def test_thirty_thousand_unclosed_macro_calls_take_linear_work():
    text = (
        HEAD + "macros:\n  a: x\nmodules:\n"
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv}}\n"
        '  - {id: c, type: Channel, config: {op: sql, query: "'
        + "{{ macros.a(" * 30_000 + '"}}\n'
    )
    with measure() as work:
        message = compile_error(text)
    assert "the macro call '{{ macros.a(' has no closing ') }}'" in message
    assert message.startswith("bp.yml:8:")
    assert work.template_chars <= 2 * len(text)


def test_macros_that_double_each_other_hit_the_expansion_budget():
    macros = "".join(
        f"  m{i}: \"{{{{ macros.m{i + 1} }}}}{{{{ macros.m{i + 1} }}}}\"\n" for i in range(40)
    )
    text = (
        HEAD + "macros:\n" + macros + "  m40: x\nmodules:\n"
        "  - {id: raw, type: Ingress, config: {format: csv, path: x.csv}}\n"
        "  - {id: c, type: Channel, config: {op: filter, condition: '{{ macros.m0 }}'}}\n"
    )
    assert "the template expansion budget" in compile_error(text)


def test_an_or_chain_under_the_size_limit_is_stopped_by_the_tree_depth_limit():
    query = "SELECT a FROM raw WHERE " + " OR ".join(f"a={i % 10}" for i in range(2_000))
    assert len(query) < 50_000
    message = compile_error(channel(query))
    assert "its expression tree is more than 120 levels deep" in message
    assert "module 'c'" in message
