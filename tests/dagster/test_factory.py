"""The factory turns Blueprints into assets, checks and jobs (no Spark needed)."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from aqueduct_dagster.dagster import BlueprintTranslator, ModuleAssetData, build_definitions
from aqueduct_dagster.errors import BlueprintError, ConfigError

KEY = dg.AssetKey


def _asset_keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    return set(defs.resolve_asset_graph().get_all_asset_keys())


def test_every_module_but_asserts_is_an_asset_plus_the_revision_asset(demo_project):
    defs = build_definitions(demo_project["blueprints"])
    assert _asset_keys(defs) == {
        KEY(["orders_daily", "raw_orders"]),
        KEY(["orders_daily", "clean_orders"]),
        KEY(["orders_daily", "orders_delta"]),
        KEY(["orders_daily", "blueprint_revision"]),
    }
    graph = defs.resolve_asset_graph()
    assert not graph.get(KEY(["orders_daily", "blueprint_revision"])).is_executable
    job = defs.resolve_job_def("orders_daily")
    assert KEY(["orders_daily", "blueprint_revision"]) not in job.asset_layer.executable_asset_keys


def test_healing_jobs_and_failure_sensor_are_defined(demo_project):
    defs = build_definitions(demo_project["blueprints"])
    for name in ("aqueduct_heal", "aqueduct_approve_patch", "aqueduct_reject_patch"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process"
    sensor = defs.resolve_sensor_def("aqueduct_heal_on_failure")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # A heal starts within seconds of a failure, without the daemon logging every few seconds.
    assert 10 <= sensor.minimum_interval_seconds <= 15


def test_assert_is_a_blocking_check_on_the_asset_it_guards(demo_project):
    defs = build_definitions(demo_project["blueprints"])
    graph = defs.resolve_asset_graph()
    check_keys = graph.asset_check_keys
    assert check_keys == {dg.AssetCheckKey(KEY(["orders_daily", "clean_orders"]), "orders_quality")}
    spec = next(iter(graph.get_check_spec(k) for k in check_keys))
    assert spec.blocking is True


def test_egress_reads_the_guarded_asset_and_metadata_is_rich(demo_project):
    defs = build_definitions(demo_project["blueprints"])
    graph = defs.resolve_asset_graph()
    egress = graph.get(KEY(["orders_daily", "orders_delta"]))
    assert egress.parent_keys == {KEY(["orders_daily", "clean_orders"])}
    clean = graph.get(KEY(["orders_daily", "clean_orders"]))
    assert clean.group_name == "orders_daily"
    assert clean.code_version and len(clean.code_version) == 16
    metadata = clean.metadata
    assert metadata["aqueduct/module_type"] == "Channel"
    # the macro is expanded in the SQL shown in the UI
    assert "amount > 0" in metadata["aqueduct/sql"].value
    assert "macros" not in metadata["aqueduct/sql"].value
    assert re.search(r"orders_daily\.yml:\d+(:\d+)?$", metadata["aqueduct/defined_at"])


def test_one_in_process_job_per_blueprint(demo_project):
    defs = build_definitions(demo_project["blueprints"])
    job = defs.resolve_job_def("orders_daily")
    assert job.executor_def.name == "in_process"
    assert job.tags["aqueduct/blueprint"] == "orders_daily"


def test_code_version_changes_only_for_the_edited_module(demo_project):
    before = build_definitions(demo_project["blueprints"]).resolve_asset_graph()
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace("mode: overwrite", "mode: append"))
    after = build_definitions(demo_project["blueprints"]).resolve_asset_graph()
    raw, egress = KEY(["orders_daily", "raw_orders"]), KEY(["orders_daily", "orders_delta"])
    assert before.get(raw).code_version == after.get(raw).code_version
    assert before.get(egress).code_version != after.get(egress).code_version


def test_translator_seam_customises_keys_and_deps_follow(demo_project):
    class Prefixed(BlueprintTranslator):
        def get_asset_spec(self, data: ModuleAssetData) -> dg.AssetSpec:
            spec = super().get_asset_spec(data)
            return spec.replace_attributes(key=spec.key.with_prefix("lake"), owners=["team:data"])

    defs = build_definitions(demo_project["blueprints"], translator=Prefixed())
    graph = defs.resolve_asset_graph()
    egress = graph.get(KEY(["lake", "orders_daily", "orders_delta"]))
    assert egress.parent_keys == {KEY(["lake", "orders_daily", "clean_orders"])}
    assert egress.owners == ["team:data"]


def test_missing_blueprints_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_definitions(tmp_path / "nope")


def test_two_blueprints_with_one_id_are_rejected(demo_project):
    folder = demo_project["blueprints"]
    (folder / "copy.yml").write_text((folder / "orders_daily.yml").read_text())
    with pytest.raises(BlueprintError, match="all use id 'orders_daily'"):
        build_definitions(folder, strict=True)  # without strict both are held back, the rest load


def test_retry_policy_becomes_the_jobs_op_retry_policy(demo_project):
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace(
        "agent:\n", "retry_policy:\n  max_attempts: 3\n  backoff: {strategy: fixed, base_seconds: 2}\nagent:\n"
    ))  # fmt: skip
    job = build_definitions(demo_project["blueprints"]).resolve_job_def("orders_daily")
    policy = job.op_retry_policy
    assert policy.max_retries == 2 and policy.delay == 2 and policy.backoff is None


def test_the_heal_sensor_takes_blueprint_runs_only():
    """It watches every origin (runs of `aqueduct run` have none), so it must tell a Blueprint's
    run from a heal or approval run, which carries the Blueprint's tag too."""
    from aqueduct_dagster.dagster.tags import is_blueprint_run

    jobs = {"orders_daily"}
    tags = {"aqueduct/blueprint": "orders_daily"}
    assert is_blueprint_run(dg.DagsterRun(job_name="orders_daily", tags=tags), jobs)
    assert not is_blueprint_run(dg.DagsterRun(job_name="aqueduct_heal", tags=tags), jobs)
    assert not is_blueprint_run(dg.DagsterRun(job_name="orders_daily", tags={}), jobs)
    assert not is_blueprint_run(dg.DagsterRun(job_name="someone_elses_job", tags=tags), jobs)
