"""Blueprint lifecycle hooks (`hooks:`) and aqueduct.yml `webhooks:`, delivered.

Two kinds of event reach them:

- a Blueprint run ends: `on_success` / `on_failure`, run by one run status sensor per status
  (`aqueduct_hooks_on_success`, `aqueduct_hooks_on_failure`): once per run, whoever launched
  it (the daemon, a schedule, the UI), after the run's outcome is final;
- a heal stages a patch for review, applies one (auto-apply or approval), a reviewer rejects
  one, or a heal defers to a person: the heal, approve and reject jobs announce it.

Per event the operator's endpoints (aqueduct.yml `webhooks:`) are called first, each on its
own; then the Blueprint's hooks in order, and the first that fails stops the rest of that
event's hooks. Failures are warnings, never errors: a hook never changes a run's outcome.
Every body passes the Blueprint's Redactor (dagster/webhooks.py `post`).

In a sensor the hooks run inside the tick, which Dagster gives 60 s by default and which
handles up to five runs: each event gets HOOK_SECONDS for all its requests and commands, and
what is left when they are spent is skipped with a warning.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.blueprint.models import HookEntry
from aqueduct_dagster.blueprint.suggest import did_you_mean
from aqueduct_dagster.config import AqueductConfig, WebhookSettings
from aqueduct_dagster.dagster.assets import ERROR_METADATA_KEY
from aqueduct_dagster.dagster.tags import BLUEPRINT_TAG, is_blueprint_run
from aqueduct_dagster.dagster.translator import safe_name
from aqueduct_dagster.dagster.webhooks import Webhook, fill, payload, post
from aqueduct_dagster.engine.errors import FailureRecord
from aqueduct_dagster.errors import AqueductError
from aqueduct_dagster.healing.redaction import Redactor
from aqueduct_dagster.settings import DEFAULT_SENSOR_INTERVAL, Settings, current_settings

LOG = logging.getLogger(__name__)

#: The Blueprints a chained run descends from, comma-separated: a chain never revisits one.
HOOK_CHAIN_TAG = "aqueduct/hook_chain"
#: The run whose hook launched this one.
HOOK_OF_TAG = "aqueduct/hook_of"
SUCCESS_SENSOR = "aqueduct_hooks_on_success"
FAILURE_SENSOR = "aqueduct_hooks_on_failure"
#: Seconds a sensor gives one event's hooks (five runs a tick must fit Dagster's 60 s).
HOOK_SECONDS = 10.0

#: Event -> the Blueprint hook list it runs; the others reach aqueduct.yml's endpoints only.
BLUEPRINT_HOOKS = {
    "run_succeeded": "on_success",
    "run_failed": "on_failure",
    "patch_staged": "on_patch_pending",
    "patch_applied": "on_healed",
}


class HookFailed(Exception):
    """One hook did not do its work; the event's remaining hooks are skipped."""


@dataclass(frozen=True)
class HookEvent:
    """What happened, as hooks see it.

    `variables` fill `${name}` in payload templates and commands (`run_id`, `blueprint_id`,
    `blueprint_name`, `failed_module`, `error_message`, `error_type`, `patch_id`, ... and
    the dotted `run.id`, `run.status`, `blueprint.id`); `labels` are the error names
    `when_error` matches.
    """

    name: str
    text: str
    variables: dict[str, str]
    labels: frozenset[str] = frozenset()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def blueprint_id(self) -> str:
        return self.variables.get("blueprint_id", "")

    def default_body(self) -> dict[str, Any]:
        return payload(self.text, blueprint=self.blueprint_id, run_id=self.variables.get("run_id") or None,
                       module=self.variables.get("failed_module", ""), event=self.name, **self.details)  # fmt: skip


@dataclass(frozen=True)
class HookSettings:
    """The operator's side, resolved once per event from aqueduct.yml."""

    endpoints: WebhookSettings = field(default_factory=WebhookSettings)
    allow_commands: bool = False
    #: A `time.monotonic()` instant after which nothing more is tried; None: no limit.
    deadline: float | None = None

    @classmethod
    def from_config(cls, config: AqueductConfig | None, *, seconds: float | None = None) -> HookSettings:
        deadline = None if seconds is None else time.monotonic() + seconds
        if config is None:
            return cls(deadline=deadline)
        return cls(config.webhooks, config.danger.allow_command_hooks, deadline)


