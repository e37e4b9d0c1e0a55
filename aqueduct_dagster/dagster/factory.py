"""Build Dagster `Definitions` from a folder of Blueprints."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

# The one private Dagster import: resolving a job against a given asset graph has no public
# API, and resolving it against the whole code location is quadratic (see build_blueprint_job).
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph

from aqueduct_dagster.blueprint.cache import disk_cache
from aqueduct_dagster.blueprint.manifest import Manifest
from aqueduct_dagster.dagster.assets import (
    IO_MANAGER_KEY,
    SPARK_RESOURCE_KEY,
    build_blueprint_assets,
)
from aqueduct_dagster.dagster.cross_blueprint import upstream_of
from aqueduct_dagster.dagster.healing import (
    approve_patch_job,
    aqueduct_heal_job,
    build_failure_sensor,
    reject_patch_job,
    revision_asset_specs,
)
from aqueduct_dagster.dagster.hooks import build_hook_sensors
from aqueduct_dagster.dagster.io_manager import spark_frame_io_manager
from aqueduct_dagster.dagster.loading import (
    compile_folder,
    problem_from,
    report,
    split_duplicate_ids,
)
from aqueduct_dagster.dagster.resources import SparkResource
from aqueduct_dagster.dagster.retry import dagster_retry
from aqueduct_dagster.dagster.scheduling import schedules_of
from aqueduct_dagster.dagster.spec_cache import SPEC_CACHE
from aqueduct_dagster.dagster.spec_cache import key_of as spec_key_of
from aqueduct_dagster.dagster.tags import BLUEPRINT_PATH_TAG, BLUEPRINT_TAG
from aqueduct_dagster.dagster.translator import BlueprintTranslator, ModuleAssetData, safe_name
from aqueduct_dagster.errors import AqueductError, BlueprintError, ConfigError
from aqueduct_dagster.settings import Settings, current_settings

_NOT_BLUEPRINTS = (".aqtest.yml", ".aqtest.yaml", ".aqscenario.yml", ".aqscenario.yaml")


def find_blueprint_files(blueprints_dir: str | Path) -> list[Path]:
    """Blueprint files directly in `blueprints_dir` (sub-folders hold Arcades, data, tests)."""
    folder = Path(blueprints_dir)
    if not folder.is_dir():
        raise ConfigError(
            f"blueprints folder '{folder}' does not exist",
            hint="create it, or point AQUEDUCT_BLUEPRINTS_DIR / build_definitions() at yours",
        )
    return sorted(
        path
        for pattern in ("*.yml", "*.yaml")
        for path in folder.glob(pattern)
        if not path.name.endswith(_NOT_BLUEPRINTS) and not path.name.startswith("aqueduct.")
    )


def job_name_for(manifest: Manifest) -> str:
    return safe_name(manifest.blueprint_id)


def build_blueprint_job(
    manifest: Manifest,
    assets: Sequence[dg.AssetsDefinition],
    resources: Mapping[str, Any] | None = None,
) -> dg.JobDefinition:
    """The Blueprint's job, resolved against the Blueprint's own assets.

    Dagster resolves an unresolved asset job against the whole code location, scanning every
    asset of every Blueprint for every job (quadratic: 1.9 s of a 200-Blueprint load). A
    Blueprint's assets only read each other, so its own graph is all the job needs.
    """
    # In-process: one SparkSession for the whole run; the multiprocess executor would start a
    # JVM per step (measured ~3x slower) and could not hand DataFrames between steps.
    return _unresolved_blueprint_job(manifest, assets).resolve(
        asset_graph=AssetGraph.from_assets(list(assets)), resource_defs=resources
    )


def _unresolved_blueprint_job(
    manifest: Manifest, assets: Sequence[dg.AssetsDefinition]
) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        name=job_name_for(manifest),
        selection=dg.AssetSelection.assets(*[key for a in assets for key in a.keys]),
        executor_def=dg.in_process_executor,
        description=manifest.description or manifest.name,
        tags={BLUEPRINT_TAG: manifest.blueprint_id, BLUEPRINT_PATH_TAG: manifest.source_path},
        # Only transient errors reach a retry: the asset raises Failure(allow_retries=False)
        # for the rest, which is what gets healed.
        op_retry_policy=dagster_retry(manifest.retry_policy),
    )


def build_definitions(
    blueprints_dir: str | Path | None = None,
    *,
    translator: BlueprintTranslator | None = None,
    context_overrides: Mapping[str, Any] | None = None,
    profile: str | None = None,
    resources: Mapping[str, Any] | None = None,
    manifests: Iterable[Manifest] | None = None,
    strict: bool = False,
    settings: Settings | None = None,
    spark_master: str | None = None,
) -> dg.Definitions:
    """Compile every Blueprint in `blueprints_dir` into assets, checks and one job each.

    A Blueprint that does not compile or build (or shares its id with another) is left
    out, logged as a warning and shown as an asset in group `aqueduct_load_errors`; the
    others load. `strict=True` raises the first such problem instead (a BlueprintError
    naming the file). A missing folder is always an error.

    `settings` default to the process's (`current_settings()`); `blueprints_dir` to theirs.
    `spark_master` is an argument: it beats a Blueprint's own engine.spark.master_url.
    """
    settings = settings or current_settings()
    with _rare_gc():
        return _build_definitions(
            blueprints_dir, translator, context_overrides, profile, resources, manifests, strict,
            settings, spark_master,
        )  # fmt: skip


def load_code_location(blueprints_dir: str | Path | None = None, **options: Any) -> dg.Definitions:
    """`build_definitions`, with the repository and every job resolved as Dagster does when it
    loads a code location, under the same rare garbage collection.

    Dagster resolves them right after importing the code location, at the collector's default
    threshold, which then rescans the whole code location's objects every ~700 allocations:
    a 200-Blueprint location spent ~1 s of its ~1.5 s resolving in the collector. Resolved
    here, Dagster finds them done (`Definitions.get_repository_def` is cached).
    """
    with _rare_gc():
        definitions = build_definitions(blueprints_dir, **options)
        definitions.get_repository_def().get_all_jobs()
        # The definitions live as long as the code server: frozen, no full collection scans
        # them again. The first would come right after the load, 0.27 s for 200 Blueprints
        # (566k objects); the load's cyclic garbage (~40k objects) is frozen with them.
        gc.freeze()
    return definitions


class _SpecsOnce(BlueprintTranslator):
    """The given translator, asked once per module of one definitions build; the default
    translator's specs are also kept for later builds and processes (`spec_cache.py`)."""

    def __init__(self, translator: BlueprintTranslator, cache_folder: Path | None) -> None:
        self._translator = translator
        # A subclass may read anything: only the default's inputs are known.
        self._cached = type(translator) is BlueprintTranslator
        self._cache_folder = cache_folder
        # By identity: the same Manifest objects. The Manifest is kept with its specs, so that
        # no id() in a key is reused meanwhile.
        self._blueprints: dict[int, _BlueprintSpecs] = {}

    def get_asset_spec(self, data: ModuleAssetData) -> dg.AssetSpec:
        known = self._blueprints.get(id(data.manifest))
        if known is None:
            key = spec_key_of(data.manifest) if self._cached else None
            found = SPEC_CACHE.get(key, self._cache_folder) if key is not None else None
            known = _BlueprintSpecs(data.manifest, key, dict(found or {}))
            self._blueprints[id(data.manifest)] = known
        spec = known.specs.get(data.module.id)
        if spec is None:
            spec = known.specs[data.module.id] = self._translator.get_asset_spec(data)
            known.added = True
        return spec

    def keep(self) -> None:
        """Keep the specs this build made for the next one."""
        for known in self._blueprints.values():
            if known.key is not None and known.added:
                SPEC_CACHE.put(known.key, self._cache_folder, known.specs)


