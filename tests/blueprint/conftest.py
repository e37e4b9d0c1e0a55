"""Factories for Blueprint compiler tests: write YAML into tmp_path, compile it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aqueduct_dagster.blueprint import Manifest, compile_blueprint
from aqueduct_dagster.errors import BlueprintError

#: What compile-time env lookups see in tests; never the real environment.
TEST_ENV = {"HOME": "/home/tester", "WAREHOUSE": "/warehouse", "DB_PASSWORD": "hunter2-secret"}


@pytest.fixture
def write_blueprint(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "blueprint.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def compile_yaml(write_blueprint: Callable[..., Path]) -> Callable[..., Manifest]:
    def compile_(text: str, **kwargs: Any) -> Manifest:
        kwargs.setdefault("env", TEST_ENV)
        return compile_blueprint(write_blueprint(text), **kwargs)

    return compile_


@pytest.fixture
def compile_error(write_blueprint: Callable[..., Path]) -> Callable[..., BlueprintError]:
    """Compile and return the BlueprintError (failing the test if none is raised)."""

    def compile_(text: str, **kwargs: Any) -> BlueprintError:
        kwargs.setdefault("env", TEST_ENV)
        path = write_blueprint(text)
        with pytest.raises(BlueprintError) as caught:
            compile_blueprint(path, **kwargs)
        return caught.value

    return compile_
