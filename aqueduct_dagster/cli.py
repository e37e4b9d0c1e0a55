"""The `aqueduct` command line: validate, compile, run, heal and review patches.

Every command runs inside one error boundary (`_Boundary.invoke`), so whatever goes wrong
ends in one line on stderr and one of these exit codes, never in a traceback:

0 success; 1 the work ran and failed (a failed run, heal or test); 2 bad input (an invalid
Blueprint or aqueduct.yml, a missing file, something asked for that does not exist, bad
options); 3 environment problem (DAGSTER_HOME, Java, Spark, a server); 4 internal error (a
bug: rerun with AQUEDUCT_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from aqueduct_dagster.errors import AqueductError, ConfigError, EngineError, EnvironmentProblem

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_ENVIRONMENT, EXIT_INTERNAL = 1, 2, 3, 4

_NOT_BLUEPRINTS = (".aqtest.yml", ".aqtest.yaml", ".aqscenario.yml", ".aqscenario.yaml")
#: A YAML file found in a folder is a Blueprint when it has one of these top-level keys.
_BLUEPRINT_KEY = re.compile(r"^(?:aqueduct|modules)\s*:", re.MULTILINE)


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error that ended a command."""
    if isinstance(error, (EnvironmentProblem,)) or type(error).__name__ == "DagsterHomeNotSetError":
        return EXIT_ENVIRONMENT
    if isinstance(error, EngineError):
        return EXIT_FAILED
    if isinstance(error, (AqueductError, ConfigError, OSError)):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def describe(error: BaseException) -> str:
    """One message for any error: project errors render themselves, others get a fix."""
    if isinstance(error, AqueductError):
        return str(error)
    if type(error).__name__ == "DagsterHomeNotSetError":
        return (
            "DAGSTER_HOME is not set, so there is no Dagster instance to read runs from or "
            "write heals to\n  hint: export DAGSTER_HOME=$PWD/.dagster_home (a folder holding "
            "dagster.yaml; `make dev` uses .dagster_home)"
        )
    if isinstance(error, OSError):
        name = error.filename if error.filename is not None else ""
        return f"{name}: {error.strerror or error}" if name else str(error)
    first = str(error).splitlines()[0] if str(error) else ""
    return (
        f"internal error: {type(error).__name__}: {first}\n"
        "  hint: this is a bug in aqueduct; rerun with AQUEDUCT_DEBUG=1 for the traceback"
    )


class _Boundary(click.Group):
    """Maps every error a command raises to a message and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.secho("interrupted", fg="red", err=True)
            sys.exit(130)
        except RecursionError as error:  # a bug: a limit should have caught the input first
            _report(error)
        except Exception as error:  # noqa: BLE001 - the boundary: one line, never a traceback
            _report(error)


def _report(error: BaseException) -> None:
    if os.environ.get("AQUEDUCT_DEBUG"):
        traceback.print_exception(error)
    click.secho(f"error: {describe(error)}", fg="red", err=True)
    sys.exit(exit_code_for(error))


def _context_overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--ctx")
        key, value = pair.split("=", 1)
        overrides[key] = value
    return overrides


def _echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def _dagster_instance():
    """The Dagster instance of DAGSTER_HOME; a clean environment error when there is none."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise EnvironmentProblem(
            "DAGSTER_HOME is not set, so there is no Dagster instance to read runs from or "
            "write heals to",
            hint="export DAGSTER_HOME=$PWD/.dagster_home (a folder holding dagster.yaml; "
            "`make dev` uses .dagster_home)",
        )
    if not Path(home).is_dir():
        raise EnvironmentProblem(
            f"DAGSTER_HOME={home} is not a folder", hint="create it and copy dagster.yaml there"
        )
    return dg.DagsterInstance.get()


@click.group(cls=_Boundary)
@click.version_option(package_name="aqueduct-dagster")
def main() -> None:
    """Self-healing declarative Spark pipelines on Dagster."""


# --------------------------------------------------------------------------- validate