@dataclass
class _BlueprintSpecs:
    manifest: Manifest
    key: str | None
    specs: dict[str, dg.AssetSpec]
    added: bool = False


@contextmanager
def _rare_gc() -> Iterator[None]:
    """Collect cyclic garbage rarely while definitions are built.

    A large code location allocates millions of objects that all stay alive; at the default
    threshold the collector rescans them ~every 700 allocations, a fifth of the load time
    (200 Blueprints: 6.0 s -> 4.8 s median). Garbage is still collected, only in bigger
    batches; the previous thresholds are back afterwards.
    """
    previous = gc.get_threshold()
    gc.set_threshold(max(previous[0], 50_000), *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def _build_definitions(
    blueprints_dir: str | Path | None,
    translator: BlueprintTranslator | None,
    context_overrides: Mapping[str, Any] | None,
    profile: str | None,
    resources: Mapping[str, Any] | None,
    manifests: Iterable[Manifest] | None,
    strict: bool,
    settings: Settings,
    spark_master: str | None,
) -> dg.Definitions:
    if manifests is None:
        files = find_blueprint_files(blueprints_dir or settings.blueprints_dir)
        with disk_cache(settings.compile_cache):
            manifests, problems = compile_folder(files, context_overrides, profile)
    else:
        manifests, problems = split_duplicate_ids(list(manifests))
    all_resources: dict[str, Any] = {
        SPARK_RESOURCE_KEY: SparkResource.from_settings(settings, master=spark_master),
        IO_MANAGER_KEY: spark_frame_io_manager(SPARK_RESOURCE_KEY),
    }
    all_resources.update(resources or {})
    assets: list[dg.AssetsDefinition] = []
    jobs = []
    schedules: list[dg.ScheduleDefinition] = []
    loaded: list[Manifest] = []
    # Finding the Blueprints' readers of each other asks for every Egress's spec; building the
    # assets asks again: one translator call per module (a spec is ~1 ms of metadata).
    translator = _SpecsOnce(translator or BlueprintTranslator(), settings.compile_cache)
    upstream = upstream_of(manifests, translator)
    for manifest in manifests:
        try:
            reads = {ingress: key for (bp, ingress), key in upstream.items() if bp == manifest.blueprint_id}
            blueprint_assets = build_blueprint_assets(manifest, translator, reads)
            job = build_blueprint_job(manifest, blueprint_assets, all_resources)
            blueprint_schedules = schedules_of(manifest, job)
        except Exception as error:  # noqa: BLE001 - Dagster refusing one Blueprint's definitions
            problems.append(problem_from(manifest.source_path, error))
            continue
        assets.extend(blueprint_assets)
        jobs.append(job)
        schedules.extend(blueprint_schedules)
        loaded.append(manifest)
    translator.keep()
    if strict and problems:
        first = problems[0]
        if isinstance(first.error, AqueductError):
            raise first.error
        raise BlueprintError(first.message) from first.error
    report(problems)
    return dg.Definitions(
        assets=[*assets, *revision_asset_specs(loaded), *(p.asset_spec() for p in problems)],
        jobs=[*jobs, aqueduct_heal_job, approve_patch_job, reject_patch_job],
        schedules=schedules,
        sensors=[build_failure_sensor(jobs, settings.sensor_interval), *build_hook_sensors(loaded, jobs, settings)] if jobs else [],
        resources=all_resources,
    )

