"""Secrets are revealed at the point of use, from the environment."""

from __future__ import annotations

import pytest

from aqueduct_dagster.engine.errors import ConditionError
from aqueduct_dagster.engine.secrets import reveal_secrets, secret_names


def test_tokens_become_environment_values(monkeypatch):
    monkeypatch.setenv("AQ_TEST_USER", "svc")
    monkeypatch.setenv("AQ_TEST_PASSWORD", "s3cr3t")
    value = {
        "url": "jdbc:postgresql://db/x?user=@aq.secret('AQ_TEST_USER')",
        "password": '@aq.secret( "AQ_TEST_PASSWORD" )',
        "list": ["@aq.secret('AQ_TEST_USER')", 3],
        "plain": True,
    }
    assert reveal_secrets(value) == {
        "url": "jdbc:postgresql://db/x?user=svc",
        "password": "s3cr3t",
        "list": ["svc", 3],
        "plain": True,
    }


def test_unset_secret_is_a_condition_error(monkeypatch):
    monkeypatch.delenv("AQ_TEST_UNSET", raising=False)
    with pytest.raises(ConditionError) as caught:
        reveal_secrets({"password": "@aq.secret('AQ_TEST_UNSET')"})
    assert caught.value.condition == "AQ_SECRET_NOT_SET"
    assert caught.value.message_parameters == {"name": "AQ_TEST_UNSET"}
    assert "export AQ_TEST_UNSET" in caught.value.hint


def test_secret_names():
    assert secret_names(["@aq.secret('A') and @aq.secret(\"B\")", {"k": "@aq.secret('C')"}]) == [
        "A",
        "B",
        "C",
    ]
