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


def test_partitions_are_the_jobs_partitions(tmp_path):
    blueprints, _ = _project(tmp_path)
    job = build_definitions(blueprints, strict=True).resolve_job_def("daily_sales")
    assert job.partitions_def is not None and job.partitions_def.get_partition_keys() == list(DAYS)
    # Each day run writes its own day: test_a_backfill_through_the_daemon_writes_each_day.


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


def test_the_schedule_is_listed_by_the_dagster_cli(tmp_path):
    import os
    import subprocess

    from tests.support.dagster_dev import DAGSTER, REPO

    blueprints, _ = _project(tmp_path, extra='schedule: "0 6 * * *"')
    (tmp_path / "home").mkdir()
    env = {**os.environ, "AQUEDUCT_BLUEPRINTS_DIR": str(blueprints), "DAGSTER_HOME": str(tmp_path / "home")}
    listed = subprocess.run([str(DAGSTER), "schedule", "list", "-w", str(REPO / "workspace.yaml")], cwd=REPO,
                            env=env, check=True, capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert "daily_sales_schedule" in listed


@pytest.mark.e2e
def test_a_backfill_through_the_daemon_writes_each_day(tmp_path):
    """The real thing: `dagster job backfill` queues one run per day; the daemon of a running
    `dagster dev` launches them; each writes its own day from its own input."""
    import os
    import subprocess
    import time

    from tests.support.dagster_dev import DAGSTER, REPO, dagster_dev

    blueprints, data = _project(tmp_path)
    env = {"AQUEDUCT_BLUEPRINTS_DIR": str(blueprints), "AQUEDUCT_STATE_DIR": str(tmp_path / "state"),
           "AQUEDUCT_DATA_DIR": str(data)}  # fmt: skip
    home = tmp_path / "home"
    with dagster_dev(home, env=env):
        cli_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
        subprocess.run([str(DAGSTER), "job", "backfill", "-w", str(REPO / "workspace.yaml"), "-j", "daily_sales",
                        "--partitions", ",".join(DAYS), "--noprompt"],
                       cwd=REPO, env=cli_env, check=True, capture_output=True, timeout=120)  # fmt: skip
        instance = dg.DagsterInstance.from_config(str(home))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name="daily_sales"))
            if len(runs) >= len(DAYS) and all(r.is_finished for r in runs):
                break
            time.sleep(2)
    assert sorted((r.tags["dagster/partition"], r.status) for r in runs) == [
        (day, dg.DagsterRunStatus.SUCCESS) for day in DAYS
    ]
    assert all(r.tags.get("dagster/backfill") for r in runs)
    for index, day in enumerate(DAYS):
        written = pd.read_parquet(data / "totals" / day)
        assert sorted(written.total) == sorted([10 + 2 * index, 100 * (index + 1)])
