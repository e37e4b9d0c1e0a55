"""Secrets, credentials and data literals never survive redaction."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest

from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.errors import ConfigError
from aqueduct_dagster.healing.redaction import (
    MIN_SECRET_LENGTH,
    Redactor,
    install_log_redaction,
    is_data_error,
    redact_outbound,
)

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
    syntax = build_failure_package(manifest=manifest, blueprint_text=text, failure=FailureRecord(module_id="c", error={
        "condition": "PARSE_SYNTAX_ERROR", "sqlstate": "42601", "message_parameters": {"error": "'user'"},
        "message": "Syntax error at or near 'user'"}))  # fmt: skip
    assert syntax.error.message_parameters["error"] == "'user'" and "'user'" in syntax.error.message
    data = build_failure_package(manifest=manifest, blueprint_text=text, failure=FailureRecord(module_id="c", error={
        "condition": "CAST_INVALID_INPUT", "sqlstate": "22018", "message_parameters": {"expression": "'ACME'"},
        "message": "The value 'ACME' cannot be cast"}))  # fmt: skip
    assert data.error.message_parameters["expression"] == "'<literal>'" and "ACME" not in data.error.message


# ----------------------------------------------------------------------------- every spelling of a secret

TOKEN = "Tr0ub4dor&3/horse+x"  # '&', '/' and '+' make every encoding differ from the raw text
SPELLINGS = {
    "exact": TOKEN,
    "upper": TOKEN.upper(),
    "lower": TOKEN.lower(),
    "mixed": "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(TOKEN)),
    "url": quote(TOKEN, safe=""),
    "url_default_safe": quote(TOKEN),
    "url_plus": quote_plus(TOKEN),
    "url_lower_hex": quote(TOKEN, safe="").lower(),
    "base64": base64.b64encode(TOKEN.encode()).decode(),
    "base64_urlsafe": base64.urlsafe_b64encode(TOKEN.encode()).decode(),
    "base64_in_blob_offset_1": base64.b64encode(b"u:" + TOKEN.encode() + b"!").decode(),
    "base64_in_blob_offset_2": base64.b64encode(b"user:" + TOKEN.encode()).decode(),
    "base64_in_blob_offset_0": base64.b64encode(b"abc" + TOKEN.encode() + b"tail").decode(),
    "urlsafe_in_blob": base64.urlsafe_b64encode(b"xy" + TOKEN.encode() + b"z").decode(),
    "line_break": TOKEN[:7] + "\n" + TOKEN[7:],
    "crlf_and_indent": TOKEN[:4] + "\r\n    " + TOKEN[4:12] + " " + TOKEN[12:],
    "escaped_newline": TOKEN[:9] + "\\n" + TOKEN[9:],
    "base64_wrapped": (lambda b: b[:10] + "\n" + b[10:])(base64.b64encode(TOKEN.encode()).decode()),
    "hex": TOKEN.encode().hex(),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_of_a_secret_is_redacted(spelling):
    redactor = Redactor.for_blueprint("password: \"@aq.secret('API_PW')\"", env={"API_PW": TOKEN})
    leaked = SPELLINGS[spelling]
    text = redactor.text(f"request failed: {leaked} (retrying)")
    assert "<secret:API_PW>" in text, text
    assert redactor.leaks(text) == []
    # What is left of a base64 blob is at most the characters the secret shares with its neighbours.
    assert leaked not in text and TOKEN not in text


def test_a_json_escaped_secret_is_redacted():
    secret = 'quote"and\\backslash-42'
    redactor = Redactor({"S": secret})
    payload = json.dumps({"options": {"note": secret}})
    assert secret not in payload  # json escaped it
    assert "<secret:S>" in redactor.text(payload) and "backslash" not in redactor.text(payload)


def test_a_secret_is_not_matched_inside_unrelated_text():
    redactor = Redactor({"S": "abcdefgh12"})
    assert redactor.text("the alphabet starts abcdefg and ends xyz; 1 2") == "the alphabet starts abcdefg and ends xyz; 1 2"


def test_a_referenced_secret_too_short_to_redact_is_refused_naming_it_not_its_value():
    with pytest.raises(ConfigError) as raised:
        Redactor.for_blueprint("url: \"@aq.secret('DB_PIN')\"", env={"DB_PIN": "4711"})
    message = str(raised.value)
    assert "DB_PIN" in message and "4711" not in message
    assert f"at least {MIN_SECRET_LENGTH} characters" in message  # the fix


def test_short_env_vars_that_only_look_like_credentials_are_ignored():
    redactor = Redactor.for_blueprint("modules: []", env={"GIT_TOKEN": "abc", "SESSION_SECRET": "zq"})
    assert redactor.text("abc zq") == "abc zq"


def test_credentials_in_json_headers_and_urls():
    redactor = Redactor({})
    text = redactor.text('{"password": "p4ssw0rd!", "api_key": "k-123"} Authorization: Basic dXNlcjpwYXNz '
                         "https://bob:hunter22@host/x")  # fmt: skip
    for value in ("p4ssw0rd!", "k-123", "dXNlcjpwYXNz", "hunter22"):
        assert value not in text


# ----------------------------------------------------------------------------- data values

CODE = "query: \"SELECT id, CAST(code AS INT) AS code FROM raw WHERE status = 'open' AND amount > 100\""


def test_data_class_is_decided_from_the_structured_error_not_the_text():
    assert is_data_error({"sqlstate": "22018"}) and is_data_error({"sqlstate": "23505"})
    assert is_data_error({"condition": "CAST_INVALID_INPUT"})  # no SQLSTATE
    assert is_data_error({"java_class": "java.lang.NumberFormatException"})
    assert not is_data_error({"sqlstate": "42703", "message": "The value 'x' cannot be cast"})


@pytest.mark.parametrize(
    "message, value",
    [
        ("The value 'ACME Corp' of the type \"STRING\" cannot be cast to \"INT\"", "ACME Corp"),
        ('For input string: "ZZ-4821"', "ZZ-4821"),
        ("Cannot cast ZZ-4821 to INT", "ZZ-4821"),
        ("value 98765 out of range", "98765"),
        ("The value 98765.43 cannot be represented", "98765.43"),
        ("The 98765.4321 rounded half up from 98765.43219 cannot be represented as Decimal(5, 2)", "98765.4321"),
        ("bad input 'O''Brien'", "Brien"),
        ("invalid input syntax for type integer: ZZ-4821", "ZZ-4821"),
    ],
)
def test_data_values_go_in_every_quoting_style(message, value):
    redactor = Redactor({}, code=CODE)
    text = redactor.text(message, data_literals=True)
    assert value not in text, text
    assert "<literal>" in text


def test_message_parameter_values_go_everywhere_they_appear():
    redactor = Redactor({}, code=CODE)
    error = {"condition": "NUMERIC_VALUE_OUT_OF_RANGE", "sqlstate": "22003",
             "message_parameters": {"value": "123456.789", "precision": "5", "scale": "2"},
             "message": "Decimal overflow near 123456.789", "cause_chain": ["ArithmeticException: 123456.789"]}  # fmt: skip
    redacted = redactor.error(error)
    assert "123456.789" not in str(redacted)
    assert redacted["message_parameters"] == {"value": "<literal>", "precision": "5", "scale": "2"}


def test_identifiers_types_configs_and_the_blueprints_own_literals_are_kept():
    redactor = Redactor({}, code=CODE)
    message = ("[CAST_INVALID_INPUT] The value 'open' of the type \"STRING\" cannot be cast to \"DECIMAL(10,2)\" "
               "in `code` of \"CAST(code AS INT)\"; amount 100; set \"spark.sql.ansi.enabled\" to \"false\"")  # fmt: skip
    text = redactor.error_text(message, {"sqlstate": "22018"})
    assert text == message  # 'open' and 100 are the Blueprint's own literals: code, not data


def test_analysis_errors_keep_their_quotes():
    redactor = Redactor({}, code=CODE)
    message = "Syntax error at or near 'user'; value \"x\""
    assert redactor.error_text(message, {"sqlstate": "42601"}) == message


# ----------------------------------------------------------------------------- sinks: logs, payloads


def test_log_filter_redacts_messages_arguments_and_tracebacks(caplog):
    from aqueduct_dagster.stores import depot  # a project module's own logger

    redactor = Redactor({"S": TOKEN})
    install_log_redaction(redactor)
    with caplog.at_level(logging.INFO):
        depot.log.info("connecting as %s", quote_plus(TOKEN))
        try:
            raise RuntimeError(TOKEN.upper())
        except RuntimeError:
            depot.log.exception("failed")
    assert TOKEN.upper() not in caplog.text and quote_plus(TOKEN) not in caplog.text
    assert caplog.text.count("<secret:S>") >= 2


def test_webhook_payloads_are_redacted_as_json():
    redactor = Redactor({"S": TOKEN})
    body = redact_outbound({"text": f"heal failed: {quote(TOKEN, safe='')}", "n": 3, "at": object()}, redactor)
    assert body["text"] == "heal failed: <secret:S>" and body["n"] == 3 and isinstance(body["at"], str)
