"""Happy paths: a small Blueprint compiles into the Manifest later layers rely on."""

from __future__ import annotations

from aqueduct_dagster.blueprint import ColumnSource, ModuleInput, compile_text

ORDERS = """
aqueduct: "1.0"
id: shop.orders
name: Orders
context:
  region: EU
  flag: true
  out_dir: /data/out
  min_amount: 10
context_profiles:
  prod:
    region: US
    out_dir: /prod/out
macros:
  positive: "amount > ${ctx.min_amount}"
  trunc: "DATE_TRUNC('{{ period }}', {{ col }})"
modules:
  - id: raw_orders
    type: Ingress
    config:
      format: csv
      path: /data/in/orders.csv
      schema_hint: {order_id: long, amount: double, region: string, order_ts: timestamp_ntz}
  - id: clean_orders
    type: Channel
    enabled: ${ctx.flag}
    config:
      op: sql
      query: |
        SELECT order_id, amount, {{ macros.trunc(period='day', col=order_ts) }} AS order_day
        FROM raw_orders
        WHERE {{ macros.positive }} AND region = '${ctx.region}'
  - id: check_orders
    type: Assert
    config:
      rules:
        - type: min_rows
          min: 1
  - id: write_orders
    type: Egress
    config:
      format: delta
      path: ${ctx.out_dir}/orders
      mode: overwrite
"""


def test_modules_are_chained_in_topological_order_with_inputs(compile_yaml):
    manifest = compile_yaml(ORDERS)

    assert list(manifest.modules) == ["raw_orders", "clean_orders", "check_orders", "write_orders"]
    assert manifest.module("raw_orders").inputs == ()
    assert manifest.module("clean_orders").inputs == (
        ModuleInput(source="raw_orders", port="main", alias="raw_orders"),
    )
    assert manifest.module("write_orders").inputs[0].source == "check_orders"
    assert [(e.from_, e.to) for e in manifest.edges] == [
        ("raw_orders", "clean_orders"),
        ("clean_orders", "check_orders"),
        ("check_orders", "write_orders"),
    ]
    assert manifest.consumers("raw_orders")[0].id == "clean_orders"


def test_macros_and_context_are_expanded(compile_yaml):
    sql = compile_yaml(ORDERS).module("clean_orders").sql

    assert "DATE_TRUNC('day', order_ts) AS order_day" in sql
    assert "WHERE amount > 10 AND region = 'EU'" in sql
    assert "{{" not in sql and "${" not in sql


def test_override_beats_profile_beats_context(compile_yaml):
    plain = compile_yaml(ORDERS)
    prod = compile_yaml(ORDERS, profile="prod")
    overridden = compile_yaml(ORDERS, profile="prod", context_overrides={"region": "APAC"})

    assert "region = 'EU'" in plain.module("clean_orders").sql
    assert "region = 'US'" in prod.module("clean_orders").sql
    assert "region = 'APAC'" in overridden.module("clean_orders").sql
    # the profile still supplies what the override does not touch
    assert overridden.module("write_orders").config.path == "/prod/out/orders"
    assert overridden.context["region"] == "APAC"
    assert overridden.provenance["context.region"].source == "context_override"
    assert prod.provenance["context.out_dir"].source == "profile"


def test_whole_value_context_reference_keeps_its_type(compile_yaml):
    manifest = compile_yaml(ORDERS)
    assert manifest.module("clean_orders").spec.enabled is True
    assert manifest.context["flag"] is True
    assert manifest.context["min_amount"] == 10


def test_provenance_of_macro_built_query_and_context_built_path(compile_yaml, write_blueprint):
    manifest = compile_yaml(ORDERS)
    source_path = str(write_blueprint(ORDERS))

    query = manifest.provenance["modules.clean_orders.config.query"]
    assert query.source == "macro"
    assert "macros.trunc" in query.detail and "macros.positive" in query.detail
    assert "context ctx.region" in query.detail
    assert (query.location.file, query.location.line) == (source_path, 28)

    path = manifest.provenance["modules.write_orders.config.path"]
    assert path.source == "context"
    assert path.detail == "ctx.out_dir"
    assert (path.location.line, path.location.column) == (42, 13)

    literal = manifest.provenance["modules.write_orders.config.format"]
    assert literal.source == "literal" and literal.detail is None


def test_fingerprints_are_stable_and_follow_config(compile_yaml):
    first, second = compile_yaml(ORDERS), compile_yaml(ORDERS)
    changed = compile_yaml(ORDERS.replace("mode: overwrite", "mode: append"))

    assert first.fingerprint == second.fingerprint
    assert first.module("write_orders").fingerprint == second.module("write_orders").fingerprint
    assert changed.fingerprint != first.fingerprint
    assert changed.module("write_orders").fingerprint != first.module("write_orders").fingerprint
    assert changed.module("raw_orders").fingerprint == first.module("raw_orders").fingerprint