def blueprint_files(path: Path) -> Iterator[tuple[Path, str | None]]:
    """(file, why it is skipped or None) for a file or, recursively, a folder of Blueprints.

    A named file is always checked. In a folder: *.yml / *.yaml files, except aqtest and
    aqscenario files, `aqueduct.*` configs, hidden folders and YAML without a top-level
    `aqueduct:` or `modules:` key (CI configs, data).
    """
    from aqueduct_dagster.blueprint.loader import MAX_DOCUMENT_BYTES

    if not path.is_dir():
        yield path, None
        return
    for file in sorted(p for pattern in ("*.yml", "*.yaml") for p in path.rglob(pattern)):
        relative = file.relative_to(path)
        if any(part.startswith(".") for part in relative.parts[:-1]) or not file.is_file():
            continue
        if file.name.endswith(_NOT_BLUEPRINTS):
            continue
        if file.name.startswith("aqueduct."):
            yield file, "an aqueduct.yml engine config, not a Blueprint"
            continue
        try:
            # At most what the loader would read: a 50 MB data file is not read whole.
            with file.open("rb") as handle:
                head = handle.read(MAX_DOCUMENT_BYTES + 1).decode("utf-8", errors="replace")
        except OSError:
            head = "modules:"  # unreadable: let validation report it
        if not _BLUEPRINT_KEY.search(head):
            yield file, "no top-level `aqueduct:` or `modules:` key: not a Blueprint"
            continue
        yield file, None


@main.command()
@click.argument("blueprints", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None, help="Context profile to apply.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every file's result.")
def validate(blueprints: tuple[Path, ...], ctx: tuple[str, ...], profile: str | None, as_json: bool) -> None:
    """Check Blueprint files or folders (recursively): YAML, schema, templating, graph.

    Reports every file; exit 2 if any is invalid.
    """
    from aqueduct_dagster.blueprint import compile_blueprint

    overrides = _context_overrides(ctx)
    results: list[dict[str, Any]] = []
    internal = False
    for given in blueprints:
        if not given.exists() and not given.is_symlink():  # a link loop is reported below
            results.append({"path": str(given), "status": "invalid", "error": {
                "error": "BlueprintError", "message": f"no such file or folder: {given}",
                "location": str(given), "hint": "check the path (relative to the current folder)"}})  # fmt: skip
            continue
        for path, skipped in blueprint_files(given):
            if skipped:
                results.append({"path": str(path), "status": "skipped", "reason": skipped})
                continue
            try:
                manifest = compile_blueprint(path, context_overrides=overrides, profile=profile)
            except AqueductError as error:
                results.append({"path": str(path), "status": "invalid", "error": error.to_dict(),
                                "text": str(error)})  # fmt: skip
            except Exception as error:  # noqa: BLE001 - report the bug for this file, go on
                internal = True
                results.append({"path": str(path), "status": "error", "text": describe(error)})
            else:
                results.append({"path": str(path), "status": "ok", "blueprint_id": manifest.blueprint_id,
                                "modules": len(manifest.modules), "warnings": list(manifest.warnings)})  # fmt: skip
    invalid = [r for r in results if r["status"] in ("invalid", "error")]
    if as_json:
        _echo_json({"ok": not invalid, "files": [{k: v for k, v in r.items() if k != "text"} for r in results]})
    else:
        for result in results:
            _print_validation(result)
        counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "invalid", "skipped")}
        if len(results) > 1 or not results:
            click.echo(f"{counts['ok']} ok, {counts['invalid'] + internal} invalid, {counts['skipped']} skipped")
    if internal:
        sys.exit(EXIT_INTERNAL)
    if invalid or not results:
        if not results:
            where = ", ".join(str(b) for b in blueprints)
            click.secho(f"error: no Blueprint files found in {where} (*.yml / *.yaml with a "
                        "top-level `aqueduct:` or `modules:` key)", fg="red", err=True)  # fmt: skip
        sys.exit(EXIT_BAD_INPUT)


def _print_validation(result: dict[str, Any]) -> None:
    status, path = result["status"], result["path"]
    if status == "ok":
        click.echo(f"ok    {path}  ({result['blueprint_id']}: {result['modules']} modules)")
        for warning in result["warnings"]:
            click.secho(f"      warning: {warning}", fg="yellow")
    elif status == "skipped":
        click.echo(f"skip  {path}  ({result['reason']})")
    else:
        text = result.get("text") or f"{result['error']['location']}: {result['error']['message']}"
        click.secho(f"FAIL  {path}", fg="red", err=True)
        click.secho(f"error: {text}", fg="red", err=True)