def fire(event: HookEvent, entries: Sequence[HookEntry], redactor: Redactor, settings: HookSettings, *,
         chain: Callable[[HookEntry], Any] | None = None, log: Any = LOG) -> list[Any]:  # fmt: skip
    """Call the operator's endpoints for `event`, then run `entries` in order.

    `chain` turns a `blueprint:` entry into what launches it (a sensor's RunRequest); the
    list of those is returned. Without `chain`, such entries are skipped with a warning.
    Never raises.
    """
    for endpoint in settings.endpoints.endpoints(event.name):
        try:
            _webhook(Webhook.parse(endpoint.model_dump()), event, redactor, settings)
        except Exception as error:  # noqa: BLE001 - one operator endpoint never stops another
            log.warning(redactor.text(f"aqueduct.yml webhooks.{event.name}: {error}"))
    kind = BLUEPRINT_HOOKS.get(event.name)
    chained: list[Any] = []
    for index, entry in enumerate(entries):
        where = f"Blueprint '{event.blueprint_id}' hooks.{kind}[{index}] ({entry.action})"
        if entry.when_error and not event.labels & set(entry.when_error):
            continue
        if entry.action is None:
            log.warning(f"{where} skipped: it names no blueprint:, webhook: or command:")
            continue
        if entry.command and not settings.allow_commands:
            log.warning(f"{where} skipped: command hooks run only with danger.allow_command_hooks: true "
                        "in aqueduct.yml")  # fmt: skip
            continue
        if entry.blueprint and chain is None:
            log.warning(f"{where} skipped: a Blueprint is chained from on_success and on_failure only")
            continue
        try:
            if _seconds_left(settings.deadline) <= 0:
                raise HookFailed(f"no time left ({HOOK_SECONDS:g} s per event)")
            if entry.webhook:
                _webhook(Webhook.parse(entry.webhook), event, redactor, settings)
            elif entry.blueprint:
                chained.append(chain(entry))
            else:
                _command(entry, event, redactor, settings)
        except Exception as error:  # noqa: BLE001 - a failing hook is a warning, whatever failed
            problem = error if isinstance(error, HookFailed) else f"{type(error).__name__}: {error}"
            log.warning(redactor.text(f"{where} failed: {problem}; the remaining {kind} hooks are skipped"))
            break
    return chained


def _webhook(hook: Webhook | None, event: HookEvent, redactor: Redactor, settings: HookSettings) -> None:
    if hook is None:
        raise HookFailed("the webhook has no url")
    hook = hook.bound(event.variables)
    if not post(hook, hook.body(event.default_body()), redactor, deadline=settings.deadline):
        raise HookFailed(f"{redactor.text(hook.url)} was not reached (see the warning above)")


def _command(entry: HookEntry, event: HookEvent, redactor: Redactor, settings: HookSettings) -> None:
    """The command's words filled one by one (a value never becomes two arguments), no shell."""
    argv = [fill(word, event.variables) for word in shlex.split(entry.command or "")]
    if not argv:
        raise HookFailed("the command is empty")
    timeout = min(float(entry.timeout), _seconds_left(settings.deadline))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603 - operator-allowed
    except subprocess.TimeoutExpired:
        raise HookFailed(f"'{argv[0]}' ran past {timeout:g} s and was stopped") from None
    except OSError as error:
        raise HookFailed(f"'{argv[0]}' could not start: {error}") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout or "").strip()[-500:]
        raise HookFailed(redactor.text(f"'{argv[0]}' exited {done.returncode}: {said}"))


def _seconds_left(deadline: float | None) -> float:
    return float("inf") if deadline is None else deadline - time.monotonic()


def _labels(error: Mapping[str, Any], failed_rules: Sequence[Mapping[str, Any]] = ()) -> frozenset[str]:
    """The names `when_error` matches: condition (and its class), exception class, rule error types."""
    condition = str(error.get("condition") or "")
    labels = {condition, condition.split(".")[0], str(error.get("exception_class") or "").rsplit(".", 1)[-1]}
    labels.update(str(rule["error_type"]) for rule in failed_rules if rule.get("error_type"))
    return frozenset(label for label in labels if label)


def _config(log: Any) -> AqueductConfig | None:
    """aqueduct.yml as the process's settings read it; None (with a warning) when it is broken."""
    try:
        return current_settings().config
    except AqueductError as error:
        log.warning(f"aqueduct.yml could not be read ({error.message}): its webhooks are not sent, "
                    "command hooks are skipped")  # fmt: skip
        return None


# --------------------------------------------------------------------------- run events (sensors)