def test_channel_sql_gets_column_lineage_from_schema_hint(compile_yaml):
    lineage = compile_yaml(ORDERS).module("clean_orders").column_lineage
    assert lineage["order_day"] == (ColumnSource(module="raw_orders", column="order_ts"),)
    assert lineage["amount"] == (ColumnSource(module="raw_orders", column="amount"),)


def test_manifest_round_trips_through_json(compile_yaml):
    manifest = compile_yaml(ORDERS)
    restored = type(manifest).model_validate_json(manifest.model_dump_json())
    assert restored == manifest


def test_compile_text_names_the_source_in_locations():
    manifest = compile_text(ORDERS.lstrip("\n"), source_path="inline.yml", env={})
    assert manifest.source_path == "inline.yml"
    assert manifest.provenance["modules.raw_orders.config.path"].location.file == "inline.yml"


BRANCHES = """
aqueduct: "1.0"
id: routing
name: Routing
modules:
  - id: tickets
    type: Ingress
    config: {format: csv, path: /in/t.csv, schema_hint: {id: long, status: string}}
  - id: route
    type: Junction
    config:
      mode: conditional
      branches:
        - {id: open, condition: "status = 'OPEN'"}
        - {id: other, condition: _else_}
  - id: merged
    type: Funnel
    config:
      mode: union_all
      inputs: [route.other, route.open]
  - id: compare
    type: Channel
    config:
      op: sql
      query: SELECT o.id FROM open_rows o JOIN route_other x ON o.id = x.id
  - id: watch
    type: Probe
    attach_to: tickets
    config:
      signals: [{type: row_count_estimate}]
  - id: gate
    type: Regulator
  - id: save
    type: Egress
    depends_on: [compare]
    config: {format: parquet, path: /out/x}
edges:
  - {from: tickets, to: route}
  - {from: route, to: merged, port: open}
  - {from: route, to: compare, port: open, as: open_rows}
  - {from: route, to: compare, port: other}
  - {from: merged, to: gate}
  - {from: watch, to: gate, port: signal}
  - {from: gate, to: save}
"""


def test_ports_aliases_funnel_order_probe_and_depends_on(compile_yaml):
    manifest = compile_yaml(BRANCHES)

    merged = manifest.module("merged").inputs
    assert [(i.source, i.port) for i in merged] == [("route", "other"), ("route", "open")]
    assert [i.alias for i in manifest.module("compare").inputs] == ["open_rows", "route_other"]
    assert manifest.module("watch").inputs == (
        ModuleInput(source="tickets", port="main", alias="tickets"),
    )
    assert ("watch", "signal", "watch_signal") in [
        (i.source, i.port, i.alias) for i in manifest.module("gate").inputs
    ]
    assert manifest.module("save").after == ("compare",)
    order = list(manifest.modules)
    assert order.index("compare") < order.index("save")
    assert order.index("watch") < order.index("gate")
    assert manifest.module("compare").column_lineage["id"] == (
        ColumnSource(module="route", column="id"),
    )


def test_disabled_module_is_dropped_with_its_downstream(compile_yaml):
    manifest = compile_yaml(
        BRANCHES.replace("  - id: merged\n", "  - id: merged\n    enabled: false\n"),
    )
    assert "merged" not in manifest.modules
    assert "gate" not in manifest.modules and "save" not in manifest.modules
    assert "compare" in manifest.modules and "watch" in manifest.modules
    assert any("'merged' is disabled" in w and "gate, save" in w for w in manifest.warnings)
    assert all("merged" not in (e.from_, e.to) for e in manifest.edges)


def test_enabled_from_context_text_and_env_default(compile_yaml):
    text = BRANCHES.replace(
        "name: Routing\n", "name: Routing\ncontext:\n  premium: \"${AQ_PREMIUM:-false}\"\n"
    ).replace("  - id: compare\n", "  - id: compare\n    enabled: ${ctx.premium}\n")

    assert "compare" not in compile_yaml(text, env={}).modules
    assert "compare" in compile_yaml(text, env={"AQ_PREMIUM": "true"}).modules
    assert compile_yaml(text, env={}).provenance["context.premium"].source == "default"


