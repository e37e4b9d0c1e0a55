"""Webhooks delivered: a module's `on_failure_webhook` and Assert rules with `on_fail: webhook`.

Each notice is one HTTP request (POST unless the endpoint says PUT or PATCH) of a
Slack-compatible JSON body (`text`, plus an `aqueduct` object naming the Blueprint, run,
module and event), or of the endpoint's own `payload` template with `${run_id}`-style
variables filled in. Module and Assert notices go from a background thread so a run never
waits on them: a short timeout, three tries with exponential backoff, and every failure
logged, never raised. Every body passes the run's Redactor before it leaves the process;
`@aq.secret(...)` tokens and `${ENV_VAR}`s in the URL or headers are revealed only for the
request itself. Lifecycle hooks and aqueduct.yml `webhooks:` use the same delivery
(dagster/hooks.py).

The threads are not daemons: a step's process (Dagster runs steps in child processes) waits
for its deliveries before it exits, at most `attempts * timeout` plus the backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aqueduct_dagster.config import resolve_setting
from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.healing.redaction import Redactor, redact_outbound

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5
USER_AGENT = "aqueduct-dagster-webhook"
SIGNATURE_HEADER = "X-Aqueduct-Signature"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


@dataclass(frozen=True)
class Webhook:
    """Where a notice goes: a URL (tokens unrevealed), the method, extra headers, an optional
    payload template, a per-try timeout, the tries and their backoff, an HMAC signing key."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = TIMEOUT_SECONDS
    method: str = "POST"
    payload: Mapping[str, Any] | None = None
    attempts: int = ATTEMPTS
    backoff: float = BACKOFF_SECONDS
    secret: str | None = None

    @classmethod
    def parse(cls, value: Any) -> Webhook | None:
        """A URL, or `{url, method?, headers?, payload?, timeout?, max_retries?, backoff_seconds?,
        secret?}` (aqueduct.yml's endpoint model); None when there is no URL."""
        if isinstance(value, str):
            return cls(value) if value.strip() else None
        if not isinstance(value, Mapping) or not value.get("url"):
            return None
        headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
        retries = value.get("max_retries")
        return cls(
            str(value["url"]), headers, float(value.get("timeout") or TIMEOUT_SECONDS),
            method=str(value.get("method") or "POST").upper(),
            payload=value.get("payload") if isinstance(value.get("payload"), Mapping) else None,
            attempts=ATTEMPTS if retries is None else int(retries) + 1,
            backoff=float(value.get("backoff_seconds") or BACKOFF_SECONDS),
            secret=str(value["secret"]) if value.get("secret") else None,
        )  # fmt: skip

    def bound(self, variables: Mapping[str, Any]) -> Webhook:
        """This endpoint with `${name}` variables filled in its URL, headers and payload."""
        return replace(
            self, url=fill(self.url, variables), headers=fill(self.headers, variables),
            payload=None if self.payload is None else fill(self.payload, variables),
        )  # fmt: skip

    def body(self, default: Mapping[str, Any]) -> Mapping[str, Any]:
        """What is sent: the payload template when the endpoint has one, else `default`."""
        return default if self.payload is None else self.payload


def fill(template: Any, variables: Mapping[str, Any]) -> Any:
    """`template` (text, or dicts and lists of it) with each `${name}` of `variables` replaced.

    Other `${...}` stay as written: in a URL or header they may name an environment variable,
    read when the request is sent. One pass: a value that itself holds `${...}` is not re-read.
    """
    if isinstance(template, str):
        return _VARIABLE.sub(lambda m: str(variables[m[1]]) if m[1] in variables else m[0], template)
    if isinstance(template, Mapping):
        return {key: fill(value, variables) for key, value in template.items()}
    if isinstance(template, (list, tuple)):
        return [fill(value, variables) for value in template]
    return template


def _revealed(text: str) -> str:
    """`@aq.secret('NAME')` tokens and `${NAME}` environment references -> their values."""
    return str(resolve_setting(str(reveal_secrets(text))))


def payload(text: str, *, blueprint: str, run_id: str | None, module: str, event: str,
            **details: Any) -> dict[str, Any]:  # fmt: skip
    """A Slack-compatible body: `text` shows in Slack; `aqueduct` is for machine readers."""
    return {
        "text": text,
        "aqueduct": {"blueprint": blueprint, "run_id": run_id, "module": module, "event": event, **details},
    }


