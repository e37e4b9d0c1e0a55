"""Blame's matching (pure, no Spark) and the CAST/divide rules that act on its verdict."""

from __future__ import annotations

import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.engine.errors import SparkErrorInfo
from aqueduct_dagster.healing import blame
from aqueduct_dagster.healing.failure import FailurePackage
from aqueduct_dagster.healing.rules import diagnose_with_rules

BLUEPRINT = """
aqueduct: "1.0"
id: picks_bp
name: Picks
modules:
  - id: picks
    type: Ingress
    config: {format: csv, path: /data/picks.csv, header: true}
  - id: typed_picks
    type: Channel
    config:
      op: sql
      query: |
        SELECT pick_id, site,
               CAST(qty AS INT) AS qty
        FROM picks
  - id: units_per_site
    type: Channel
    config:
      op: sql
      query: SELECT site, COUNT(pick_id) AS picks, SUM(qty) AS units, SUM(qty) / COUNT(pick_id) AS per_pick FROM typed_picks GROUP BY site
  - id: units_quality
    type: Assert
    config:
      rules:
        - {type: sql, expr: "MIN(units) > 0"}
  - id: units_out
    type: Egress
    config: {format: parquet, path: /out/units, mode: overwrite}
edges:
  - {from: picks, to: typed_picks}
  - {from: typed_picks, to: units_per_site}
  - {from: units_per_site, to: units_quality}
  - {from: units_quality, to: units_out}
"""


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "picks_bp.yml"
    path.write_text(BLUEPRINT)
    return compile_blueprint(path)


def cast_error(fragment="CAST(qty AS INT)", line="SELECT pick_id, site,", target='"INT"', context_type="SQL"):
    context = {"contextType": context_type, "fragment": fragment}
    if line is not None:
        context["summary"] = f"== SQL (line 2, position 8) ==\n{line}\n       ^^^^^^^^^^^^^^^^\n"
    return {
        "condition": "CAST_INVALID_INPUT", "sqlstate": "22018",
        "message_parameters": {"expression": "'<literal>'", "sourceType": '"STRING"', "targetType": target},
        "message": f"[CAST_INVALID_INPUT] The value '<literal>' of the type \"STRING\" cannot be cast to {target}",
        "query_context": [context],
    }  # fmt: skip


def test_upstream_is_ordered_nearest_first(manifest):
    assert blame.upstream_nearest_first(manifest, "units_out") == ["units_quality", "units_per_site", "typed_picks", "picks"]


def test_the_fragment_names_the_channel_where_the_assert_surfaced_it(manifest):
    found = blame.blame(manifest, "units_quality", cast_error(line="               CAST(qty AS INT) AS qty"))
    assert (found.module_id, found.surfaced_in, found.method) == ("typed_picks", "units_quality", "query_context")
    assert found.moved and found.fragment == "CAST(qty AS INT)"


def test_spacing_quoting_and_case_do_not_hide_the_expression(manifest):
    found = blame.blame_by_text(manifest, "units_out", cast_error(fragment="cast( `qty`  as int )", line=None))
    assert found is not None and found.module_id == "typed_picks"


def test_a_division_blamed_from_the_egress(manifest):
    error = {"condition": "DIVIDE_BY_ZERO", "sqlstate": "22012", "message": "[DIVIDE_BY_ZERO] Division by zero.",
             "query_context": [{"contextType": "SQL", "fragment": "SUM(qty) / COUNT(pick_id)"}]}  # fmt: skip
    assert blame.blame(manifest, "units_out", error).module_id == "units_per_site"


def test_the_expression_the_message_quotes_decides_without_a_query_context(manifest):
    error = {"condition": "CAST_INVALID_INPUT", "sqlstate": "22018",
             "message": "cannot evaluate `CAST(qty AS INT)`: malformed; use `try_cast`"}  # fmt: skip
    found = blame.blame(manifest, "units_quality", error)
    assert found.module_id == "typed_picks" and found.method == "query_context"


def test_an_expression_written_in_two_modules_is_not_decided_by_text(manifest, tmp_path):
    path = tmp_path / "twice.yml"
    path.write_text(BLUEPRINT.replace("SUM(qty) AS units,", "SUM(CAST(qty AS INT)) AS units,"))
    twice = compile_blueprint(path)
    assert blame.blame_by_text(twice, "units_quality", cast_error(line=None)) is None
    # ...but the SQL line Spark quotes tells them apart.
    found = blame.blame_by_text(twice, "units_quality", cast_error(line="CAST(qty AS INT) AS qty"))
    assert found is not None and found.module_id == "typed_picks"


def test_nothing_matches_and_no_spark_keeps_the_surfacing_module(manifest):
    found = blame.blame(manifest, "units_out", cast_error(fragment="CAST(weight AS DOUBLE)", line=None))
    assert (found.module_id, found.method) == ("units_out", "undecided")


