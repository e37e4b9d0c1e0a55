"""The PostgreSQL storage block documented in dagster.yaml works as written."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import yaml

REPO = Path(__file__).resolve().parents[2]


def documented_postgres_storage() -> str:
    """dagster.yaml's commented `storage:` block, uncommented."""
    text = (REPO / "dagster.yaml").read_text()
    block = re.search(r"^# storage:\n(?:#   .*\n)+", text, re.MULTILINE)
    assert block, "dagster.yaml no longer documents a `# storage:` block"
    return "".join(line[2:] + "\n" for line in block.group(0).splitlines())


def test_dagster_instance_on_the_documented_postgres_storage(postgres_server, tmp_path, monkeypatch):
    storage = documented_postgres_storage()
    assert yaml.safe_load(storage)["storage"]["postgres"]["postgres_url"] == {"env": "AQUEDUCT_DAGSTER_PG_URL"}
    monkeypatch.setenv("AQUEDUCT_DAGSTER_PG_URL", postgres_server.create_database("dagster").replace(
        "postgresql://", "postgresql+psycopg2://"))  # fmt: skip
    # The project's whole dagster.yaml with the block switched on.
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + "\n" + storage)

    @dg.asset
    def one() -> int:
        return 1

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([one], instance=instance)
        record = instance.get_run_by_id(result.run_id)
        assert record is not None and record.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey("one")) is not None
    finally:
        instance.dispose()
