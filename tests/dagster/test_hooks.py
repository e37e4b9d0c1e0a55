"""Blueprint lifecycle hooks and aqueduct.yml webhooks, delivered to a real local HTTP server.

Run hooks go through the real run status sensors, evaluated against the instance the runs
were recorded in, as the daemon evaluates them; heal hooks through the real heal and approve
jobs.
"""

from __future__ import annotations

import json
import socket
import sys

import dagster as dg
import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.blueprint.models import HookEntry
from aqueduct_dagster.config import load_config
from aqueduct_dagster.dagster import build_definitions
from aqueduct_dagster.dagster.healing import PENDING_PATCHES, approve_patch_job, aqueduct_heal_job
from aqueduct_dagster.dagster.hooks import (
    FAILURE_SENSOR,
    HOOK_CHAIN_TAG,
    SUCCESS_SENSOR,
    HookEvent,
    HookSettings,
    announce_review,
    fire,
)
from aqueduct_dagster.errors import BlueprintError, ConfigError
from aqueduct_dagster.healing.redaction import Redactor
from tests.dagster.test_webhooks import SECRET, Recorder

GOOD = """\
aqueduct: "1.0"
id: good
name: Good
hooks:
  on_success:
    - webhook: {{url: "{url}", payload: {{kind: success, run: "${{run_id}}", status: "${{run.status}}",
                 modules: "${{module_count}}", text: "${{blueprint_name}} done"}}}}
    - blueprint: after.yml
  on_failure:
    - webhook: {{url: "{url}", payload: {{kind: failure}}}}
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}", header: true}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}/good", mode: overwrite}}
edges:
  - {{from: raw, to: out}}
"""

AFTER = """\
aqueduct: "1.0"
id: after
name: After
hooks:
  on_success:
    - blueprint: good
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{data}", header: true}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}/after", mode: overwrite}}
edges:
  - {{from: raw, to: out}}
"""

BAD = """\
aqueduct: "1.0"
id: bad
name: Bad
hooks:
  on_success:
    - webhook: {{url: "{url}", payload: {{kind: success}}}}
  on_failure:
{on_failure}
modules:
  - id: raw
    type: Ingress
    config: {{format: csv, path: "{missing}/@aq.secret('AQ_HOOK_TEST_KEY')/orders.csv", header: true}}
  - id: out
    type: Egress
    config: {{format: parquet, path: "{out}/bad", mode: overwrite}}
edges:
  - {{from: raw, to: out}}
"""


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("AQ_HOOK_TEST_KEY", SECRET)
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    data = tmp_path / "orders.csv"
    data.write_text("order_id,amount\n1,10\n2,20\n")
    folder = tmp_path / "blueprints"
    folder.mkdir()
    return {"folder": folder, "data": data, "missing": tmp_path / "missing", "out": tmp_path / "out"}