def test_a_dataframe_context_names_a_function_not_code(manifest):
    found = blame.blame(manifest, "units_out", cast_error(fragment="cast", line=None, context_type="DataFrame"))
    assert found.module_id == "units_out"


def test_analysis_errors_stay_where_they_were_raised(manifest):
    error = {"condition": "UNRESOLVED_COLUMN.WITH_SUGGESTION", "sqlstate": "42703",
             "query_context": [{"contextType": "SQL", "fragment": "qty"}]}  # fmt: skip
    found = blame.blame(manifest, "units_quality", error)
    assert (found.module_id, found.method) == ("units_quality", "surfaced")


@pytest.mark.parametrize(
    "fragment, expected",
    [
        ("CAST(qty AS INT)", ("cast", "qty", "try_cast(qty AS INT)")),
        ("CAST(amount AS DECIMAL(12, 2))", ("cast", "amount", "try_cast(amount AS DECIMAL(12, 2))")),
        ("spend / clicks", ("divide", "IF((spend) IS NOT NULL AND (clicks) IS NOT NULL, 1, NULL)", "try_divide(spend, clicks)")),
        ("upper(name)", None),
    ],
)
def test_safe_forms_of_the_failing_expression(fragment, expected):
    assert blame.safe_expressions(fragment) == expected


def test_without_a_fragment_nothing_is_measured_and_no_spark_is_needed(manifest):
    found = blame.Blame("typed_picks", "units_out", "sample_replay", "", fragment=None)
    measured = blame.measure_safe_rewrite(None, manifest, found, sample_rows=10)
    assert measured.evidence == {"measured": False, "why": "Spark quoted no failing expression"}
    # ...and the rule then refuses: the effect of a try_cast it cannot locate is unknown.
    error = cast_error(fragment="cast", line=None, context_type="DataFrame")
    query = "SELECT CAST(qty AS INT) AS qty FROM picks"
    refused = diagnose_with_rules(package(error, query=query, surfaced="typed_picks", evidence=measured.evidence))
    assert refused.patch is None and "could not be measured" in refused.reason


def test_nulls_whole_column_reads_the_measure():
    assert blame.nulls_whole_column({"measured": True, "rows": 28, "had_values": 28, "kept_values": 0})
    assert not blame.nulls_whole_column({"measured": True, "rows": 40, "had_values": 40, "kept_values": 37})
    assert not blame.nulls_whole_column({"measured": True, "rows": 0, "had_values": 0, "kept_values": 0})
    assert not blame.nulls_whole_column(None)


# --------------------------------------------------------------------------- rules on a blame


def package(error: dict, *, query: str, failed="typed_picks", surfaced="units_quality", evidence=None) -> FailurePackage:
    return FailurePackage(
        heal_id="h1", blueprint_id="bp", blueprint_path="bp.yml", failed_module=failed, module_type="Channel",
        surfaced_in=surfaced, fault={"fragment": blame.fault_fragment(error), "evidence": evidence},
        error=SparkErrorInfo(condition=error["condition"], message_parameters=error.get("message_parameters") or {},
                         message=error.get("message", ""), query_context=error.get("query_context") or []),
        signature="sig", module_raw={"id": failed, "type": "Channel", "config": {"op": "sql", "query": query}},
        module_compiled={},
    )  # fmt: skip


QUERY = "SELECT pick_id, CAST(qty AS INT) AS qty, CAST(weight AS INT) AS weight, 'CAST(qty AS INT)' AS t FROM picks"
SOME_NULL = {"measured": True, "kind": "cast", "expression": "CAST(qty AS INT)", "rows": 40, "had_values": 40, "kept_values": 37}


def test_try_cast_rewrites_only_the_failing_cast_of_the_blamed_module():
    diagnosis = diagnose_with_rules(package(cast_error(line=None), query=QUERY, evidence=SOME_NULL))
    [operation] = [op.model_dump() for op in diagnosis.patch.operations]
    assert operation["module_id"] == "typed_picks"
    # the other CAST to INT and the string literal are untouched
    assert operation["value"] == QUERY.replace("CAST(qty AS INT) AS qty", "TRY_CAST(qty AS INT) AS qty", 1)
    assert "surfaced in 'units_quality'" in diagnosis.reason and "3 of 40 values become NULL" in diagnosis.reason


def test_try_cast_that_nulls_the_whole_column_is_refused_with_the_measure():
    evidence = {**SOME_NULL, "rows": 28, "had_values": 28, "kept_values": 0}
    diagnosis = diagnose_with_rules(package(cast_error(line=None), query=QUERY, evidence=evidence))
    assert diagnosis.patch is None
    assert "every value" in diagnosis.reason and "28 of 28" in diagnosis.reason


