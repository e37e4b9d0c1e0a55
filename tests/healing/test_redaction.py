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


def test_syntax_errors_keep_the_quoted_sql_token_data_errors_lose_theirs():
    from aqueduct_dagster.blueprint import compile_text
    from aqueduct_dagster.healing.failure import build_failure_package

    text = ('aqueduct: "1.0"\nid: b\nname: b\nmodules:\n  - {id: raw, type: Ingress, config: {format: csv, path: x.csv}}\n'
            '  - {id: c, type: Channel, config: {op: sql, query: "SELECT id FROM raw"}}\n')  # fmt: skip
    manifest = compile_text(text)
    syntax = build_failure_package(manifest=manifest, blueprint_text=text, failed_module="c", error={
        "condition": "PARSE_SYNTAX_ERROR", "sqlstate": "42601", "message_parameters": {"error": "'user'"},
        "message": "Syntax error at or near 'user'"})  # fmt: skip
    assert syntax.error.parameters["error"] == "'user'" and "'user'" in syntax.error.message
    data = build_failure_package(manifest=manifest, blueprint_text=text, failed_module="c", error={
        "condition": "CAST_INVALID_INPUT", "sqlstate": "22018", "message_parameters": {"expression": "'ACME'"},
        "message": "The value 'ACME' cannot be cast"})  # fmt: skip
    assert data.error.parameters["expression"] == "'<literal>'" and "ACME" not in data.error.message