@main.command("compile")
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
@click.option("--profile", default=None)
@click.option("--show", type=click.Choice(["manifest", "provenance", "lineage"]), default="manifest")
def compile_command(blueprint: Path, ctx: tuple[str, ...], profile: str | None, show: str) -> None:
    """Print the compiled Manifest, where each value came from, or column lineage."""
    from aqueduct_dagster.blueprint import compile_blueprint

    manifest = compile_blueprint(blueprint, context_overrides=_context_overrides(ctx), profile=profile)
    if show == "provenance":
        for path, source in sorted(manifest.provenance.items()):
            detail = f" ({source.detail})" if source.detail else ""
            where = f"  @ {source.location}" if source.location else ""
            click.echo(f"{path}: {source.source}{detail}{where}")
    elif show == "lineage":
        for module in manifest.modules.values():
            for column, sources in module.column_lineage.items():
                click.echo(f"{module.id}.{column} <- " + ", ".join(f"{s.module}.{s.column}" for s in sources))
    else:
        click.echo(manifest.model_dump_json(indent=2, by_alias=True, exclude_defaults=True))


@main.command()
@click.argument("blueprint", type=click.Path(path_type=Path))
@click.option("--column", default=None, help="Only this output column (module.column).")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "mermaid"]), default="text",
              show_default=True, help="mermaid: a flowchart of columns (GitHub and most wikis draw it).")
@click.option("--json", "as_json", is_flag=True, help="The lineage as JSON (same as --format json).")
def lineage(blueprint: Path, column: str | None, output_format: str, as_json: bool) -> None:
    """Column-level lineage of a Blueprint, traced back to its Ingress columns."""
    from aqueduct_dagster.blueprint import compile_blueprint
    from aqueduct_dagster.blueprint.suggest import did_you_mean

    manifest = compile_blueprint(blueprint)

    origins: dict[tuple[str, str], frozenset[str]] = {}

    def sources_of(key: tuple[str, str]) -> list[tuple[str, str]]:
        module = manifest.modules.get(key[0])
        return [(s.module, s.column) for s in (module.column_lineage.get(key[1], ()) if module else ())]

    def roots(module_id: str, name: str) -> frozenset[str]:
        """The Ingress-side columns a column comes from: memoised and without recursion, as
        `a+b AS a, a*b AS b` over a chain of N Channels has 2^N paths and N frames."""
        stack, on_stack = [(module_id, name)], {(module_id, name)}
        while stack:
            key = stack[-1]
            waiting = [s for s in sources_of(key) if s not in origins and s not in on_stack]
            if waiting:
                stack.append(waiting[0])
                on_stack.add(waiting[0])
                continue
            stack.pop()
            on_stack.discard(key)
            done = [origins[s] for s in sources_of(key) if s in origins]  # a cycle is cut
            origins[key] = frozenset().union(*done) if done else frozenset({f"{key[0]}.{key[1]}"})
        return origins[(module_id, name)]

    known = [f"{m.id}.{name}" for m in manifest.modules.values() for name in m.column_lineage]
    if column and column not in known:
        raise AqueductError(
            f"no column lineage for '{column}' in {blueprint}" + did_you_mean(column, known),
            hint="name an output column as module.column; `aqueduct lineage FILE` lists them"
            if known else _LINEAGE_SCOPE,
        )
    entries = []
    for module in manifest.modules.values():
        for name, sources in module.column_lineage.items():
            if column and column != f"{module.id}.{name}":
                continue
            entries.append({"column": f"{module.id}.{name}",
                            "direct": [f"{s.module}.{s.column}" for s in sources],
                            "origin": sorted(set(roots(module.id, name)))})  # fmt: skip
    if as_json or output_format == "json":
        _echo_json({"blueprint": manifest.blueprint_id, "columns": entries})
        return
    if output_format == "mermaid":
        click.echo(_lineage_mermaid(manifest, column, sources_of))
        return
    for entry in entries:
        direct, origin = ", ".join(entry["direct"]), ", ".join(entry["origin"])
        click.echo(f"{entry['column']} <- {direct}" + (f"   (from {origin})" if origin != direct else ""))
    if not entries:
        click.echo(f"no column lineage known ({_LINEAGE_SCOPE})")


_LINEAGE_SCOPE = "SQL Channels with known upstream columns have column lineage, and the modules that pass them on"


