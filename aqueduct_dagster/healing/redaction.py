"""Redaction: nothing secret and no data value leaves the process in a prompt or a store.

Three kinds of text are removed before a failure package is built:
- secret values the Blueprint references through `@aq.secret('NAME')` (and any value of an
  environment variable whose name looks like a credential) become `<secret:NAME>`;
- credentials in URLs and `key=value` pairs become `<redacted>`;
- string literals that come from *data* (error messages quote the offending value) become
  `'<literal>'`. Literals written in the Blueprint's own SQL are kept: they are code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_TOKEN = re.compile(r"@aq\.secret\(\s*['\"]([^'\"]+)['\"]\s*\)")
_CREDENTIAL_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@", re.I)
_KEY_VALUE = re.compile(
    r"(?P<key>(?<!<)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|apikey)\b\s*[=:]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&]+)",
    re.I,
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.I)
_QUOTED_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'")
_MIN_SECRET_LENGTH = 4


def secret_names(text: str) -> set[str]:
    return set(SECRET_TOKEN.findall(text or ""))


class Redactor:
    """Removes secret values, credentials and data literals from text and nested data."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted(
            ((name, value) for name, value in secrets.items() if value and len(value) >= _MIN_SECRET_LENGTH),
            key=lambda item: -len(item[1]),
        )

    @classmethod
    def for_blueprint(cls, blueprint_text: str, env: Mapping[str, str] | None = None) -> Redactor:
        env = os.environ if env is None else env
        names = secret_names(blueprint_text) | {k for k in env if _CREDENTIAL_NAME.search(k)}
        return cls({name: env[name] for name in names if name in env})

    def text(self, value: str, *, data_literals: bool = False) -> str:
        for name, secret in self._secrets:
            value = value.replace(secret, f"<secret:{name}>")
        value = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:<redacted>@", value)
        value = _KEY_VALUE.sub(lambda m: f"{m['key']}<redacted>", value)
        value = _BEARER.sub(r"\1<redacted>", value)
        if data_literals:
            value = _QUOTED_LITERAL.sub("'<literal>'", value)
        return value

    def data(self, value: Any, *, data_literals: bool = False) -> Any:
        if isinstance(value, str):
            return self.text(value, data_literals=data_literals)
        if isinstance(value, Mapping):
            return {k: self.data(v, data_literals=data_literals) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v, data_literals=data_literals) for v in value]
        return value

    def leaks(self, text: str, extra: Iterable[str] = ()) -> list[str]:
        """Secret values (and `extra` strings) still present in `text`: for tests and audits."""
        found = [name for name, secret in self._secrets if secret in text]
        return found + [item for item in extra if item and item in text]