def test_compile_time_functions_are_evaluated(compile_yaml, write_blueprint):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: fn.demo
        name: Functions
        modules:
          - id: src
            type: Ingress
            config:
              format: csv
              path: "@aq.env('WAREHOUSE')/in/@aq.blueprint.id().csv"
              options:
                home: "${HOME}"
                fallback: "@aq.env('NOPE', 'dflt')"
                where: "@aq.blueprint.dir()"
                version: "@aq.version()"
                deploy: "@aq.deployment.env()-@aq.deployment.target()"
        """,
        deployment={"env": "prod", "target": "k8s"},
    )
    config = manifest.module("src").config
    assert config.path == "/warehouse/in/fn.demo.csv"
    assert config.options == {
        "home": "/home/tester",
        "fallback": "dflt",
        "where": str(write_blueprint("").parent.resolve()),
        "version": "0.1.0",
        "deploy": "prod-k8s",
    }
    assert manifest.provenance["modules.src.config.path"].source == "env"
    assert manifest.provenance["modules.src.config.options.fallback"].source == "default"
    assert manifest.provenance["modules.src.config.options.version"].source == "function"


def test_runtime_tokens_stay_verbatim_in_the_manifest(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: rt
        name: Runtime
        modules:
          - id: src
            type: Ingress
            config: {format: csv, path: "/in/@aq.date.today()/x.csv"}
          - id: inc
            type: Channel
            materialize: incremental
            watermark_column: ts
            config:
              op: sql
              query: >
                SELECT * FROM src
                WHERE ts > CAST(${ctx._watermark} AS TIMESTAMP)
                AND d > '@aq.depot.get('watermark', '2025-06-01')'
        """
    )
    assert manifest.module("src").config.path == "/in/@aq.date.today()/x.csv"
    assert "${ctx._watermark}" in manifest.module("inc").sql
    assert "@aq.depot.get('watermark', '2025-06-01')" in manifest.module("inc").sql
    assert manifest.provenance["modules.src.config.path"].source == "runtime"


def test_single_input_channel_may_read_dunder_input(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: x
        name: X
        modules:
          - id: src
            type: Ingress
            config: {format: csv, path: /in, schema_hint: {a: int, b: int}}
          - id: pick
            type: Channel
            config: {op: sql, query: "SELECT a + b AS total FROM __input__"}
        """
    )
    lineage = manifest.module("pick").column_lineage["total"]
    assert {s.column for s in lineage} == {"a", "b"}
    assert {s.module for s in lineage} == {"src"}


def test_nested_context_env_defaults_and_dotted_overrides(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: nested
        name: Nested
        context:
          db: {host: localhost, port: 5432}
          root: "${DATA_ROOT:-/data}"
          bucket: "${BUCKET:s3://default}"
          url: "jdbc:postgresql://${ctx.db.host}:${ctx.db.port}/shop"
        modules:
          - id: src
            type: Ingress
            config: {format: jdbc, path: "${ctx.root}/x", options: {url: "${ctx.url}"}}
        """,
        context_overrides={"db.host": "db.prod"},
        env={},
    )
    config = manifest.module("src").config
    assert config.options["url"] == "jdbc:postgresql://db.prod:5432/shop"
    assert config.path == "/data/x"
    assert manifest.context["bucket"] == "s3://default"
    assert manifest.context["db"] == {"host": "db.prod", "port": 5432}
    assert manifest.provenance["context.db.host"].source == "context_override"


def test_webhook_template_variables_are_left_for_the_hook_runner(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: hooks
        name: Hooks
        hooks:
          on_failure:
            - command: "notify.sh ${run.id} ${blueprint.id}"
        modules:
          - id: src
            type: Ingress
            on_failure_webhook:
              url: "${WAREHOUSE}/hook"
              payload: {text: "Module ${module_id} failed: ${error_message}"}
        """
    )
    hook = manifest.module("src").spec.on_failure_webhook
    assert hook["url"] == "/warehouse/hook"
    assert hook["payload"]["text"] == "Module ${module_id} failed: ${error_message}"
    assert manifest.hooks.on_failure[0].command == "notify.sh ${run.id} ${blueprint.id}"


def test_prose_is_not_templated(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: prose
        name: Prose
        description: "Accepts `${ctx.*}` and `${ENV}` expressions."
        modules:
          - {id: src, type: Ingress, description: "uses {{ macros.x }}"}
        """
    )
    assert manifest.description == "Accepts `${ctx.*}` and `${ENV}` expressions."
    assert manifest.module("src").spec.description == "uses {{ macros.x }}"


def test_funnel_inputs_add_missing_edges_and_probe_edges_are_not_doubled(compile_yaml):
    manifest = compile_yaml(
        """
        aqueduct: "1.0"
        id: f
        name: F
        modules:
          - {id: a, type: Ingress}
          - {id: b, type: Ingress}
          - {id: merged, type: Funnel, config: {mode: union_all, inputs: [b, a]}}
          - {id: tap, type: Probe, attach_to: a}
        edges:
          - {from: a, to: tap}
        """
    )
    assert [i.source for i in manifest.module("merged").inputs] == ["b", "a"]
    assert len(manifest.module("tap").inputs) == 1
    assert {(e.from_, e.to) for e in manifest.edges} == {
        ("a", "tap"), ("b", "merged"), ("a", "merged"),
    }  # fmt: skip
