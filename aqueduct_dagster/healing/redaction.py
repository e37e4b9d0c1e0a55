"""Redaction: the one choke point every text passes through before it leaves the process.

Prompts and reprompts, store rows, the Dagster event log, console logs, PR descriptions and
webhook payloads all go through one `Redactor`, built once per Blueprint (or run) and passed
along (a FailurePackage carries the one it was built with). It removes:

- secret values: those the Blueprint references through `@aq.secret('NAME')` (a value too
  short to redact safely is refused with a ConfigError), and values of environment variables
  whose name looks like a credential. Each is found in every spelling it takes on its way out:
  any letter case, URL-encoded, base64 (alone or inside a longer blob), hex, JSON-escaped, and
  with line breaks or spaces inserted anywhere inside it. They become `<secret:NAME>`;
- credentials in URLs, `key=value` / `"key": "value"` pairs and `Bearer`/`Basic` headers;
- data values quoted by *data-class* errors (SQLSTATE classes 22 and 23, casts, parse
  errors, constraint values): single- or double-quoted, unquoted after `value`-phrases,
  numbers included, and every value Spark reported as a message parameter. Whether an error
  is data-class is decided from its structured fields, never from its text. SQL identifiers
  (backticked), Spark type names and the Blueprint's own literals are kept: they are code,
  and the healer needs them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from aqueduct_dagster.blueprint.functions import SECRET_TOKEN
from aqueduct_dagster.errors import ConfigError

_CREDENTIAL_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)

#: A referenced secret shorter than this is refused. Every spelling of a secret is matched
#: case-insensitively and with whitespace allowed between its characters, and base64 is
#: matched on the characters the secret alone decides (about 4/3 of its length, minus up
#: to two at each end): below 8 characters those patterns turn up by chance in ordinary
#: text (a 4-letter secret would blank every word it spells), so redaction would either
#: miss variants or mangle every message. Such a value is also guessable in seconds.
MIN_SECRET_LENGTH = 8

SECRET_PLACEHOLDER = "<secret:{name}>"
REDACTED = "<redacted>"
LITERAL = "<literal>"

_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_KEY_VALUE = re.compile(
    r"(?P<key>(?<!<)\b(?:password|passwd|pwd|secret|client[_-]?secret|token|access[_-]?token|api[_-]?key"
    r"|access[_-]?key|apikey|private[_-]?key)\b[\"']?\s*[=:]\s*)"
    r"(?P<value>(?![\"']?<(?:secret:|redacted>))(?:\"[^\"]*\"|'[^']*'|[^\s,;&\"'}]+))",
    re.I,
)
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic|Token)(\s+)(?!<)[A-Za-z0-9._~+/=\-]+", re.I)

#: Between two characters of a secret: whitespace, or an escaped line break (JSON, repr).
_GAP = r"(?:\s|\\[nrt])*"

# ----------------------------------------------------------------------------- data errors

#: SQLSTATE classes whose messages quote data: 22 data exception, 23 constraint violation.
_DATA_SQLSTATE_CLASSES = frozenset({"22", "23"})
#: Conditions (their family) that quote data whatever SQLSTATE they carry (some have none).
_DATA_CONDITIONS = frozenset(
    {
        "CAST_INVALID_INPUT", "CAST_OVERFLOW", "CAST_OVERFLOW_IN_TABLE_INSERT", "NUMERIC_VALUE_OUT_OF_RANGE",
        "NUMERIC_OUT_OF_SUPPORTED_RANGE", "DIVIDE_BY_ZERO", "ARITHMETIC_OVERFLOW", "BINARY_ARITHMETIC_OVERFLOW",
        "MALFORMED_RECORD_IN_PARSING", "CANNOT_PARSE_TIMESTAMP", "CANNOT_PARSE_DECIMAL", "CANNOT_PARSE_JSON_FIELD",
        "CONVERSION_INVALID_INPUT", "INVALID_FORMAT", "DATETIME_OVERFLOW", "INVALID_URL", "INVALID_UTF8_STRING",
        "CANNOT_DECODE_URL", "DELTA_NOT_NULL_CONSTRAINT_VIOLATED", "DELTA_VIOLATE_CONSTRAINT_WITH_VALUES",
        "DELTA_CHECK_CONSTRAINT_VIOLATED", "NOT_NULL_ASSERT_VIOLATION", "USER_RAISED_EXCEPTION",
        "DUPLICATED_MAP_KEY", "NULL_MAP_KEY", "INVALID_ARRAY_INDEX", "INVALID_ARRAY_INDEX_IN_ELEMENT_AT",
        # Our own: an Assert's rule messages quote the values it measured.
        "AQ_ASSERT_FAILED",
    }
)  # fmt: skip
#: Exception classes (Python or JVM) that carry no SQLSTATE but quote the input they choked on.
_DATA_CLASSES = frozenset(
    {
        "NumberFormatException", "SparkNumberFormatException", "DateTimeParseException",
        "SparkDateTimeException", "ArithmeticException", "SparkArithmeticException",
        "JsonParseException", "BadRecordException",
    }
)  # fmt: skip
#: Message parameters that name code (types, configs, functions, identifiers), not data.
_CODE_PARAMETERS = frozenset(
    {
        "sourceType", "targetType", "dataType", "type", "precision", "scale", "ansiConfig", "config",
        "functionName", "function", "alternative", "objectName", "proposal", "columnName", "fieldName",
        "sqlExpr", "expression_sql", "format", "pattern", "constraintName", "tableName", "message",
        "failFastMode", "operator", "arraySize", "ansiConfigName", "suggestion",
    }
)  # fmt: skip
#: Spark writes types in double quotes ("STRING", "DECIMAL(10,2)", "ARRAY<INT>"): code.
_TYPE_NAME = re.compile(r"^[A-Z][A-Z0-9_ ]*(?:\([0-9, ]*\))?(?:<.*>)?$")
_SPARK_CONFIG = re.compile(r"^spark\.[\w.]+$")
_SINGLE_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
#: An unquoted data token after the phrases Spark and the JVM put in front of a value.
_VALUE_PHRASE = re.compile(
    r"(?P<phrase>\b(?:the\s+value|value|cannot\s+cast|input\s+string:?|invalid\s+input\s+syntax\s+for\s+type\s+\w+:"
    r"|rounded\s+half\s+up\s+from)\s+|\bthe\s+(?=[-+]?\d))(?P<token>[^\s'\"`<,;()\[\]]+)",
    re.I,
)
_NOT_A_VALUE = frozenset(
    {
        "of", "out", "is", "was", "in", "for", "to", "from", "cannot", "can", "must", "the", "a", "an", "at",
        "has", "had", "exceeds", "should", "overflow", "that", "this", "type", "with", "be", "not", "and",
        "or", "as", "on", "by", "value", "values", "input", "result", "column", "field", "expression",
        "query", "sql", "error", "row", "record", "data", "file", "spark", "task", "stage", "job",
    }
)  # fmt: skip
_CODE_WORD = re.compile(r"[A-Za-z_][\w.\-]*")
_CODE_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'|(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


def secret_names(text: str) -> set[str]:
    return set(SECRET_TOKEN.findall(text or ""))


def is_data_error(error: Mapping[str, Any]) -> bool:
    """Whether an error's text quotes data values: decided from its SQLSTATE, condition and class."""
    sqlstate = str(error.get("sqlstate") or "")
    family = str(error.get("condition") or "").split(".")[0]
    classes = {str(error.get(key) or "").rsplit(".", 1)[-1] for key in ("exception_class", "java_class")}
    return sqlstate[:2] in _DATA_SQLSTATE_CLASSES or family in _DATA_CONDITIONS or bool(classes & _DATA_CLASSES)