def run_event(manifest: Manifest, run: dg.DagsterRun, instance: dg.DagsterInstance, *, succeeded: bool) -> HookEvent:
    """A finished Blueprint run as a hook event; a failure names its module and error."""
    record = instance.get_run_record_by_id(run.run_id)
    start = record.start_time if record is not None else None
    variables = {
        "run_id": run.run_id, "run.id": run.run_id, "blueprint_id": manifest.blueprint_id,
        "blueprint.id": manifest.blueprint_id, "blueprint_name": manifest.name,
        "run.status": "success" if succeeded else "failure", "module_count": str(len(manifest.modules)),
        "started_at": datetime.fromtimestamp(start, UTC).isoformat() if start else "",
    }  # fmt: skip
    if succeeded:
        text = f"Aqueduct: Blueprint '{manifest.blueprint_id}' run {run.run_id} succeeded"
        return HookEvent("run_succeeded", text, variables, details={"status": "success"})
    failures = _failures(instance, run.run_id)
    first = failures[0] if failures else None
    error = first.error if first is not None else None
    message = (first.message or error.message) if first is not None else "the run failed"
    variables.update({
        "failed_module": first.module_id if first else "", "module_id": first.module_id if first else "",
        "error_message": message, "error_type": error.exception_class.rsplit(".", 1)[-1] if error else "",
        "attempt": str(len(failures)),
    })  # fmt: skip
    where = f" in module '{first.module_id}'" if first else ""
    text = f"Aqueduct: Blueprint '{manifest.blueprint_id}' run {run.run_id} failed{where}: {message}"
    labels = _labels(error.model_dump(), first.failed_rules) if first is not None else frozenset()
    return HookEvent("run_failed", text, variables, labels, {"status": "failure", "message": message})


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[FailureRecord]:
    """The failures the run's steps recorded (already redacted by the step), in order."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        user = getattr(entry.dagster_event.event_specific_data, "user_failure_data", None)
        metadata = (user.metadata if user is not None else None) or {}
        if ERROR_METADATA_KEY in metadata:
            found.append(FailureRecord.from_json(metadata[ERROR_METADATA_KEY].value))
    return found


def build_hook_sensors(manifests: Sequence[Manifest], jobs: Sequence[dg.JobDefinition],
                       settings: Settings | None = None) -> list[dg.SensorDefinition]:  # fmt: skip
    """A run status sensor per status that has something to call: a Blueprint's hooks or an
    aqueduct.yml endpoint (then every Blueprint job is watched). The endpoints themselves are
    read when a run ends, as the heal job reads them."""
    config = settings.config if settings is not None else _config(LOG)
    endpoints = (config or AqueductConfig()).webhooks
    interval = settings.sensor_interval if settings is not None else DEFAULT_SENSOR_INTERVAL
    jobs_by_name = {job.name: job for job in jobs}
    by_id = {manifest.blueprint_id: manifest for manifest in manifests}
    sensors = []
    for event, status, name in (("run_succeeded", dg.DagsterRunStatus.SUCCESS, SUCCESS_SENSOR),
                                ("run_failed", dg.DagsterRunStatus.FAILURE, FAILURE_SENSOR)):  # fmt: skip
        kind = BLUEPRINT_HOOKS[event]
        hooked = [m for m in manifests if getattr(m.hooks, kind)]
        watched = list(manifests) if endpoints.endpoints(event) else hooked
        monitored = [jobs_by_name[safe_name(m.blueprint_id)] for m in watched if safe_name(m.blueprint_id) in jobs_by_name]
        if not monitored:
            continue
        targets = {}
        for manifest in hooked:
            for entry in getattr(manifest.hooks, kind):
                target = chained_blueprint(entry.blueprint, manifest, by_id) if entry.blueprint else None
                if target is not None and safe_name(target.blueprint_id) in jobs_by_name:
                    targets[target.blueprint_id] = jobs_by_name[safe_name(target.blueprint_id)]
                elif entry.blueprint:
                    LOG.warning(f"Blueprint '{manifest.blueprint_id}' hooks.{kind} chains '{entry.blueprint}': "
                                "no Blueprint of this code location by that id or file"
                                + did_you_mean(entry.blueprint, by_id))  # fmt: skip
        sensors.append(_run_hook_sensor(name, status, event, monitored, targets, by_id, interval))
    return sensors


def chained_blueprint(reference: str, source: Manifest, by_id: Mapping[str, Manifest]) -> Manifest | None:
    """The Blueprint a `blueprint:` entry names: its id, or its file (relative to the hooking
    Blueprint's folder or the working folder, as the peer's paths are)."""
    if reference in by_id:
        return by_id[reference]
    folder = Path(source.source_path).parent
    candidates = {(folder / reference).resolve(), Path(reference).resolve()}
    for manifest in by_id.values():
        if manifest.source_path and Path(manifest.source_path).resolve() in candidates:
            return manifest
    return None


def _run_hook_sensor(name: str, status: dg.DagsterRunStatus, event: str, monitored: Sequence[dg.JobDefinition],
                     targets: Mapping[str, dg.JobDefinition], by_id: Mapping[str, Manifest],
                     interval: int) -> dg.SensorDefinition:  # fmt: skip
    kind = BLUEPRINT_HOOKS[event]
    monitored_names = {job.name for job in monitored}

    @dg.run_status_sensor(
        run_status=status,
        name=name,
        # Runs of every origin, filtered below (`aqueduct run` makes runs with no code-location
        # origin, which monitored_jobs would never match).
        monitor_all_code_locations=True,
        request_jobs=list(targets.values()) or None,
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Runs the Blueprints' hooks.{kind} and aqueduct.yml webhooks.{event} once per finished run",
    )
    def run_hooks(context: dg.RunStatusSensorContext):
        run = context.dagster_run
        manifest = by_id.get(run.tags.get(BLUEPRINT_TAG, ""))
        if manifest is None or not is_blueprint_run(run, monitored_names):
            return dg.SkipReason(f"run {run.run_id} is not a run of a Blueprint of this code location")
        try:
            redactor = Redactor.for_manifest(manifest)
        except AqueductError as error:  # a secret too short to redact: nothing leaves unredacted
            context.log.warning(f"hooks of '{manifest.blueprint_id}' not run: {error.message}")
            return dg.SkipReason("no Redactor for the Blueprint")
        try:
            found = run_event(manifest, run, context.instance, succeeded=status == dg.DagsterRunStatus.SUCCESS)
            settings = HookSettings.from_config(_config(context.log), seconds=HOOK_SECONDS)
            entries = getattr(manifest.hooks, kind)
            requests = fire(found, entries, redactor, settings, log=context.log,
                            chain=lambda entry: _chain_request(entry, manifest, run, event, targets, by_id))  # fmt: skip
        except Exception as error:  # noqa: BLE001 - a raising sensor would re-run this run's hooks next tick
            context.log.warning(redactor.text(f"hooks of run {run.run_id} stopped: {type(error).__name__}: {error}"))
            return dg.SkipReason("the hooks stopped on an error (see the tick's log)")
        return requests or dg.SkipReason(f"hooks of run {run.run_id} done, no Blueprint chained")

    return run_hooks


def _chain_request(entry: HookEntry, source: Manifest, run: dg.DagsterRun, event: str,
                   targets: Mapping[str, dg.JobDefinition], by_id: Mapping[str, Manifest]) -> dg.RunRequest:  # fmt: skip
    """A run of the chained Blueprint's job, for the daemon to launch; refused when it would
    start a Blueprint its own chain already ran (a cycle)."""
    target = chained_blueprint(entry.blueprint or "", source, by_id)
    if target is None or target.blueprint_id not in targets:
        raise HookFailed(f"no Blueprint of this code location by the id or file '{entry.blueprint}'"
                         + did_you_mean(entry.blueprint or "", by_id))  # fmt: skip
    chain = [bp for bp in run.tags.get(HOOK_CHAIN_TAG, "").split(",") if bp] + [source.blueprint_id]
    if target.blueprint_id in chain:
        raise HookFailed(f"chaining '{target.blueprint_id}' again would loop: {' -> '.join(chain)}")
    job = targets[target.blueprint_id]
    partition = run.tags.get("dagster/partition") if job.partitions_def is not None else None
    if job.partitions_def is not None and partition is None:
        raise HookFailed(f"'{target.blueprint_id}' is partitioned and run {run.run_id} has no partition to pass on")
    return dg.RunRequest(
        run_key=f"{event}:{run.run_id}:{target.blueprint_id}", job_name=job.name, partition_key=partition,
        tags={HOOK_CHAIN_TAG: ",".join(chain), HOOK_OF_TAG: run.run_id},
    )  # fmt: skip


# --------------------------------------------------------------------------- heal events (jobs)


def announce_heal(outcome: Any, package: Any, manifest: Manifest, config: AqueductConfig | None, log: Any) -> None:
    """A heal's outcome to its listeners: staged (or on a review branch), applied, or deferred.

    Never raises: the heal is done, telling about it must not fail it.
    """
    try:
        _announce_heal(outcome, package, manifest, config, log)
    except Exception as error:  # noqa: BLE001
        log.warning(package.redactor.text(f"heal {package.heal_id} not announced: {type(error).__name__}: {error}"))


def _announce_heal(outcome: Any, package: Any, manifest: Manifest, config: AqueductConfig | None, log: Any) -> None:
    if outcome.status == "applied":
        event = "patch_applied"
    elif outcome.status == "deferred":
        event = "heal_deferred"
    elif outcome.pending_path is not None or outcome.status == "branch":
        event = "patch_staged"
    else:
        return
    facts = {
        "heal_id": package.heal_id, "run_id": package.run_id, "blueprint_id": package.blueprint_id,
        "failed_module": package.failed_module, "error": package.error.model_dump(),
        "failed_rules": package.failed_rules, "branch": outcome.branch,
    }  # fmt: skip
    patch = outcome.patch.model_dump(mode="json") if outcome.patch is not None else {}
    revision = outcome.revision.number if outcome.revision is not None else None
    _announce(event, facts, patch, outcome.message, manifest, package.redactor, config, log, revision=revision)


def announce_review(event: str, record: Mapping[str, Any], message: str, log: Any, *,
                    revision: int | None = None) -> None:  # fmt: skip
    """A reviewer's decision on a staged patch (its pending record): patch_applied or patch_rejected."""
    try:
        from aqueduct_dagster.blueprint import compile_blueprint

        root = Path(str(record.get("root_path") or record.get("blueprint_path") or ""))
        try:
            manifest = compile_blueprint(root)  # the revision just written, for its hooks
            redactor = Redactor.for_manifest(manifest)
        except AqueductError as error:
            log.warning(f"{root.name}: its hooks are not run ({error.message}); aqueduct.yml's webhooks are")
            manifest = None
            redactor = Redactor.for_blueprint(root.read_text(encoding="utf-8") if root.is_file() else "")
        _announce(event, record, record.get("patch") or {}, message, manifest, redactor, _config(log), log,
                  revision=revision)  # fmt: skip
    except Exception as error:  # noqa: BLE001 - the decision is made; telling about it must not undo it
        log.warning(f"{event} of patch {record.get('patch', {}).get('patch_id')} not announced: "
                    f"{type(error).__name__}: {error}")  # fmt: skip