def post(hook: Webhook, body: Mapping[str, Any], redactor: Redactor, *, attempts: int | None = None,
         backoff: float | None = None, deadline: float | None = None) -> bool:  # fmt: skip
    """Send `body` (redacted) to `hook`, retrying with exponential backoff; True once delivered.

    Synchronous; `deliver` runs it in a thread. `deadline` (a `time.monotonic()` instant)
    cuts the tries and their timeouts short. Never raises: each failure is logged, redacted.
    """
    attempts = hook.attempts if attempts is None else attempts
    backoff = hook.backoff if backoff is None else backoff
    try:
        data = json.dumps(redact_outbound(dict(body), redactor)).encode("utf-8")
        url = _revealed(hook.url)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **{k: _revealed(v) for k, v in hook.headers.items()}}  # fmt: skip
        if hook.secret:
            digest = hmac.new(_revealed(hook.secret).encode("utf-8"), data, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
    except Exception as error:  # noqa: BLE001 - a notice must never fail the run
        log.warning("webhook %s not sent: %s", redactor.text(hook.url), redactor.text(str(error)))
        return False
    problem: Exception | str = "no time left to try"
    tried = 0
    for attempt in range(1, attempts + 1):
        left = _seconds_left(deadline)
        if left <= 0:
            break
        tried = attempt
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method=hook.method)
            with urllib.request.urlopen(request, timeout=min(hook.timeout, left)) as response:  # noqa: S310 - the owner's URL
                response.read()
            return True
        except Exception as error:  # noqa: BLE001 - HTTP errors, refused connections, timeouts alike
            problem = error
        pause = backoff * 2 ** (attempt - 1)
        if attempt < attempts and pause < _seconds_left(deadline):
            time.sleep(pause)
    log.warning("webhook %s failed after %d tries: %s", redactor.text(hook.url), tried,
                redactor.text(str(problem)))  # fmt: skip
    return False


def _seconds_left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()


def deliver(hook: Webhook, body: Mapping[str, Any], redactor: Redactor, **options: Any) -> threading.Thread:
    """`post` in a background thread, started; the caller never waits on it."""
    thread = threading.Thread(target=post, args=(hook, body, redactor), kwargs=options,
                              name="aqueduct-webhook", daemon=False)  # fmt: skip
    thread.start()
    return thread


def notify_module_failure(manifest: Any, module: Any, message: str, *, run_id: str | None,
                          redactor: Redactor) -> threading.Thread | None:  # fmt: skip
    """A failed module's notice to its `on_failure_webhook`, if it has one."""
    hook = Webhook.parse(getattr(module.spec, "on_failure_webhook", None))
    if hook is None:
        return None
    text = f"Aqueduct: module '{module.id}' of Blueprint '{manifest.blueprint_id}' failed: {message}"
    body = payload(text, blueprint=manifest.blueprint_id, run_id=run_id, module=module.id,
                   event="module_failed", message=message)  # fmt: skip
    variables = {"run_id": run_id or "", "blueprint_id": manifest.blueprint_id, "blueprint_name": manifest.name,
                 "module_id": module.id, "failed_module": module.id, "error_message": message}  # fmt: skip
    hook = hook.bound(variables)
    return deliver(hook, hook.body(body), redactor)


def notify_assert_failures(manifest: Any, check: Any, outcome: Any, *, run_id: str | None,
                           redactor: Redactor) -> list[threading.Thread]:  # fmt: skip
    """One notice per failed rule whose `on_fail` is `{action: webhook, url: ...}`."""
    urls = {}
    for rule in getattr(check.config, "rules", None) or []:
        on_fail = rule.on_fail
        if rule.action == "webhook" and not isinstance(on_fail, str) and on_fail is not None and on_fail.url:
            urls[rule.name] = on_fail.url
    threads = []
    for result in outcome.failed:
        if result.name not in urls:
            continue
        text = (f"Aqueduct: Assert '{check.id}' of Blueprint '{manifest.blueprint_id}': "
                f"rule {result.name} failed: {result.message}")  # fmt: skip
        body = payload(text, blueprint=manifest.blueprint_id, run_id=run_id, module=check.id,
                       event="assert_failed", rule=result.name, observed=result.observed,
                       expected=result.expected)  # fmt: skip
        threads.append(deliver(Webhook(urls[result.name]), body, redactor))
    return threads