def _parameters(error: Mapping[str, Any]) -> Mapping[str, Any]:
    return error.get("message_parameters") or error.get("parameters") or {}


def data_parameter_values(error: Mapping[str, Any]) -> list[str]:
    """The data values a data-class error reports as message parameters, unquoted."""
    if not is_data_error(error):
        return []
    values = []
    for key, value in _parameters(error).items():
        if key in _CODE_PARAMETERS:
            continue
        text = str(value)
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            text = text[1:-1]
        if text:
            values.append(text)
    return values


def _variants(secret: str) -> tuple[list[str], list[str]]:
    """(spellings matched in any letter case, spellings matched exactly) of one secret."""
    folded = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), secret.encode().hex(),
              json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}  # fmt: skip
    exact: set[str] = set()
    raw = secret.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for offset in range(3):
            # The secret starting `offset` bytes into a longer blob: keep only the base64
            # characters whose six bits all come from the secret itself.
            encoded = encode(b"\0" * offset + raw).decode()
            start, end = -(-8 * offset // 6), (8 * offset + 8 * len(raw)) // 6
            exact.add(encoded[start:end])
    return sorted(folded, key=len, reverse=True), sorted(exact - folded, key=len, reverse=True)


def _spelled(variant: str) -> str:
    return _GAP.join(re.escape(char) for char in variant)


class Redactor:
    """Removes secret values, credentials and data values from text and nested data."""

    def __init__(self, secrets: Mapping[str, str], *, code: str = "") -> None:
        short = sorted(name for name, value in secrets.items() if value and len(value) < MIN_SECRET_LENGTH)
        if short:
            raise ConfigError(
                f"secret {', '.join(repr(n) for n in short)} is shorter than {MIN_SECRET_LENGTH} characters: "
                "too short to redact safely from prompts, logs and stores",
                hint=f"set {', '.join(short)} to a value of at least {MIN_SECRET_LENGTH} characters "
                "(rotate the credential), or stop referencing it with @aq.secret",
            )
        #: The secrets this Redactor removes, by name (never their values): for audits.
        self.names = sorted(secrets)
        patterns = []
        # Longest first, so a secret that contains another is replaced whole.
        for name, value in sorted(((n, v) for n, v in secrets.items() if v), key=lambda item: -len(item[1])):
            folded, exact = _variants(value)
            alternatives = [f"(?i:{_spelled(v)})" for v in folded] + [_spelled(v) for v in exact]
            patterns.append((name, re.compile("|".join(alternatives))))
        self._secrets = patterns
        self._code = code
        # The Blueprint's literals, and every word of it (module ids, column names, paths as
        # written): an error quoting them quotes code, which the healer needs.
        self._code_literals = {a or b for a, b in _CODE_LITERAL.findall(code)} | set(_CODE_WORD.findall(code))

    @classmethod
    def for_blueprint(cls, blueprint_text: str, env: Mapping[str, str] | None = None, *,
                      code: str | None = None) -> Redactor:  # fmt: skip
        """Secrets the Blueprint references (all must be long enough), plus credential-named env vars.

        An environment variable that only *looks* like a credential by its name and is too
        short is ignored: nothing references it, so refusing it would block unrelated runs.
        """
        env = os.environ if env is None else env
        referenced = {name: env[name] for name in secret_names(blueprint_text) if env.get(name)}
        looks_like = {
            name: value for name, value in env.items()
            if _CREDENTIAL_NAME.search(name) and value and len(value) >= MIN_SECRET_LENGTH
        }  # fmt: skip
        return cls({**looks_like, **referenced}, code=blueprint_text if code is None else code)

    @classmethod
    def for_manifest(cls, manifest: Any, env: Mapping[str, str] | None = None) -> Redactor:
        """The Redactor of a compiled Blueprint: its secret tokens, and its source file as code."""
        compiled = manifest.model_dump_json()
        source = Path(str(getattr(manifest, "source_path", "") or ""))
        try:
            code = source.read_text(encoding="utf-8") if source.is_file() else compiled
        except OSError:
            code = compiled
        return cls.for_blueprint(compiled + "\n" + code, env, code=code)

    # ------------------------------------------------------------------ text

    def text(self, value: str, *, data_literals: bool = False, data_values: Iterable[str] = ()) -> str:
        value = self.secrets_only(value)
        value = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", value)
        value = _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED}", value)
        value = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", value)
        if data_literals:
            value = self._without_data(value, data_values)
        return value

    def secrets_only(self, value: str) -> str:
        for name, pattern in self._secrets:
            value = pattern.sub(SECRET_PLACEHOLDER.format(name=name), value)
        return value

    def _without_data(self, value: str, data_values: Iterable[str]) -> str:
        for item in sorted({v for v in data_values if self._removable(v)}, key=len, reverse=True):
            value = value.replace(item, LITERAL)
        value = _SINGLE_QUOTED.sub(lambda m: m[0] if self._is_code(m[1]) else f"'{LITERAL}'", value)
        value = _DOUBLE_QUOTED.sub(lambda m: m[0] if self._is_code(m[1], double=True) else f'"{LITERAL}"', value)
        return _VALUE_PHRASE.sub(
            lambda m: m[0] if m["token"].lower() in _NOT_A_VALUE or self._is_code(m["token"])
            else f"{m['phrase']}{LITERAL}", value,
        )  # fmt: skip

    def _removable(self, value: str) -> bool:
        # Shorter values are left to the quote and phrase rules: replacing "7" everywhere
        # would also eat line numbers and positions.
        return len(value) >= 3 and value != LITERAL and not self._is_code(value)

    def _is_code(self, content: str, *, double: bool = False) -> bool:
        if content in (LITERAL, "") or content.startswith("<secret:") or content == REDACTED:
            return True
        if content in self._code_literals:
            return True
        if double and (_TYPE_NAME.match(content) or _SPARK_CONFIG.match(content) or content in ("true", "false")):
            return True
        # A SQL fragment Spark quotes from the Blueprint ("CAST(code AS INT)") is code.
        return double and len(content) >= 6 and not content.isalnum() and content in self._code

    # ------------------------------------------------------------------ structured values

    def data(self, value: Any, *, data_literals: bool = False, data_values: Iterable[str] = ()) -> Any:
        values = list(data_values)
        if isinstance(value, str):
            return self.text(value, data_literals=data_literals, data_values=values)
        if isinstance(value, Mapping):
            return {k: self.data(v, data_literals=data_literals, data_values=values) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v, data_literals=data_literals, data_values=values) for v in value]
        return value

    def error(self, error: Mapping[str, Any]) -> dict[str, Any]:
        """A structured Spark error (SparkErrorInfo.to_dict or the healer's facts), redacted.

        Data-class errors lose their data values in every field; the parameters that hold
        data are replaced whole, keeping their quotes so the healer still sees their shape.
        """
        data_error = is_data_error(error)
        values = data_parameter_values(error)
        redacted = self.data(dict(error), data_literals=data_error, data_values=values)
        for key in ("message_parameters", "parameters"):
            parameters = error.get(key)
            if not data_error or not isinstance(parameters, Mapping):
                continue
            redacted[key] = {
                k: self.text(str(v)) if k in _CODE_PARAMETERS else _placeholder_like(str(v))
                for k, v in parameters.items()
            }
        return redacted

    def error_text(self, text: str, error: Mapping[str, Any]) -> str:
        """Free text about `error` (an exception message), redacted as `error` says."""
        return self.text(text, data_literals=is_data_error(error), data_values=data_parameter_values(error))

    def leaks(self, text: str, extra: Iterable[str] = ()) -> list[str]:
        """Secrets (in any spelling) and `extra` strings still present in `text`: for tests and audits."""
        found = [name for name, pattern in self._secrets if pattern.search(text)]
        return found + [item for item in extra if item and item in text]