def _announce(event: str, facts: Mapping[str, Any], patch: Mapping[str, Any], message: str,
              manifest: Manifest | None, redactor: Redactor, config: AqueductConfig | None, log: Any, *,
              revision: int | None = None) -> None:  # fmt: skip
    blueprint_id = str(facts.get("blueprint_id") or (manifest.blueprint_id if manifest else ""))
    error = facts.get("error") or {}
    patch_id = str(patch.get("patch_id") or "")
    confidence = patch.get("confidence")
    variables = {
        "run_id": str(facts.get("run_id") or ""), "run.id": str(facts.get("run_id") or ""),
        "blueprint_id": blueprint_id, "blueprint.id": blueprint_id,
        "blueprint_name": manifest.name if manifest is not None else blueprint_id,
        "failed_module": str(facts.get("failed_module") or ""), "module_id": str(facts.get("failed_module") or ""),
        "error_message": str(error.get("message") or ""),
        "error_type": str(error.get("exception_class") or "").rsplit(".", 1)[-1],
        "patch_id": patch_id, "root_cause": str(patch.get("root_cause") or ""),
        "rationale": str(patch.get("rationale") or ""), "category": str(patch.get("category") or ""),
        "confidence": "n/a" if confidence is None else str(confidence),
    }  # fmt: skip
    said = {
        "patch_staged": f"patch {patch_id} for Blueprint '{blueprint_id}' waits for review",
        "patch_applied": f"patch {patch_id} applied to Blueprint '{blueprint_id}'",
        "patch_rejected": f"patch {patch_id} for Blueprint '{blueprint_id}' was rejected",
        "heal_deferred": f"the heal of Blueprint '{blueprint_id}' deferred to a person",
    }[event]
    details = {"patch_id": patch_id or None, "heal_id": facts.get("heal_id"), "message": message,
               "revision": revision, "branch": facts.get("branch")}  # fmt: skip
    found = HookEvent(event, f"Aqueduct: {said}: {message}", variables,
                      _labels(error, facts.get("failed_rules") or ()),
                      {key: value for key, value in details.items() if value is not None})  # fmt: skip
    kind = BLUEPRINT_HOOKS.get(event)
    entries = getattr(manifest.hooks, kind) if manifest is not None and kind else []
    fire(found, entries, redactor, HookSettings.from_config(config), log=log)
