"""Hostile patches against `aqueduct patch preview`, through the real CLI entry point.

Each row is one attack class: the patch, the exit code (1: a gate rejects, 2: bad input) and
words the verdict must hold. The Blueprints are realistic: Junction, Assert with sql rules,
Probe, Regulator, macros, context, a registered UDF, JDBC Ingress, Delta merge Egress, Depot,
and an Arcade; the data folder holds a symlink that leads out of it. The legitimate patches at
the end must still pass, so the guard does not become "reject everything".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aqueduct_dagster.cli import main

RICH = """\
aqueduct: "1.0"
id: rich
name: Rich
context:
  root: {root}/data
  out: {root}/out
  min_amount: 0
macros:
  flt: "amount > ${{ctx.min_amount}}"
udf_registry:
  - {{id: double_it, lang: python, module: udfs_mod, entry: double_it, return_type: int}}
agent:
  approval: human
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "${{ctx.root}}/in.csv", header: true, options: {{inferSchema: "true"}}}}
  - id: aux
    type: Ingress
    config: {{format: csv, path: "${{ctx.root}}/other.csv", header: true}}
  - id: db
    type: Ingress
    config: {{format: jdbc, options: {{url: "jdbc:postgresql://db:5432/shop", dbtable: public.customers, user: ro}}}}
  - id: clean
    type: Channel
    config:
      op: sql
      query: "SELECT raw.id, raw.amount, raw.status FROM raw JOIN aux ON raw.id = aux.id WHERE {{{{ macros.flt }}}}"
  - id: flt
    type: Channel
    config: {{op: filter, condition: "amount > 0"}}
  - id: sel
    type: Channel
    config: {{op: select, columns: ["id", "amount", "status"]}}
  - id: srt
    type: Channel
    config: {{op: sort, order_by: "id desc"}}
  - id: check
    type: Assert
    config:
      rules:
        - {{type: min_rows, min: 1}}
        - {{type: sql, expr: "MIN(amount) > 0"}}
        - {{type: null_rate, column: status, max: 0.05, on_fail: warn}}
  - id: route
    type: Junction
    config:
      mode: conditional
      branches:
        - {{id: big, condition: "amount >= 15"}}
        - {{id: rest, condition: _else_}}
  - id: watch
    type: Probe
    attach_to: clean
    config:
      signals:
        - {{type: sql, id: positive, sql: "COUNT(*)", passed_when: "COUNT(*) > 0"}}
  - id: gate
    type: Regulator
    config: {{on_block: skip}}
  - id: big_out
    type: Egress
    config: {{format: delta, path: "${{ctx.out}}/big", mode: merge, merge_key: [id]}}
  - id: rest_out
    type: Egress
    config: {{format: parquet, path: "${{ctx.out}}/rest", mode: overwrite}}
  - id: wm
    type: Egress
    config: {{format: depot, key: last_id, value_expr: "MAX(id)"}}
edges:
  - {{from: raw, to: clean}}
  - {{from: aux, to: clean}}
  - {{from: clean, to: flt}}
  - {{from: flt, to: sel}}
  - {{from: sel, to: srt}}
  - {{from: srt, to: check}}
  - {{from: check, to: route}}
  - {{from: watch, to: gate, port: signal}}
  - {{from: route, to: gate, port: big}}
  - {{from: gate, to: big_out}}
  - {{from: route, to: rest_out, port: rest}}
  - {{from: check, to: wm}}
"""

ARCADE_PARENT = """\
aqueduct: "1.0"
id: sales
name: Sales
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{root}/data/in.csv", header: true}}
  - id: cleaning
    type: Arcade
    ref: arcades/cleaning.yml
  - id: out
    type: Egress
    config: {{format: parquet, path: "{root}/out/arc", mode: overwrite}}
edges:
  - {{from: raw, to: cleaning}}
  - {{from: cleaning, to: out}}
"""

ARCADE_CHILD = """\
aqueduct: "1.0"
id: cleaning
name: Cleaning
modules:
  - id: tidy
    type: Channel
    config:
      query: SELECT id, amount FROM __input__ WHERE amount > 0
  - id: qa
    type: Assert
    config:
      rules: [{type: sql, expr: "MIN(amount) > 0"}]