def _placeholder_like(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return f"{value[0]}{LITERAL}{value[0]}"
    return LITERAL


def redact_outbound(payload: Any, redactor: Redactor) -> Any:
    """A JSON-able copy of `payload` (webhook bodies, API payloads), redacted: for every new sink."""
    return redactor.data(json.loads(json.dumps(payload, default=str)))


# ----------------------------------------------------------------------------- console logs

class RedactingLogFilter(logging.Filter):
    """Rewrites each record's message through every live Redactor of this process."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(self.redactors)
        if not redactors:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the logging module's to report
            return True
        for redactor in redactors:
            message = redactor.text(message)
        record.msg, record.args = message, None
        if record.exc_info and record.exc_info[1] is not None:
            # The traceback text is formatted later from exc_info: keep a redacted copy instead.
            record.exc_text = redactors[0].text(logging.Formatter().formatException(record.exc_info))
            for redactor in redactors[1:]:
                record.exc_text = redactor.text(record.exc_text)
            record.exc_info = None
        return True


_LOG_FILTER = RedactingLogFilter()


def install_log_redaction(redactor: Redactor) -> None:
    """Route every log record of this process through `redactor` (for as long as it is alive).

    The choke point is the record factory, not a filter per logger: a logger's filters see
    only records logged on it, and third-party loggers (pyspark's Connect client logs a gRPC
    error with the path it could not read) or loggers created later would slip past.
    """
    global _FACTORY_INSTALLED
    _LOG_FILTER.redactors.add(redactor)
    if _FACTORY_INSTALLED:
        return
    previous = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _LOG_FILTER.filter(record)
        return record

    logging.setLogRecordFactory(redacting_factory)
    _FACTORY_INSTALLED = True


_FACTORY_INSTALLED = False
