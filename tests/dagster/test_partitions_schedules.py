"""Blueprint-level partitions, schedules and automation as Dagster definitions, on real Spark.

A daily-partitioned Blueprint reads and writes `@aq.date.today()`: each partition's run binds
it to the partition's day, so three partitions (a backfill) write three days, each from its
own input, whatever the wall clock says.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.errors import AqueductError

DAILY = """\
aqueduct: "1.0"
id: daily_sales
name: Daily sales
partitions: {{type: daily, start: "2026-03-01", end: "2026-03-04"}}
{extra}
context:
  data_dir: "{data}"
modules:
  - id: sales
    type: Ingress
    config: {{format: csv, path: "${{ctx.data_dir}}/sales/@aq.date.today()/sales.csv", header: true}}
  - id: totals
    type: Channel
    config:
      op: sql
      query: SELECT shop, SUM(CAST(amount AS INT)) AS total, '@aq.run.partition()' AS day FROM sales GROUP BY shop
  - id: totals_out
    type: Egress
    config: {{format: parquet, path: "${{ctx.data_dir}}/totals/@aq.date.today()", mode: overwrite}}
edges:
  - {{from: sales, to: totals}}
  - {{from: totals, to: totals_out}}
"""

DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


def _project(tmp_path, extra: str = ""):
    data = tmp_path / "data"
    for index, day in enumerate(DAYS):
        folder = data / "sales" / day
        folder.mkdir(parents=True)
        (folder / "sales.csv").write_text(f"shop,amount\nams,{10 + index}\nams,{index}\nrtm,{100 * (index + 1)}\n")
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    (blueprints / "daily_sales.yml").write_text(DAILY.format(data=data, extra=extra))
    return blueprints, data


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_a_backfill_of_three_days_writes_each_day_from_its_own_input(spark, tmp_path):
    blueprints, data = _project(tmp_path)
    defs = build_definitions(blueprints, strict=True)
    job = defs.resolve_job_def("daily_sales")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == list(DAYS)
    instance = dg.DagsterInstance.ephemeral()
    for day in DAYS:  # what a backfill launches: one run per partition
        assert job.execute_in_process(instance=instance, partition_key=day).success
    for index, day in enumerate(DAYS):
        written = pd.read_parquet(data / "totals" / day).sort_values("shop").reset_index(drop=True)
        expected = pd.DataFrame({"shop": ["ams", "rtm"], "total": [10 + 2 * index, 100 * (index + 1)], "day": [day, day]})
        pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    materialized = instance.get_materialized_partitions(dg.AssetKey(["daily_sales", "totals_out"]))
    assert materialized == set(DAYS)


def test_schedule_and_automation_are_loaded(tmp_path):
    blueprints, _ = _project(tmp_path, extra='schedule: "0 6 * * *"\nautomation: eager')
    defs = build_definitions(blueprints, strict=True)
    schedule = defs.resolve_schedule_def("daily_sales_schedule")
    assert schedule.job_name == "daily_sales"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    asset = defs.resolve_assets_def(dg.AssetKey(["daily_sales", "totals"]))
    assert asset.automation_conditions_by_key[asset.key] == dg.AutomationCondition.eager()


def test_on_cron_automation_needs_a_schedule(tmp_path):
    blueprints, _ = _project(tmp_path, extra="automation: on_cron")
    with pytest.raises(AqueductError, match="on_cron needs a `schedule:`"):
        build_definitions(blueprints, strict=True)


def test_static_partitions_cannot_be_scheduled(tmp_path):
    blueprints, _ = _project(tmp_path)
    text = (blueprints / "daily_sales.yml").read_text()
    text = text.replace('{type: daily, start: "2026-03-01", end: "2026-03-04"}', "{type: static, values: [ams, rtm]}")
    (blueprints / "daily_sales.yml").write_text(text + 'schedule: "0 6 * * *"\n')
    with pytest.raises(AqueductError, match="cannot pick one of static partitions"):
        build_definitions(blueprints, strict=True)


WRITER = """\
aqueduct: "1.0"
id: orders_writer
name: Orders writer
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}/raw.csv", header: true}}
  - id: published
    type: Egress
    config: {{format: parquet, path: "{data}/shared/orders/", mode: overwrite}}
edges:
  - {{from: raw, to: published}}
"""
READER = """\
aqueduct: "1.0"
id: orders_reader
name: Orders reader
automation: eager
modules:
  - id: orders
    type: Ingress
    config: {{format: parquet, path: "file:{data}/shared/orders"}}
  - id: report
    type: Egress
    config: {{format: parquet, path: "{data}/report", mode: overwrite}}
edges:
  - {{from: orders, to: report}}
"""


def test_an_ingress_reading_another_blueprints_output_depends_on_its_asset(tmp_path):
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    data = tmp_path / "data"
    (blueprints / "writer.yml").write_text(WRITER.format(data=data))
    (blueprints / "reader.yml").write_text(READER.format(data=data))
    graph = build_definitions(blueprints, strict=True).resolve_asset_graph()
    reader_ingress = graph.get(dg.AssetKey(["orders_reader", "orders"]))
    # `file:` and a trailing slash do not hide that it is the same folder.
    assert dg.AssetKey(["orders_writer", "published"]) in reader_ingress.parent_keys
    assert reader_ingress.automation_condition == dg.AutomationCondition.eager()
    # Nothing else is joined: the writer reads a file nobody writes; only its Blueprint's
    # revisions are upstream of it (an applied patch makes what it feeds stale).
    assert graph.get(dg.AssetKey(["orders_writer", "raw"])).parent_keys == {
        dg.AssetKey(["orders_writer", "blueprint_revision"])
    }