edges:
  - {from: tidy, to: qa}
"""

DEPOT_READER = """\
aqueduct: "1.0"
id: dep
name: Depot reader
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{root}/data/in.csv", header: true}}
  - id: recent
    type: Channel
    config:
      op: sql
      query: "SELECT id, amount FROM raw WHERE id > '@aq.depot.get('last_id', '0')'"
  - id: other
    type: Channel
    config: {{op: sql, query: "SELECT id FROM raw"}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{root}/out/dep", mode: overwrite}}
  - id: wm
    type: Egress
    config: {{format: depot, key: last_id, value_expr: "MAX(id)"}}
edges:
  - {{from: raw, to: recent}}
  - {{from: raw, to: other}}
  - {{from: recent, to: out}}
  - {{from: recent, to: wm}}
"""

CSV = "id,amount,status\n1,10,a\n2,20,b\n"
ORDERS = "order_id,customer_id,amount,status,order_ts\n1,1,10,ok,2024-01-01\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path
    (root / "data" / "sub").mkdir(parents=True)
    (root / "data" / "demo").mkdir()
    (root / "outside").mkdir()
    (root / "arcades").mkdir()
    for name in ("data/in.csv", "data/other.csv", "data/sub/more.csv", "outside/secret.csv"):
        (root / name).write_text(CSV)
    (root / "data" / "demo" / "orders.csv").write_text(ORDERS)
    (root / "data" / "demo" / "orders_v2.csv").write_text(ORDERS)
    os.symlink(root / "outside", root / "data" / "link")  # a link in the data folder leading out
    (root / "rich.yml").write_text(RICH.format(root=root))
    (root / "arc.yml").write_text(ARCADE_PARENT.format(root=root))
    (root / "dep.yml").write_text(DEPOT_READER.format(root=root))
    # The same Arcade, its `ref` through a context value; a look-alike file outside the project.
    (root / "arc_ctx.yml").write_text(ARCADE_PARENT.format(root=root).replace(
        "ref: arcades/cleaning.yml", 'ref: "${ctx.arc_dir}/cleaning.yml"').replace(
        "modules:", "context: {arc_dir: arcades}\nmodules:", 1))  # fmt: skip
    (root / "outside" / "cleaning.yml").write_text("root:x:0:0:SECRETLINE:/root:/bin/bash\n")
    (root / "outside_ok").mkdir()
    (root / "outside_ok" / "cleaning.yml").write_text(ARCADE_CHILD)
    (root / "arcades" / "cleaning.yml").write_text(ARCADE_CHILD)
    orders = Path(__file__).resolve().parents[2] / "blueprints" / "orders_daily.yml"
    (root / "orders_daily.yml").write_text(orders.read_text())
    monkeypatch.chdir(root)
    monkeypatch.delenv("AQUEDUCT_CONFIG", raising=False)
    monkeypatch.delenv("AQUEDUCT_DATA_DIR", raising=False)  # orders_daily reads ./data
    return root


def key(module: str, name: str, value) -> dict:
    return {"op": "set_module_config_key", "module_id": module, "key": name, "value": value}


def conf(name: str, value) -> dict:
    return {"op": "set_engine_config", "engine": "spark", "key": name, "value": value}


def rules(*items: dict) -> dict:
    return key("check", "rules", list(items))


MIN_ROWS, SQL_RULE = {"type": "min_rows", "min": 1}, {"type": "sql", "expr": "MIN(amount) > 0"}
NULL_RATE = {"type": "null_rate", "column": "status", "max": 0.05, "on_fail": "warn"}
GOOD_QUERY = "SELECT raw.id, raw.amount, raw.status FROM raw JOIN aux ON raw.id = aux.id"

# (id, blueprint, operations, exit code, words in the output). "{root}" is the project folder.
ATTACKS = [
    # --- paths: every spelling that leads out of the data folder
    ("path-percent-encoded-dotdot", "rich.yml", [key("aux", "path", "{root}/data/%2e%2e/outside/secret.csv")], 1, "outside/secret.csv"),
    ("path-file-url-percent", "rich.yml", [key("aux", "path", "file://{root}/data/%2E%2E/outside/secret.csv")], 1, "outside/secret.csv"),
    ("path-glob-through-symlink", "rich.yml", [key("aux", "path", "{root}/data/*/secret.csv")], 1, "outside/secret.csv"),
    ("path-folder-holding-symlink", "rich.yml", [key("aux", "path", "{root}/data")], 1, "/outside'"),
    ("path-symlink", "rich.yml", [key("aux", "path", "{root}/data/link/secret.csv")], 1, "outside/secret.csv"),
    ("path-brace-dotdot", "rich.yml", [key("aux", "path", "{root}/data/{..}/outside/secret.csv")], 1, "outside/secret.csv"),
    ("path-nul-byte", "rich.yml", [key("aux", "path", "{root}/data/x\u0000/../../outside/secret.csv")], 1, "unjudgeable path"),
    ("path-very-long", "rich.yml", [key("aux", "path", "{root}/data/" + "a/" * 3000 + "x.csv")], 1, "unjudgeable path"),
    ("env-default-changed", "orders_daily.yml",
     [{"op": "replace_context_value", "key": "data_dir", "value": "@aq.env('AQUEDUCT_DATA_DIR', '/etc')"}], 1, "@aq.env default"),
    ("arcade-ref-to-foreign-file", "arc_ctx.yml",
     [{"op": "replace_context_value", "key": "arc_dir", "value": "{root}/outside"}], 1, "which the Blueprint does not use"),
    ("arcade-ref-to-compiling-file", "arc_ctx.yml",
     [{"op": "replace_context_value", "key": "arc_dir", "value": "{root}/outside_ok"}], 1, "loads new code (Arcade file"),
    # --- Depot values are pasted into SQL when the run starts: the checker sees a placeholder
    ("depot-default-changed", "dep.yml",
     [key("recent", "query", "SELECT id, amount FROM raw WHERE id > '@aq.depot.get('last_id', '0 OR 1=1')'")], 1, "new depot use"),
    ("depot-read-moved", "dep.yml",
     [key("other", "query", "SELECT id FROM raw WHERE id > '@aq.depot.get('last_id', '0')'")], 1, "new depot use 'other:"),
    # --- outputs: new, removed, or written differently
    ("new-console-egress", "rich.yml",
     [{"op": "insert_module", "module": {"id": "leak", "type": "Egress", "config": {"format": "console"}},
       "edges_to_add": [{"from": "check", "to": "leak"}]}], 1, "adds the output module 'leak' (console)"),
    ("new-noop-egress", "rich.yml",
     [{"op": "insert_module", "module": {"id": "sink", "type": "Egress", "config": {"format": "noop"}},
       "edges_to_add": [{"from": "check", "to": "sink"}]}], 1, "adds the output module 'sink' (noop)"),
    ("remove-egress", "rich.yml", [{"op": "remove_module", "module_id": "rest_out"}], 1, "may not remove or move an output"),
    ("egress-disabled", "rich.yml",
     [{"op": "remove_module", "module_id": "rest_out"},
      {"op": "insert_module", "module": {"id": "rest_out", "type": "Egress", "enabled": False,
                                         "config": {"format": "parquet", "path": "{root}/out/rest", "mode": "overwrite"}},
       "edges_to_add": [{"from": "route", "to": "rest_out", "port": "rest"}]}], 1, "may not remove or move an output"),
    ("egress-mode-append", "rich.yml", [key("rest_out", "mode", "append")], 1, "changes how it writes"),
    ("egress-replace-where", "rich.yml", [key("big_out", "replace_where", "1=1")], 1, "changes how it writes"),
    ("egress-merge-key", "rich.yml", [key("big_out", "merge_key", ["status"])], 1, "changes how it writes"),
    ("egress-overwrite-schema", "rich.yml", [key("big_out", "overwrite_schema", True)], 1, "changes how it writes"),
    ("egress-vacuum", "rich.yml", [key("big_out", "maintenance", {"vacuum": 0})], 1, "changes how it writes"),
    ("egress-overwrite-schema-option", "rich.yml", [key("big_out", "options.overwriteSchema", "true")], 1, "changes how it writes"),
    ("egress-dynamic-overwrite-option", "rich.yml", [key("rest_out", "options.partitionOverwriteMode", "dynamic")], 1, "changes how it writes"),
    ("egress-format", "rich.yml", [key("rest_out", "format", "csv")], 1, "adds the output module 'rest_out' (csv)"),
    # --- non-file sources: every option but tuning knobs names what is read
    ("jdbc-session-init", "rich.yml", [key("db", "options.sessionInitStatement", "DROP TABLE x")], 1, "sessioninitstatement"),
    ("jdbc-driver-class", "rich.yml", [key("db", "options.driver", "com.evil.Driver")], 1, "com.evil.Driver"),
    ("jdbc-user", "rich.yml", [key("db", "options.user", "admin")], 1, "reads a new jdbc"),
    # --- quality checks: removed, loosened, bypassed
    ("remove-assert", "rich.yml",
     [{"op": "remove_module", "module_id": "check", "edges_to_add": [{"from": "srt", "to": "route"}, {"from": "srt", "to": "wm"}]}],
     1, "may not remove a quality check"),
    ("assert-disabled", "rich.yml",
     [{"op": "remove_module", "module_id": "check"},
      {"op": "insert_module", "module": {"id": "check", "type": "Assert", "enabled": False,
                                         "config": {"rules": [MIN_ROWS, SQL_RULE, NULL_RATE]}},
       "edges_to_add": [{"from": "srt", "to": "check"}, {"from": "check", "to": "route"}, {"from": "check", "to": "wm"}]}],
     1, "a patch may not remove"),
    ("remove-assert-rules", "rich.yml", [rules(MIN_ROWS)], 1, "removes 2 of its rules"),
    ("assert-on-fail-weakened", "rich.yml", [rules(MIN_ROWS, {**SQL_RULE, "on_fail": "warn"}, NULL_RATE)], 1, "from abort to warn"),
    ("assert-tautology", "rich.yml", [rules(MIN_ROWS, {"type": "sql", "expr": "TRUE"}, NULL_RATE)], 1, "checks nothing"),
    ("assert-tautology-with-column", "rich.yml", [rules(MIN_ROWS, {"type": "sql", "expr": "MIN(amount) > 0 OR TRUE"}, NULL_RATE)], 1, "checks nothing"),
    ("assert-threshold-loosened", "rich.yml", [rules({"type": "min_rows", "min": 0}, SQL_RULE, NULL_RATE)], 1, "loosens from 1 to 0"),
    ("assert-null-rate-loosened", "rich.yml", [rules(MIN_ROWS, SQL_RULE, {**NULL_RATE, "max": 1.0})], 1, "loosens from 0.05 to 1.0"),
    ("edge-around-assert", "rich.yml",
     [{"op": "replace_edge", "from_id": "check", "to_id": "route", "new_from_id": "srt"}], 1, "without passing the Assert 'check'"),
    ("assert-failing-rows-routed-on", "rich.yml",
     [{"op": "replace_edge", "from_id": "check", "to_id": "route", "new_port": "spillway"}], 1, "without passing the Assert 'check'"),
    ("arcade-assert-removed", "arc.yml", [{"op": "remove_module", "module_id": "cleaning__qa"}], 1, "may not remove a quality check"),
    # --- on_failure, retry, counts
    ("on-failure-unknown-key", "rich.yml",
     [{"op": "set_module_on_failure", "module_id": "clean", "on_failure": {"notify": {"target": "http://evil/x"}}}],
     1, "not retry settings"),
    ("retry-absurd", "rich.yml", [{"op": "replace_retry_policy", "retry_policy": {"max_attempts": 1000000}}], 1, "outside 1..10"),
    ("retry-negative", "rich.yml", [{"op": "replace_retry_policy", "retry_policy": {"max_attempts": -5}}], 1, "outside 1..10"),
    ("retry-backoff-huge", "rich.yml",
     [{"op": "replace_retry_policy", "retry_policy": {"max_attempts": 3, "backoff": {"max_seconds": 999999999}}}], 1, "max_seconds"),
    ("repartition-huge", "rich.yml",
     [{"op": "replace_module_config", "module_id": "srt", "config": {"op": "repartition", "num_partitions": 10**9}}],
     1, "num_partitions = 1000000000 is outside"),
    ("regulator-wait-forever", "rich.yml", [key("gate", "timeout_seconds", 1e12)], 1, "timeout_seconds"),
    # --- engine conf values
    ("conf-fraction-of-partitions", "rich.yml", [conf("spark.sql.shuffle.partitions", "2.5")], 1, "whole number"),
    ("conf-size-suffix-count", "rich.yml", [conf("spark.sql.shuffle.partitions", "2k")], 1, "whole number"),
    ("conf-overflow", "rich.yml", [conf("spark.driver.memory", 10**400)], 1, "spark.driver.memory"),
    # --- SQL that asks for unbounded work
    ("sql-range-huge", "rich.yml", [key("clean", "query", GOOD_QUERY + " JOIN range(100000000000) r ON raw.id = r.id")], 1, "range()"),
    ("sql-sequence-huge", "rich.yml", [key("sel", "columns", ["id", "sequence(1, 1000000000) AS s"])], 1, "at most 100,000"),
    ("sql-repeat-computed", "rich.yml", [key("flt", "condition", "length(repeat(status, 100000 * 100000)) > 0")], 1, "computed size"),
    ("sql-select-mapping-keys", "rich.yml",
     [{"op": "replace_module_config", "module_id": "sel",
       "config": {"op": "select", "columns": {"reflect('java.lang.System', 'getenv', 'HOME') AS h": "x"}}}],
     1, "config.columns[0]: function reflect()"),
    ("sql-dialect-alias-function", "rich.yml",
     [key("clean", "query", "SELECT raw.id, array_sum(array(raw.amount)) AS s FROM raw JOIN aux ON raw.id = aux.id")],
     1, "array_sum() is not a Spark built-in"),
    ("sql-keyword-named-function", "rich.yml", [key("flt", "condition", "format(status) IS NOT NULL")], 1, "format() is not a Spark built-in"),
    ("sql-backticked-function", "rich.yml", [key("flt", "condition", "`iif`(amount > 0, true, false)")], 1, "iif() is not a Spark built-in"),
    # --- aqueduct-core operations that are valid there and never applied here: a gate rejects
    ("peer-add-arcade-ref", "rich.yml", [{"op": "add_arcade_ref", "module": {"id": "a", "type": "Arcade", "ref": "/etc/passwd"}}],
     1, "may not add Arcade references"),
    ("peer-declare-dependency", "rich.yml", [{"op": "declare_dependency", "requirement": "evil>=1"}], 1, "runtime dependencies"),
    ("peer-op-malformed", "rich.yml", [{"op": "add_arcade_ref", "ref": "/etc/passwd"}], 2, "needs `module`"),
    # --- patch files that are not a PatchSpec: bad input
    ("dotted-key-empty-part", "rich.yml", [key("clean", "..query", "x")], 2, "empty part"),
    ("dotted-key-blank", "rich.yml", [key("aux", "path ", "/etc/passwd")], 2, "blanks"),
]

RAW_FILES = [
    ("duplicate-key-in-op", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_module_config_key","module_id":"clean",'
     '"key":"query","value":"{q}","value":"SELECT reflect(1) FROM raw"}}]}}', "appears twice"),
    ("duplicate-operations", '{{"patch_id":"x","rationale":"r","operations":[],"operations":[{{"op":"set_module_config_key",'
     '"module_id":"clean","key":"query","value":"{q}"}}]}}', "appears twice"),
    ("nan-conf", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_engine_config","key":"spark.sql.shuffle.partitions",'
     '"value":NaN}}]}}', "NaN"),
    ("infinity-conf", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_engine_config","key":"spark.driver.memory",'
     '"value":-Infinity}}]}}', "Infinity"),
    ("giant-integer", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_engine_config","key":"spark.sql.shuffle.partitions",'
     '"value":' + "9" * 5000 + "}}]}}", "digits"),
    ("escaped-lone-surrogate", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_module_config_key","module_id":"clean",'
     '"key":"query","value":"SELECT \\ud800 FROM raw"}}]}}', "lone surrogate"),
    ("nested-too-deep", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"set_module_config_key","module_id":"aux",'
     '"key":"options.x","value":' + "[" * 900 + "]" * 900 + "}}]}}", "nested more than"),
    ("patch-id-path-traversal", '{{"patch_id":"../../../tmp/owned","rationale":"r","operations":[{{"op":"set_module_config_key",'
     '"module_id":"clean","key":"query","value":"{q}"}}]}}', "it names the patch's file"),
    ("huge-file", '{{"patch_id":"x","rationale":"r","operations":[{{"op":"replace_module_label","module_id":"clean","label":"'
     + "a" * 2_000_000 + '"}}]}}', "a PatchSpec is a small edit"),
]

LEGITIMATE = [
    ("renamed-column", "rich.yml", [key("clean", "query", "SELECT raw.id, raw.amount AS amt, raw.status FROM raw JOIN aux ON raw.id = aux.id")]),
    ("try-cast", "rich.yml", [key("clean", "query", "SELECT raw.id, try_cast(raw.amount AS INT) AS amount, raw.status "
                                                     "FROM raw JOIN aux ON raw.id = aux.id")]),  # fmt: skip
    ("sibling-path", "rich.yml", [key("aux", "path", "{root}/data/sub/more.csv")]),
    ("sibling-path-orders", "orders_daily.yml", [key("raw_orders", "path", "${ctx.data_dir}/demo/orders_v2.csv")]),
    ("conf-within-ceilings", "rich.yml", [conf("spark.sql.shuffle.partitions", "400"), conf("spark.driver.memory", "4g"),
                                          conf("spark.driver.maxResultSize", "512m")]),  # fmt: skip
    ("assert-expr-fixed", "rich.yml", [rules(MIN_ROWS, {"type": "sql", "expr": "MIN(amt) > 0"}, NULL_RATE)]),
    ("assert-rule-added", "rich.yml", [rules(MIN_ROWS, SQL_RULE, NULL_RATE, {"type": "not_null", "column": "id"})]),
    ("assert-tightened", "rich.yml", [rules({"type": "min_rows", "min": 5}, SQL_RULE, {**NULL_RATE, "max": 0.01})]),
    ("retry-sane", "rich.yml", [{"op": "replace_retry_policy", "retry_policy": {"max_attempts": 3, "backoff": {"base_seconds": 30}}}]),
    ("on-failure-retry", "rich.yml", [{"op": "set_module_on_failure", "module_id": "clean", "on_failure": {"max_attempts": 2}}]),
    ("small-repartition", "rich.yml", [{"op": "replace_module_config", "module_id": "srt", "config": {"op": "repartition", "num_partitions": 8}}]),
    ("small-generators", "rich.yml", [key("sel", "columns", ["id", "sequence(1, 10) AS s", "lpad(status, 8, '0') AS p"])]),
    ("mergeschema-option", "rich.yml", [key("big_out", "options.mergeSchema", True)]),
    ("compression-option", "rich.yml", [key("rest_out", "options.compression", "zstd")]),
    ("depot-reader-query-fix", "dep.yml",
     [key("recent", "query", "SELECT id, try_cast(amount AS INT) AS amount FROM raw WHERE id > '@aq.depot.get('last_id', '0')'")]),
    ("arcade-module-fix", "arc.yml", [key("cleaning__tidy", "query", "SELECT id, try_cast(amount AS INT) AS amount FROM __input__ WHERE amount > 0")]),
]


def _filled(value, root: Path):
    if isinstance(value, str):
        return value.replace("{root}", str(root))
    if isinstance(value, dict):
        return {k: _filled(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, root) for v in value]
    return value


def preview(project: Path, blueprint: str, operations: list | None = None, *, raw: str | None = None):
    body = raw if raw is not None else json.dumps(
        {"patch_id": "attack", "rationale": "test", "confidence": 0.9, "operations": _filled(operations, project)})  # fmt: skip
    (project / "patch.json").write_text(body, encoding="utf-8")
    return CliRunner().invoke(main, ["patch", "preview", str(project / "patch.json"), "--blueprint", str(project / blueprint)])


@pytest.mark.parametrize(("blueprint", "operations", "code", "words"),
                         [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])  # fmt: skip
def test_hostile_patch_is_refused(project, blueprint, operations, code, words):
    result = preview(project, blueprint, operations)
    assert result.exit_code == code, result.output
    assert words in result.output, result.output
    if code == 1:
        assert "REJECT  " in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.mark.parametrize(("text", "words"), [r[1:] for r in RAW_FILES], ids=[r[0] for r in RAW_FILES])
def test_malformed_patch_file_is_bad_input(project, text, words):
    result = preview(project, "rich.yml", raw=text.format(q=GOOD_QUERY))
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output


@pytest.mark.parametrize(("blueprint", "operations"), [a[1:] for a in LEGITIMATE], ids=[a[0] for a in LEGITIMATE])
def test_legitimate_patch_passes(project, blueprint, operations):
    result = preview(project, blueprint, operations)
    assert result.exit_code == 0, result.output
    assert "REJECT" not in result.output


def test_a_foreign_file_the_compiler_read_is_not_quoted(project):
    operations = [{"op": "replace_context_value", "key": "arc_dir", "value": "{root}/outside"}]
    result = preview(project, "arc_ctx.yml", operations)
    assert result.exit_code == 1 and "SECRETLINE" not in result.output and "root:x" not in result.output


def test_a_verdict_quoting_a_credential_is_redacted(project):
    # The rejection lists what the Blueprint reads, a JDBC source with a password among it.
    blueprint = (project / "rich.yml").read_text().replace("user: ro}", 'user: ro, password: "hunter2hunter2"}')
    (project / "rich_pw.yml").write_text(blueprint)
    result = preview(project, "rich_pw.yml", [key("db", "options.url", "jdbc:postgresql://admin:topsecretpw@evil/x")])
    assert result.exit_code == 1 and "reads a new jdbc" in result.output
    assert "hunter2hunter2" not in result.output and "topsecretpw" not in result.output


def test_nothing_is_written_by_a_preview(project):
    before = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.name != "patch.json")
    for _, blueprint, operations, _, _ in ATTACKS[:12]:
        preview(project, blueprint, operations)
    after = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.name != "patch.json")
    assert after == before and not (project / "out").exists()


@pytest.mark.spark
def test_with_sandbox_a_hostile_patch_never_reaches_spark(spark, project):
    # A patch that would pass the gates up to the sandbox only to run a huge generator there
    # is refused by the effect gate: the sandbox is never started for it.
    operations = [key("clean_orders", "query", "SELECT order_id, customer_id, amount, status, "
                                               "CAST(order_ts AS TIMESTAMP) AS order_ts FROM raw_orders "
                                               "JOIN range(100000000000) r ON raw_orders.order_id = r.id")]  # fmt: skip
    body = {"patch_id": "attack", "rationale": "test", "confidence": 0.9, "operations": operations}
    (project / "patch.json").write_text(json.dumps(body))
    result = CliRunner().invoke(main, ["patch", "preview", str(project / "patch.json"), "--blueprint",
                                       str(project / "orders_daily.yml"), "--sandbox"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "REJECT  effect:" in result.output and "range()" in result.output
    assert "not run  lineage, sandbox" in result.output


@pytest.mark.spark
def test_with_sandbox_a_legitimate_patch_passes(spark, project, monkeypatch):
    # Absolute: a classic driver resolves relative paths against the folder its JVM started in.
    monkeypatch.setenv("AQUEDUCT_DATA_DIR", str(project / "data"))
    operations = [key("clean_orders", "query", "SELECT order_id, customer_id, amount, status, "
                                               "try_cast(order_ts AS TIMESTAMP) AS order_ts FROM raw_orders "
                                               "WHERE {{ macros.valid_order }}")]  # fmt: skip
    body = {"patch_id": "legit", "rationale": "test", "confidence": 0.9, "operations": operations}
    (project / "patch.json").write_text(json.dumps(body))
    result = CliRunner().invoke(main, ["patch", "preview", str(project / "patch.json"), "--blueprint",
                                       str(project / "orders_daily.yml"), "--sandbox"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PASS    sandbox" in result.output
    assert not (project / "data" / "demo" / "orders_clean").exists()  # the real output is untouched
