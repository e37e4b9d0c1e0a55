"""Webhooks delivered: a module's `on_failure_webhook` and Assert rules with `on_fail: webhook`.

Each notice is one HTTP POST of a Slack-compatible JSON body (`text`, plus an `aqueduct`
object naming the Blueprint, run, module and event), sent from a background thread so a run
never waits on it: a short timeout, three tries with exponential backoff, and every failure
logged, never raised. Every text passes the run's Redactor before it leaves the process;
`@aq.secret(...)` tokens in the URL or headers are revealed only for the request itself.

The threads are not daemons: a step's process (Dagster runs steps in child processes) waits
for its deliveries before it exits, at most `attempts * timeout` plus the backoff.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aqueduct_dagster.engine.secrets import reveal_secrets
from aqueduct_dagster.healing.redaction import Redactor, redact_outbound

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT_SECONDS = 5.0
BACKOFF_SECONDS = 0.5
USER_AGENT = "aqueduct-dagster-webhook"


@dataclass(frozen=True)
class Webhook:
    """Where a notice goes: a URL (tokens unrevealed), extra headers, a per-try timeout."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def parse(cls, value: Any) -> Webhook | None:
        """`on_failure_webhook: URL` or `{url, headers?, timeout?}`; None when there is no URL."""
        if isinstance(value, str):
            return cls(value) if value.strip() else None
        if isinstance(value, Mapping) and value.get("url"):
            headers = {str(k): str(v) for k, v in (value.get("headers") or {}).items()}
            return cls(str(value["url"]), headers, float(value.get("timeout") or TIMEOUT_SECONDS))
        return None


def payload(text: str, *, blueprint: str, run_id: str | None, module: str, event: str,
            **details: Any) -> dict[str, Any]:  # fmt: skip
    """A Slack-compatible body: `text` shows in Slack; `aqueduct` is for machine readers."""
    return {
        "text": text,
        "aqueduct": {"blueprint": blueprint, "run_id": run_id, "module": module, "event": event, **details},
    }


def post(hook: Webhook, body: Mapping[str, Any], redactor: Redactor, *, attempts: int = ATTEMPTS,
         backoff: float = BACKOFF_SECONDS) -> bool:  # fmt: skip
    """POST `body` (redacted) to `hook`, retrying with exponential backoff; True once delivered.

    Synchronous; `deliver` runs it in a thread. Never raises: each failure is logged, redacted.
    """
    try:
        data = json.dumps(redact_outbound(dict(body), redactor)).encode("utf-8")
        url = str(reveal_secrets(hook.url))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **{k: str(reveal_secrets(v)) for k, v in hook.headers.items()}}  # fmt: skip
    except Exception as error:  # noqa: BLE001 - a notice must never fail the run
        log.warning("webhook %s not sent: %s", redactor.text(hook.url), redactor.text(str(error)))
        return False
    for attempt in range(1, attempts + 1):
        try:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=hook.timeout) as response:  # noqa: S310 - Blueprint's URL
                response.read()
            return True
        except Exception as error:  # noqa: BLE001 - HTTP errors, refused connections, timeouts alike
            problem = error
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    log.warning("webhook %s failed after %d tries: %s", redactor.text(hook.url), attempts,
                redactor.text(str(problem)))  # fmt: skip
    return False


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
    return deliver(hook, body, redactor)


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