def test_try_cast_is_refused_when_its_effect_could_not_be_measured():
    evidence = {"measured": False, "why": "the sample could not be built: AnalysisException"}
    diagnosis = diagnose_with_rules(package(cast_error(line=None), query=QUERY, evidence=evidence))
    assert diagnosis.patch is None and "could not be" in diagnosis.reason


def test_no_patch_when_the_fragment_is_not_in_the_blamed_module():
    diagnosis = diagnose_with_rules(package(cast_error(fragment="CAST(price AS INT)", line=None), query=QUERY,
                                            evidence=SOME_NULL))  # fmt: skip
    assert diagnosis.patch is None


def test_no_patch_upstream_without_the_fragment():
    error = cast_error(fragment="cast", line=None, context_type="DataFrame")
    assert diagnose_with_rules(package(error, query=QUERY, evidence=SOME_NULL)).patch is None


def test_try_divide_rewrites_the_failing_division_upstream():
    error = {"condition": "DIVIDE_BY_ZERO", "sqlstate": "22012", "message": "[DIVIDE_BY_ZERO] Division by zero.",
             "query_context": [{"contextType": "SQL", "fragment": "spend / clicks"}]}  # fmt: skip
    query = "SELECT spend / clicks AS cpc, spend / budget AS share FROM campaigns"
    evidence = {"measured": True, "kind": "divide", "expression": "spend / clicks", "rows": 24, "had_values": 24,
                "kept_values": 22}  # fmt: skip
    diagnosis = diagnose_with_rules(package(error, query=query, failed="campaign_costs", surfaced="costs_out",
                                            evidence=evidence))  # fmt: skip
    [operation] = [op.model_dump() for op in diagnosis.patch.operations]
    assert operation["value"] == "SELECT try_divide(spend, clicks) AS cpc, spend / budget AS share FROM campaigns"
    all_zero = {**evidence, "kept_values": 0}
    refused = diagnose_with_rules(package(error, query=query, failed="campaign_costs", surfaced="costs_out",
                                          evidence=all_zero))  # fmt: skip
    assert refused.patch is None and "every value" in refused.reason


# --------------------------------------------------------------------------- Spark fallback


@pytest.fixture
def picks_on_disk(tmp_path):
    """The Blueprint above reading a real CSV: 40 picks, three of them 'N/A' (rows 4, 17, 29)."""
    data = tmp_path / "picks.csv"
    rows = [f"P{i:03d},{('AMS', 'RTM')[i % 2]},{'N/A' if i in (4, 17, 29) else 1 + i % 12}" for i in range(40)]
    data.write_text("pick_id,site,qty\n" + "\n".join(rows) + "\n")
    path = tmp_path / "picks_bp.yml"
    path.write_text(BLUEPRINT.replace("/data/picks.csv", str(data)).replace("/out/units", str(tmp_path / "out")))
    return blame.bound_for_replay(compile_blueprint(path))


#: What a DataFrame-API cast reports: no SQL fragment, so text cannot decide.
NO_CONTEXT = {"condition": "CAST_INVALID_INPUT", "sqlstate": "22018", "message": "[CAST_INVALID_INPUT] ..."}


@pytest.mark.spark
def test_replay_on_the_sample_finds_the_first_module_that_raises(spark, picks_on_disk):
    found = blame.blame(picks_on_disk, "units_out", NO_CONTEXT, spark_factory=lambda: spark, sample_rows=100)
    assert (found.module_id, found.method) == ("typed_picks", "sample_replay")


@pytest.mark.spark
def test_replay_keeps_the_surfacing_module_when_the_sample_holds_no_bad_row(spark, picks_on_disk):
    # The first 4 rows are clean: the sample cannot show where the fault is, so no guess.
    found = blame.blame(picks_on_disk, "units_out", NO_CONTEXT, spark_factory=lambda: spark, sample_rows=4)
    assert (found.module_id, found.method) == ("units_out", "undecided")


@pytest.mark.spark
def test_the_measure_counts_what_try_cast_keeps_on_the_sample(spark, picks_on_disk):
    found = blame.blame(picks_on_disk, "units_quality", cast_error(line=None))
    measured = blame.measure_safe_rewrite(spark, picks_on_disk, found, sample_rows=1000)
    assert measured.evidence == {
        "measured": True, "kind": "cast", "expression": "CAST(qty AS INT)", "safe_expression": "try_cast(qty AS INT)",
        "input": "picks", "sample_rows": 1000, "rows": 40, "had_values": 40, "kept_values": 37,
        "lost_markers": 3,  # the three dropped values are 'N/A': no data is lost
    }  # fmt: skip
    assert blame.lost_data_values(measured.evidence) == 0
    assert measured.input_schemas == {"picks": [["pick_id", "string"], ["site", "string"], ["qty", "string"]]}
    # An expression blame did not find written in the module is never evaluated.
    elsewhere = blame.Blame("typed_picks", "units_quality", "sample_replay", "", fragment="CAST(weight AS INT)")
    assert blame.measure_safe_rewrite(spark, picks_on_disk, elsewhere, sample_rows=10).evidence["measured"] is False


