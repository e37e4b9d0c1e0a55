"""Secrets, credentials and data literals never survive redaction."""

from __future__ import annotations

from aqueduct_dagster.healing.redaction import Redactor

BLUEPRINT = "options: {password: \"@aq.secret('PG_PASSWORD')\"}"


def test_secret_values_referenced_by_the_blueprint_are_replaced():
    redactor = Redactor.for_blueprint(BLUEPRINT, env={"PG_PASSWORD": "hunter2-very-secret", "HOME": "/root"})
    text = redactor.text("login failed for hunter2-very-secret at /root")
    assert text == "login failed for <secret:PG_PASSWORD> at /root"
    assert redactor.leaks(text) == []


def test_credential_looking_env_vars_are_redacted_even_when_not_referenced():
    redactor = Redactor.for_blueprint("modules: []", env={"OPENAI_API_KEY": "sk-abc123456789"})
    assert "sk-abc123456789" not in redactor.text("key sk-abc123456789 rejected")


def test_credentials_in_urls_and_key_value_pairs():
    redactor = Redactor({})
    text = redactor.text("jdbc:postgresql://app:s3cr3t@db:5432/x?password=p4ss&user=app token: abc.def Bearer xyz")
    assert "s3cr3t" not in text and "p4ss" not in text and "abc.def" not in text and "xyz" not in text
    assert "app:<redacted>@db" in text


def test_data_literals_only_when_asked():
    redactor = Redactor({})
    message = "The value 'ACME Corp, 42 Main St' of the type \"STRING\" cannot be cast to \"INT\""
    assert "ACME" in redactor.text(message)
    assert redactor.text(message, data_literals=True) == (
        "The value '<literal>' of the type \"STRING\" cannot be cast to \"INT\""
    )


def test_nested_data_is_redacted_recursively():
    redactor = Redactor({"K": "topsecretvalue"})
    data = {"a": ["x topsecretvalue"], "b": {"c": "topsecretvalue"}, "n": 3}
    assert redactor.data(data) == {"a": ["x <secret:K>"], "b": {"c": "<secret:K>"}, "n": 3}