def _refused_url() -> str:
    """A local port nobody listens on: each try is refused at once."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/hook"


class Sensors:
    """The code location's hook sensors, ticked against one instance as the daemon would."""

    def __init__(self, folder) -> None:
        self.definitions = build_definitions(folder)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursors: dict[str, str | None] = {}
        for name in (SUCCESS_SENSOR, FAILURE_SENSOR):
            self.tick(name)  # the first tick only places the cursor

    def run(self, job: str, tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
        return self.definitions.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=False, tags=tags
        )

    def tick(self, name: str):
        context = dg.build_sensor_context(
            instance=self.instance, repository_def=self.definitions.get_repository_def(), cursor=self.cursors.get(name)
        )
        data = self.definitions.resolve_sensor_def(name).evaluate_tick(context)
        self.cursors[name] = data.cursor
        return data


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
@pytest.mark.usefixtures("spark")
def test_each_run_fires_its_own_hooks_once_redacted_and_chains_the_next_blueprint(project, recorder):
    folder = project["folder"]
    on_failure = (
        f"    - webhook: {{url: \"{recorder.url}\", headers: {{Authorization: \"Bearer @aq.secret('AQ_HOOK_TEST_KEY')\"}}}}\n"
        f"    - webhook: {{url: \"{recorder.url}\", payload: {{kind: failure, module: \"${{failed_module}}\", "
        f"error: \"${{error_message}}\", type: \"${{error_type}}\"}}}}"
    )  # fmt: skip
    (folder / "good.yml").write_text(GOOD.format(url=recorder.url, data=project["data"], out=project["out"]))
    (folder / "after.yml").write_text(AFTER.format(data=project["data"], out=project["out"]))
    (folder / "bad.yml").write_text(BAD.format(url=recorder.url, on_failure=on_failure, missing=project["missing"],
                                               out=project["out"]))  # fmt: skip
    sensors = Sensors(folder)

    good = sensors.run("good")
    bad = sensors.run("bad")
    assert good.success and not bad.success

    succeeded = sensors.tick(SUCCESS_SENSOR)
    assert recorder.bodies == [{"kind": "success", "run": good.run_id, "status": "success", "modules": "2",
                                "text": "Good done"}]  # fmt: skip
    (request,) = succeeded.run_requests
    assert request.job_name == "after"
    assert request.tags[HOOK_CHAIN_TAG] == "good"

    sensors.tick(FAILURE_SENSOR)
    assert len(recorder.bodies) == 3
    default, templated = recorder.bodies[1:]
    assert default["aqueduct"]["event"] == "run_failed"
    assert default["aqueduct"]["run_id"] == bad.run_id
    assert default["aqueduct"]["module"] == "raw"
    assert "bad" in default["text"] and "raw" in default["text"]
    assert templated["kind"] == "failure" and templated["module"] == "raw" and templated["type"]
    assert "<secret:AQ_HOOK_TEST_KEY>" in templated["error"]  # the error named the path; its secret redacted
    assert recorder.requests[1]["headers"]["Authorization"] == f"Bearer {SECRET}"  # revealed for the request only
    for sent in recorder.requests:
        assert SECRET.encode() not in sent["raw"] and SECRET.lower().encode() not in sent["raw"]

    # Once per run: the next ticks find nothing new.
    assert not sensors.tick(SUCCESS_SENSOR).run_requests
    assert not sensors.tick(FAILURE_SENSOR).run_requests
    assert len(recorder.bodies) == 3

    # The chained run carries its chain: `after` chaining `good` again would loop, and is refused.
    chained = sensors.run("after", tags=request.tags)
    assert chained.success
    assert not sensors.tick(SUCCESS_SENSOR).run_requests
    assert len(recorder.bodies) == 3


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
@pytest.mark.usefixtures("spark")
def test_a_failing_hook_stops_the_rest_and_never_the_run_while_operator_webhooks_still_go(
    project, recorder, tmp_path, monkeypatch
):
    folder = project["folder"]
    on_failure = (
        f"    - webhook: {{url: \"{_refused_url()}\", max_retries: 0}}\n"
        f"    - webhook: {{url: \"{recorder.url}\", payload: {{kind: never}}}}\n"
        "    - blueprint: good"
    )
    (folder / "good.yml").write_text(GOOD.format(url=recorder.url, data=project["data"], out=project["out"]))
    (folder / "after.yml").write_text(AFTER.format(data=project["data"], out=project["out"]))
    (folder / "bad.yml").write_text(BAD.format(url=recorder.url, on_failure=on_failure, missing=project["missing"],
                                               out=project["out"]))  # fmt: skip
    config = tmp_path / "aqueduct.yml"
    config.write_text(f"webhooks:\n  on_failure:\n    url: {recorder.url}\n"
                      "    payload: {text: 'ops: ${blueprint_id} failed in ${failed_module}'}\n")  # fmt: skip
    monkeypatch.setenv("AQUEDUCT_CONFIG", str(config))
    sensors = Sensors(folder)

    bad = sensors.run("bad")
    data = sensors.tick(FAILURE_SENSOR)

    assert not bad.success
    assert sensors.instance.get_run_by_id(bad.run_id).status == dg.DagsterRunStatus.FAILURE
    assert recorder.bodies == [{"text": "ops: bad failed in raw"}]  # the operator's; no Blueprint hook after the failure
    assert not data.run_requests  # the chain after the failing hook is not started either


