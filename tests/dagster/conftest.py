"""Fixtures for the Dagster layer: a small project folder with the demo blueprint and data."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_data", REPO / "gallery" / "generate_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_project(tmp_path, monkeypatch):
    """A project dir: blueprints/orders_daily.yml (the shipped demo) and its generated data."""
    import random

    generator = _load_generator()
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    rng = random.Random(7)
    generator.write_customers(data / "demo" / "customers.csv", 20, rng)
    valid = generator.write_orders(data / "demo" / "orders.csv", 200, 20, rng)
    (data / "demo" / "expected.json").write_text(json.dumps({"valid_orders": valid}))
    blueprints = tmp_path / "blueprints"
    blueprints.mkdir()
    shutil.copy(REPO / "blueprints" / "orders_daily.yml", blueprints / "orders_daily.yml")
    monkeypatch.setenv("AQUEDUCT_DATA_DIR", str(data))
    return {"root": tmp_path, "blueprints": blueprints, "data": data, "valid_orders": valid}