def _lineage_mermaid(manifest: Any, column: str | None, sources_of) -> str:
    """A Mermaid flowchart: one box per module, a node per column, an arrow per dependency.

    With `column`, only what it is computed from; node ids are generated, as column names
    may hold characters Mermaid reads as syntax.
    """
    if column:
        pending, edges, visited = [tuple(column.split(".", 1))], [], set()
        while pending:
            target = pending.pop()
            if target in visited:
                continue
            visited.add(target)
            for source in sources_of(target):
                edges.append((source, target))
                pending.append(source)
    else:
        edges = [(source, (m.id, name)) for m in manifest.modules.values()
                 for name in m.column_lineage for source in sources_of((m.id, name))]  # fmt: skip
    order = {module_id: index for index, module_id in enumerate(manifest.modules)}
    seen = {key: index for index, key in enumerate(dict.fromkeys(key for edge in edges for key in edge))}
    # Numbered upstream first (the Manifest's modules are in topological order).
    columns = sorted(seen, key=lambda key: (order.get(key[0], len(order)), seen[key]))
    position = {key: index for index, key in enumerate(columns)}
    node = {key: f"c{index}" for key, index in position.items()}

    def label(text: str) -> str:
        return '"' + text.replace('"', "#quot;") + '"'

    lines = ["flowchart LR"]
    for index, module in enumerate(manifest.modules.values()):
        own = [key for key in columns if key[0] == module.id]
        if own:
            lines.append(f"  subgraph m{index}[{label(f'{module.id} ({module.type})')}]")
            lines += [f"    {node[key]}[{label(key[1])}]" for key in own]
            lines.append("  end")
    arrows = sorted(dict.fromkeys(edges), key=lambda edge: (position[edge[1]], position[edge[0]]))
    lines += [f"  {node[source]} --> {node[target]}" for source, target in arrows]
    return "\n".join(lines)