def test_command_hooks_run_only_when_the_operator_allows_them(tmp_path, recorder):
    written = tmp_path / "argv.json"
    script = f"import json, sys; open({str(written)!r}, 'w').write(json.dumps(sys.argv[1:]))"
    entries = [
        HookEntry(command=f"{sys.executable} -c {json.dumps(script)} ${{run.id}} ${{error_message}}"),
        HookEntry(webhook=recorder.url),
    ]
    event = HookEvent("run_failed", "failed", {"run.id": "r-1", "error_message": "two words; rm -rf /",
                                                "blueprint_id": "bad"})  # fmt: skip
    redactor = Redactor({})

    fire(event, entries, redactor, HookSettings())
    assert not written.exists()  # skipped with a warning; the next hook still runs
    assert len(recorder.bodies) == 1

    fire(event, entries, redactor, HookSettings(allow_commands=True))
    assert json.loads(written.read_text()) == ["r-1", "two words; rm -rf /"]  # one argument each, no shell
    assert len(recorder.bodies) == 2


def test_a_failing_command_stops_the_event_and_when_error_filters(tmp_path, recorder):
    entries = [
        HookEntry(webhook=recorder.url, when_error=["NotThisOne"]),
        HookEntry(command=f"{sys.executable} -c 'raise SystemExit(3)'"),
        HookEntry(webhook=recorder.url),
    ]
    event = HookEvent("run_failed", "failed", {"blueprint_id": "bad"}, frozenset({"AnalysisException"}))
    fire(event, entries, Redactor({}), HookSettings(allow_commands=True))
    assert recorder.bodies == []

    fire(event, [HookEntry(webhook=recorder.url, when_error=["AnalysisException"])], Redactor({}), HookSettings())
    assert len(recorder.bodies) == 1