@pytest.mark.spark
def test_a_raw_java_error_from_an_action_keeps_the_fragment_blame_needs(spark, tmp_path):
    """A failed Delta write reaches the step as a bare Py4JJavaError (`o123.save`), not as a
    converted PySpark exception: its Java throwable still says where the fault is written."""
    from py4j.protocol import Py4JJavaError

    from aqueduct_dagster.engine.errors import extract_spark_error

    if not hasattr(spark, "_jsparkSession"):
        pytest.skip("Spark Connect raises no Py4JJavaError")
    (tmp_path / "amounts.csv").write_text('amount\n"$1,000.00"\n')
    source = spark.read.option("header", "true").csv(str(tmp_path / "amounts.csv"))
    with pytest.raises(Exception) as raised:
        source.selectExpr("CAST(amount AS DECIMAL(12, 2)) AS amount").collect()
    java_throwable = raised.value._origin  # what py4j hands over before PySpark converts it
    error = extract_spark_error(Py4JJavaError("An error occurred while calling o123.save.\n", java_throwable))
    assert error.condition == "CAST_INVALID_INPUT"
    assert blame.fault_fragment(error.to_dict()) == "CAST(amount AS DECIMAL(12, 2))"


@pytest.mark.spark
def test_the_replay_builds_frames_and_neither_checks_nor_writes(spark, tmp_path):
    """Blame replays through the runner (`frames_only`): an Assert that would block and the
    Egress that would write are passed through, and the hooks see what was routed."""
    data = tmp_path / "picks.csv"
    data.write_text("pick_id,site,qty\nP1,AMS,2\nP2,RTM,3\nP3,AMS,4\n")
    path = tmp_path / "picks_bp.yml"
    path.write_text(BLUEPRINT.replace("/data/picks.csv", str(data)).replace("/out/units", str(tmp_path / "out"))
                    .replace("MIN(units) > 0", "MIN(units) > 1000"))  # fmt: skip
    started, ended = {}, []
    blame.replay_sampled(spark, blame.bound_for_replay(compile_blueprint(path)), "units_out", sample_rows=2,
                         on_module_start=lambda module, inputs: started.update({module.id: sorted(inputs)}),
                         on_module_end=lambda module, outcome: ended.append(module.id))  # fmt: skip
    assert ended == ["picks", "typed_picks", "units_per_site"]
    assert started == {"picks": [], "typed_picks": ["picks"], "units_per_site": ["typed_picks"],
                       "units_quality": ["units_per_site"], "units_out": ["units_quality"]}  # fmt: skip
    assert not (tmp_path / "out").exists()


GATED = """
aqueduct: "1.0"
id: gated
name: Gated
modules:
  - {id: raw, type: Ingress, config: {table: blame_gated_orders}}
  - id: approval
    type: Probe
    attach_to: raw
    config: {signals: [{type: threshold, id: approved, expr: "1 = 2"}]}
  - {id: gate, type: Regulator, config: {on_block: abort}}
  - {id: doubled, type: Channel, config: {op: sql, query: "SELECT order_id * 2 AS order_id FROM gate"}}
edges:
  - {from: raw, to: gate}
  - {from: approval, to: gate, port: signal}
  - {from: gate, to: doubled}
"""


@pytest.mark.spark
def test_the_replay_runs_no_probe_so_a_closed_regulator_does_not_stop_it(spark):
    """A real run stops at the closed Regulator; blame's replay evaluates no signal, so the
    Regulator is passive and the modules behind it are rebuilt (and can be blamed)."""
    from aqueduct_dagster.blueprint import compile_text
    from aqueduct_dagster.engine.errors import ModuleFailed
    from aqueduct_dagster.engine.runner import run_manifest

    spark.createDataFrame([(1,), (2,), (3,)], "order_id BIGINT").createOrReplaceTempView("blame_gated_orders")
    manifest = compile_text(GATED)
    with pytest.raises(ModuleFailed, match="AQ_REGULATOR_BLOCKED"):
        run_manifest(spark, manifest, only=["doubled"], sample_rows=2)
    built = {}
    blame.replay_sampled(spark, manifest, "doubled", sample_rows=2,
                         on_module_end=lambda module, outcome: built.update({module.id: outcome.outputs}))  # fmt: skip
    assert list(built) == ["raw", "gate", "doubled"]
    assert sorted(r.order_id for r in built["doubled"]["main"].collect()) in ([2, 4], [2, 6], [4, 6])
