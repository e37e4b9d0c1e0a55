"""Webhooks delivered: `on_failure_webhook` and Assert `on_fail: webhook`, to a real local server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.webhooks import Webhook, post
from aqueduct_dagster.healing.redaction import Redactor

SECRET = "Zq8vT3kPw9LmX2rB"

FAILING = """\
aqueduct: "1.0"
id: hooked
name: Hooked
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{missing}/@aq.secret('AQ_WEBHOOK_TEST_KEY')/orders.csv", header: true}}
    on_failure_webhook: {hook}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}", mode: overwrite}}
edges:
  - {{from: raw, to: out}}
"""

CHECKED = """\
aqueduct: "1.0"
id: checked
name: Checked
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}", header: true}}
  - id: quality
    type: Assert
    config:
      rules:
        - {{type: min_rows, min: 1}}
        - {{type: min_rows, id: enough_rows, min: 1000, on_fail: {{action: webhook, url: "{url}"}}}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}", mode: overwrite}}
edges:
  - {{from: raw, to: quality}}
  - {{from: quality, to: out}}
"""


class Recorder:
    """A local HTTP server that records each request's body (and method, path and headers in
    `requests`) and answers from `statuses` (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.requests: list[dict] = []
        self.statuses = list(statuses or [])
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                recorder.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                          "raw": raw})  # fmt: skip
                recorder.bodies.append(json.loads(raw))
                self.send_response(recorder.statuses.pop(0) if recorder.statuses else 200)
                self.end_headers()

            do_PUT = do_PATCH = do_POST  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.bodies

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


def _run(folder, job: str) -> dg.ExecuteInProcessResult:
    return build_definitions(folder).resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def _failing(tmp_path, monkeypatch, hook: str):
    monkeypatch.setenv("AQ_WEBHOOK_TEST_KEY", SECRET)
    folder = tmp_path / "blueprints"
    folder.mkdir()
    (folder / "hooked.yml").write_text(FAILING.format(missing=tmp_path / "missing", hook=hook, out=tmp_path / "out"))
    return folder


def _webhook_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aqueduct-webhook" and t.is_alive()]


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_module_failure_posts_one_redacted_notice(spark, tmp_path, monkeypatch, recorder):
    folder = _failing(tmp_path, monkeypatch, json.dumps(recorder.url))

    result = _run(folder, "hooked")

    assert not result.success
    bodies = recorder.wait_for(1)
    time.sleep(0.3)  # a second (unwanted) POST would land by now
    assert len(bodies) == 1
    body = bodies[0]
    assert body["aqueduct"]["module"] == "raw"
    assert body["aqueduct"]["event"] == "module_failed"
    assert body["aqueduct"]["blueprint"] == "hooked"
    assert body["aqueduct"]["run_id"] == result.run_id
    assert "raw" in body["text"]
    text = json.dumps(body)
    assert SECRET not in text and SECRET.lower() not in text
    assert "<secret:AQ_WEBHOOK_TEST_KEY>" in text  # the failure named the path; its secret was redacted


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_failed_webhook_rule_posts_one_notice_naming_it(spark, tmp_path, recorder):
    data = tmp_path / "orders.csv"
    data.write_text("order_id,amount\n1,10\n2,20\n")
    folder = tmp_path / "blueprints"
    folder.mkdir()
    (folder / "checked.yml").write_text(CHECKED.format(data=data, url=recorder.url, out=tmp_path / "out"))

    result = _run(folder, "checked")

    assert result.success  # a webhook rule reports; it does not block
    bodies = recorder.wait_for(1)
    time.sleep(0.3)
    assert len(bodies) == 1
    body = bodies[0]
    assert body["aqueduct"]["event"] == "assert_failed"
    assert body["aqueduct"]["module"] == "quality"
    assert body["aqueduct"]["rule"] == "enough_rows"
    assert "enough_rows" in body["text"]


def test_delivery_retries_server_errors_with_backoff():
    server = Recorder(statuses=[500, 500])
    try:
        delivered = post(Webhook(server.url, timeout=2), {"text": "hello"}, Redactor.for_blueprint(""), backoff=0.01)
    finally:
        server.close()
    assert delivered
    assert [b["text"] for b in server.bodies] == ["hello"] * 3


def test_delivery_gives_up_after_three_tries_without_raising():
    server = Recorder(statuses=[500, 500, 500, 500])
    try:
        delivered = post(Webhook(server.url, timeout=2), {"text": "hello"}, Redactor.for_blueprint(""), backoff=0.01)
    finally:
        server.close()
    assert not delivered
    assert len(server.bodies) == 3


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
def test_unreachable_webhook_neither_fails_nor_blocks_the_run(spark, tmp_path, monkeypatch):
    # A port that accepts connections and never answers: each try waits out its timeout.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(8)
    hook = json.dumps({"url": f"http://127.0.0.1:{blackhole.getsockname()[1]}/hook", "timeout": 1})
    try:
        folder = _failing(tmp_path, monkeypatch, hook)
        result = _run(folder, "hooked")
        pending = _webhook_threads()

        # The run fails exactly as it would without the webhook: the Ingress step, nothing else.
        assert not result.success
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert len(failed) == 1 and "raw" in failed[0]
        # ...and it returned while the delivery was still waiting on the silent server.
        assert pending
        for thread in pending:
            thread.join(timeout=15)
        assert not _webhook_threads()
    finally:
        blackhole.close()


def test_endpoint_sends_its_method_template_revealed_headers_and_signature(monkeypatch):
    monkeypatch.setenv("AQ_WEBHOOK_HEADER_TOKEN", SECRET)
    monkeypatch.setenv("AQ_WEBHOOK_SIGNING_KEY", "k" * 20)
    server = Recorder()
    try:
        hook = Webhook.parse({
            "url": server.url, "method": "put", "headers": {"X-Token": "${AQ_WEBHOOK_HEADER_TOKEN}"},
            "payload": {"text": "run ${run_id} of ${blueprint_id}: ${error_message}", "kept": "${unknown}"},
            "secret": "${AQ_WEBHOOK_SIGNING_KEY}", "max_retries": 0,
        })  # fmt: skip
        variables = {"run_id": "r1", "blueprint_id": "orders", "error_message": f"bad path /x/{SECRET}/y"}
        bound = hook.bound(variables)
        delivered = post(bound, bound.body({"text": "default"}), Redactor({"AQ_WEBHOOK_HEADER_TOKEN": SECRET}))
    finally:
        server.close()
    assert delivered
    (request,) = server.requests
    assert request["method"] == "PUT"
    assert request["headers"]["X-Token"] == SECRET  # revealed for the request only...
    body = server.bodies[0]
    assert body == {"text": "run r1 of orders: bad path /x/<secret:AQ_WEBHOOK_HEADER_TOKEN>/y", "kept": "${unknown}"}
    digest = hmac.new(b"k" * 20, request["raw"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Aqueduct-Signature"] == f"sha256={digest}"


def test_a_deadline_cuts_the_tries_short():
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(8)
    try:
        hook = Webhook(f"http://127.0.0.1:{blackhole.getsockname()[1]}/hook", timeout=5)
        started = time.monotonic()
        delivered = post(hook, {"text": "x"}, Redactor({}), deadline=time.monotonic() + 1)
        took = time.monotonic() - started
    finally:
        blackhole.close()
    assert not delivered
    assert took < 2.5  # unbounded: three tries of 5 s each