@main.command()
@click.option("--blueprint", "blueprint_id", default=None, help="Only this blueprint's runs.")
@click.option("--limit", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The runs as JSON.")
def runs(blueprint_id: str | None, limit: int, as_json: bool) -> None:
    """Recent blueprint runs: Dagster status and per-module metrics from the store.

    Without DAGSTER_HOME the store's runs are still listed, with status `unknown`.
    """
    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.stores import default_store

    config = load_config()
    store = default_store(config.state_path, config)
    try:
        instance = _dagster_instance()
    except EnvironmentProblem as error:
        instance = None
        click.secho(f"note: {error.message}: Dagster status shown as unknown ({error.hint})", fg="yellow", err=True)
    listed = []
    for run in store.runs(blueprint_id, limit=limit):
        record = instance.get_run_by_id(run["run_id"]) if instance is not None else None
        listed.append({**run, "status": record.status.value if record else "unknown",
                       "modules": store.module_metrics(run["run_id"])})  # fmt: skip
    if as_json:
        _echo_json({"runs": listed})
        return
    if not listed:
        click.echo("no runs recorded" + (f" for blueprint '{blueprint_id}'" if blueprint_id else ""))
    for run in listed:
        click.echo(f"{run['run_id']}  {run['blueprint_id']}  {run['status']:<8}  modules ok={run['modules_ok']} "
                   f"failed={run['modules_failed']}  {run['duration_ms'] or 0} ms  started {run['started_at']}")  # fmt: skip
        for metric in run["modules"]:
            rows = f"  rows={metric['rows_written']}" if metric["rows_written"] is not None else ""
            click.echo(f"    {metric['module_id']:<24} {metric['status']:<8} {metric['duration_ms']} ms{rows}")


def _known_blueprint_ids() -> list[str]:
    """Ids of the Blueprint files in the blueprints folder (unreadable files are passed over)."""
    from aqueduct_dagster.blueprint.loader import load_document, read_blueprint_text

    folder = Path(os.environ.get("AQUEDUCT_BLUEPRINTS_DIR") or "blueprints")
    ids = []
    if folder.is_dir():
        for path, skipped in blueprint_files(folder):
            try:
                data = load_document(read_blueprint_text(path), str(path)).data
            except AqueductError:
                continue
            if not skipped and isinstance(data.get("id"), str):
                ids.append(data["id"])
    return ids


@main.command()
@click.argument("blueprint_id")
def depot(blueprint_id: str) -> None:
    """A blueprint's Depot: committed values and values staged by unfinished runs.

    Values staged by runs that have finished are settled first (committed when the Dagster
    instance reports the run SUCCESS, discarded when it failed), as the next run would.
    """
    from aqueduct_dagster.blueprint.suggest import did_you_mean
    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.dagster.resources import run_outcome_in
    from aqueduct_dagster.stores import default_store
    from aqueduct_dagster.stores.depot import Depot

    config = load_config()
    store = Depot(default_store(config.state_path, config), blueprint_id)
    if os.environ.get("DAGSTER_HOME"):
        for run_id, action in store.settle(run_outcome_in(_dagster_instance())).items():
            click.echo(f"settled run {run_id}: {action}")
    items = store.store.depot_items(blueprint_id)
    if not items:
        known = _known_blueprint_ids()
        if blueprint_id not in known and not store.store.runs(blueprint_id, limit=1):
            raise AqueductError(
                f"no Blueprint '{blueprint_id}': no Blueprint file has this id and the store "
                "has no runs of it" + did_you_mean(blueprint_id, known),
                hint="give a Blueprint's `id:` (AQUEDUCT_BLUEPRINTS_DIR, else ./blueprints)",
            )
        click.echo(f"the Depot of '{blueprint_id}' is empty")
        return
    for key, value, run_id, committed in items:
        state = "committed" if committed else "staged   "
        click.echo(f"{state}  {key} = {value}   (run {run_id})")


#: Heal outcomes that are a success of the command: something was staged, applied or handed
#: on, or there was nothing to heal (skipped).
_HEAL_DONE = ("staged", "escalated", "applied", "branch", "suppressed", "skipped")


@main.command()
@click.option("--run-id", default=None, help="The failed run to heal.")
@click.option("--latest-failure", "job", default=None, help="Heal the latest failed run of this job.")
@click.option("--json", "as_json", is_flag=True, help="The heal's summary as JSON.")
def heal(run_id: str | None, job: str | None, as_json: bool) -> None:
    """Heal a failed run now, in this process (what the failure sensor launches).

    Exit 0 when a patch was staged/applied/escalated or there was nothing to heal (skipped),
    1 when the heal ran and failed, 2 when there is no such run, 3 without DAGSTER_HOME.
    """
    import dagster as dg

    from aqueduct_dagster.dagster.healing import aqueduct_heal_job

    if run_id is None and job is None:
        raise click.UsageError("give --run-id or --latest-failure JOB")
    instance = _dagster_instance()
    if run_id is None:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.FAILURE]), limit=1)
        if not runs:
            raise AqueductError(f"no failed run of job '{job}' in {instance.root_directory}",
                                hint="check the job name (`aqueduct runs` lists recent runs)")  # fmt: skip
        run_id = runs[0].run_id
    elif instance.get_run_by_id(run_id) is None:
        raise AqueductError(f"no run '{run_id}' in {instance.root_directory}",
                            hint="check the run id (`aqueduct runs` lists recent runs)")  # fmt: skip
    result = aqueduct_heal_job.execute_in_process(
        run_config={
            "ops": {"heal": {"config": {"run_id": run_id}}},
            "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        },
        instance=instance, raise_on_error=False, tags={"aqueduct/heal_of": run_id},
    )  # fmt: skip
    if not result.success:
        if as_json:
            _echo_json({"run_id": run_id, "status": "failed", "message": "the heal run failed; see its logs in Dagster"})
        click.secho("the heal run failed; see its logs in Dagster", fg="red", err=True)
        sys.exit(EXIT_FAILED)
    summary = dict(result.output_for_node("heal") or {})
    status = summary.get("status") or "skipped"
    if as_json:
        _echo_json({"run_id": run_id, **summary, "status": status})
    elif "heal_id" not in summary:  # nothing was healed: say why
        click.echo(f"heal of run {run_id}: {status}: {summary.get('message') or 'nothing to heal'}")
    else:
        click.echo(f"heal {summary['heal_id']}: {status}: {summary.get('message', '')}")
        for gate in summary.get("gates", []):
            click.echo(f"  gate {gate}")
        if summary.get("pending_path"):
            click.echo(f"  pending patch: {summary['pending_path']}")
    sys.exit(0 if status in _HEAL_DONE else EXIT_FAILED)


@main.command("test")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--blueprint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Use this blueprint instead of the one the aqtest file names.")
@click.option("--ctx", "ctx", multiple=True, help="Context override KEY=VALUE (repeatable).")
def test_command(paths: tuple[Path, ...], blueprint: Path | None, ctx: tuple[str, ...]) -> None:
    """Run *.aqtest.yml files: single modules against inline rows, on local Spark."""
    from aqueduct_dagster.engine.session import create_base_session, run_session
    from aqueduct_dagster.testing import find_aqtests, run_aqtest_file

    files = [f for p in paths for f in find_aqtests(p)]
    if not files:
        click.secho("no *.aqtest.yml files found", fg="red", err=True)
        sys.exit(EXIT_BAD_INPUT)
    spark = run_session(create_base_session(app_name="aqueduct-test"))
    passed = failed = 0
    for file in files:
        click.echo(f"{file}", err=True)
        results = run_aqtest_file(file, spark, blueprint=blueprint, context_overrides=_context_overrides(ctx))
        for result in results:
            mark = click.style("PASS", fg="green") if result.passed else click.style("FAIL", fg="red")
            click.echo(f"  {mark}  {result.test_id}  ({result.module})")
            for failure in result.failures:
                click.echo(f"        {failure}")
            passed, failed = passed + result.passed, failed + (not result.passed)
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else EXIT_FAILED)