@pytest.fixture
def healing_env(demo_project, tmp_path, monkeypatch, recorder):
    monkeypatch.setenv("AQUEDUCT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AQUEDUCT_PATCHES_DIR", str(tmp_path / "patches"))
    monkeypatch.setenv("AQUEDUCT_BLUEPRINTS_DIR", str(demo_project["blueprints"]))
    config = tmp_path / "aqueduct.yml"
    config.write_text(
        f"webhooks:\n  patch_staged: {recorder.url}\n  patch_applied: [{recorder.url}]\n"
        f"  heal_deferred: {recorder.url}\n"
    )
    monkeypatch.setenv("AQUEDUCT_CONFIG", str(config))
    path = demo_project["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace("agent:\n", f"""hooks:
  on_patch_pending:
    - webhook: {{url: "{recorder.url}", payload: {{hook: pending, patch: "${{patch_id}}", module: "${{failed_module}}"}}}}
  on_healed:
    - webhook: {{url: "{recorder.url}", payload: {{hook: healed, patch: "${{patch_id}}"}}}}

agent:
""", 1))  # fmt: skip
    return demo_project


@pytest.mark.spark
@pytest.mark.spark_kind("classic")
@pytest.mark.usefixtures("spark")
def test_staging_a_patch_and_approving_it_announce_both(healing_env, recorder):
    path = healing_env["blueprints"] / "orders_daily.yml"
    path.write_text(path.read_text().replace("SELECT order_id", "SELECT order_idd"))
    instance = dg.DagsterInstance.ephemeral()
    failed = build_definitions(healing_env["blueprints"]).resolve_job_def("orders_daily").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not failed.success

    summary = aqueduct_heal_job.execute_in_process(
        run_config={"ops": {"heal": {"config": {"run_id": failed.run_id}}}}, instance=instance
    ).output_for_node("heal")
    assert summary["status"] == "staged", summary
    patch_id = summary["patch_id"]
    operator, hook = recorder.bodies
    assert operator["aqueduct"]["event"] == "patch_staged"
    assert operator["aqueduct"]["patch_id"] == patch_id
    assert operator["aqueduct"]["run_id"] == failed.run_id
    assert patch_id in operator["text"]
    assert hook == {"hook": "pending", "patch": patch_id, "module": "clean_orders"}

    approve_patch_job.execute_in_process(instance=instance, partition_key=patch_id)
    assert instance.get_dynamic_partitions(PENDING_PATCHES.name) == []
    operator, hook = recorder.bodies[2:]
    assert operator["aqueduct"]["event"] == "patch_applied"
    assert operator["aqueduct"]["revision"] >= 1
    assert hook == {"hook": "healed", "patch": patch_id}


def test_a_rejected_patch_reaches_the_operator_endpoint(tmp_path, monkeypatch, recorder):
    monkeypatch.setenv("AQ_HOOK_TEST_KEY", SECRET)
    blueprint = tmp_path / "bad.yml"
    blueprint.write_text(BAD.format(url=recorder.url, on_failure="    - webhook: http://127.0.0.1:9/unused",
                                    missing=tmp_path, out=tmp_path))  # fmt: skip
    config = tmp_path / "aqueduct.yml"
    config.write_text(f"webhooks:\n  patch_rejected:\n    - url: {recorder.url}\n      method: PATCH\n")
    monkeypatch.setenv("AQUEDUCT_CONFIG", str(config))
    record = {"root_path": str(blueprint), "blueprint_id": "bad", "run_id": "r-9", "failed_module": "raw",
              "error": {"message": f"no such path /{SECRET}/x", "exception_class": "AnalysisException"},
              "patch": {"patch_id": "patch-1", "rationale": "fix the path"}}  # fmt: skip

    announce_review("patch_rejected", record, "not like this", dg.get_dagster_logger())

    (request,) = recorder.requests
    assert request["method"] == "PATCH"
    body = recorder.bodies[0]
    assert body["aqueduct"]["event"] == "patch_rejected"
    assert body["aqueduct"]["patch_id"] == "patch-1"
    assert "not like this" in body["text"]
    assert SECRET.encode() not in request["raw"]


def test_a_hook_with_two_actions_or_on_success_with_when_error_does_not_compile(tmp_path, project):
    base = AFTER.format(data=project["data"], out=project["out"])
    two = tmp_path / "two.yml"
    two.write_text(base.replace("    - blueprint: good", "    - {blueprint: good, webhook: 'http://x'}"))
    with pytest.raises(BlueprintError, match="exactly one of blueprint:, webhook:, command:"):
        compile_blueprint(two)
    filtered = tmp_path / "filtered.yml"
    filtered.write_text(base.replace("    - blueprint: good", "    - {blueprint: good, when_error: [X]}"))
    with pytest.raises(BlueprintError, match="on_success has none"):
        compile_blueprint(filtered)


def test_aqueduct_yml_webhooks_take_the_peer_names_and_refuse_typos(tmp_path):
    config = tmp_path / "aqueduct.yml"
    config.write_text("webhooks:\n  on_failure: http://a\n  on_defer: [http://b, {url: http://c, method: PUT}]\n"
                      "danger:\n  allow_command_hooks: true\n  allow_multi_patch: false\n")  # fmt: skip
    loaded = load_config(config)
    assert [e.url for e in loaded.webhooks.run_failed] == ["http://a"]
    assert [e.method for e in loaded.webhooks.endpoints("heal_deferred")] == ["POST", "PUT"]
    assert loaded.danger.allow_command_hooks
    config.write_text("webhooks:\n  patch_aplied: http://a\n")
    with pytest.raises(ConfigError, match="did you mean 'patch_applied'"):
        load_config(config)