# --------------------------------------------------------------------------- patches


def _queue():
    from aqueduct_dagster.config import load_config
    from aqueduct_dagster.healing.heal import PatchQueue

    return PatchQueue.from_config(load_config())


@main.group()
def patch() -> None:
    """Review patches: list, show, apply, reject, rollback."""


@patch.command("list")
@click.option("--status", type=click.Choice(["pending", "applied", "rejected"]), default="pending")
@click.option("--json", "as_json", is_flag=True, help="The patches as JSON.")
def patch_list(status: str, as_json: bool) -> None:
    """Patches with a status (pending by default)."""
    patches = _queue().list(status)
    if as_json:
        _echo_json({"status": status, "patches": [
            {"patch_id": item.patch_id, "blueprint_id": item.record.get("blueprint_id"),
             "failed_module": item.record.get("failed_module"), "confidence": item.patch.confidence,
             "rationale": item.patch.rationale} for item in patches]})  # fmt: skip
        return
    if not patches:
        click.echo(f"no {status} patches")
    for item in patches:
        record: dict[str, Any] = item.record
        confidence = item.patch.confidence if item.patch.confidence is not None else "-"
        click.echo(f"{item.patch_id}  {record.get('blueprint_id')}  module={record.get('failed_module')}  "
                   f"confidence={confidence}  {item.patch.rationale}")  # fmt: skip


@patch.command("show")
@click.argument("patch_id")
@click.option("--json", "as_json", is_flag=True, help="The full staged record as JSON.")
def patch_show(patch_id: str, as_json: bool) -> None:
    """A pending patch: root cause, operations and the diff it makes."""
    item = _queue().get(patch_id)
    if as_json:
        click.echo(json.dumps(item.record, indent=2))
        return
    record = item.record
    click.echo(f"patch      {item.patch_id}")
    click.echo(f"blueprint  {record['blueprint_path']}  (module {record['failed_module']})")
    click.echo(f"error      {record['error'].get('condition') or record['error'].get('exception_class')}")
    click.echo(f"root cause {item.patch.root_cause}")
    click.echo(f"confidence {item.patch.confidence}")
    if record.get("escalation"):
        click.secho(f"escalated  {record['escalation']}", fg="yellow")
    click.echo("")
    for line in record["diff"].splitlines():
        color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        click.secho(line, fg=color)


@patch.command("apply")
@click.argument("patch_id")
def patch_apply(patch_id: str) -> None:
    """Apply a pending patch as a new Blueprint revision."""
    revision = _queue().apply(patch_id)
    click.echo(f"applied: {revision.summary}")


@patch.command("reject")
@click.argument("patch_id")
@click.option("--reason", default="")
def patch_reject(patch_id: str, reason: str) -> None:
    """Reject a pending patch."""
    target = _queue().reject(patch_id, reason)
    click.echo(f"rejected: {target}")


@patch.command("rollback")
@click.argument("blueprint", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "number", type=int, required=True, help="Undo this revision (and everything after it).")
def patch_rollback(blueprint: Path, number: int) -> None:
    """Restore a Blueprint as it was before revision N, as a new revision."""
    revision = _queue().revisions.rollback(blueprint, number)
    click.echo(f"rolled back: {revision.summary}")


def _register_commands() -> None:
    from aqueduct_dagster.cli_benchmark import benchmark_command
    from aqueduct_dagster.cli_doctor import doctor_command
    from aqueduct_dagster.cli_jars import jars_command
    from aqueduct_dagster.cli_run import run_command
    from aqueduct_dagster.cli_spark import spark_command

    main.add_command(benchmark_command)
    main.add_command(doctor_command)
    main.add_command(run_command)
    main.add_command(spark_command)
    main.add_command(jars_command)
    patch.add_command(__import__("aqueduct_dagster.cli_preview", fromlist=["_"]).preview_command)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
