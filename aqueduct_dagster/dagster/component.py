"""A Dagster Component: a folder of Blueprints as a `defs.yaml`.

`dg scaffold defs aqueduct_dagster.dagster.component.BlueprintsComponent pipelines` writes

    type: aqueduct_dagster.dagster.component.BlueprintsComponent
    attributes:
      blueprints_dir: blueprints

beside a `blueprints/` folder; every Blueprint in it becomes assets, checks and a job through
`build_definitions`, exactly as in a `workspace.yaml` code location. Relative paths in the
attributes are taken from the folder of the `defs.yaml`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components.utils.translation import ResolvedTranslationFn
from pydantic import BaseModel

from aqueduct_dagster.dagster.factory import build_definitions
from aqueduct_dagster.dagster.healing import APPROVE_JOB, HEAL_JOB, HEAL_SENSOR, REJECT_JOB
from aqueduct_dagster.dagster.translator import BlueprintTranslator, ModuleAssetData

_HEALING_JOBS = frozenset({HEAL_JOB, APPROVE_JOB, REJECT_JOB})


class _TranslatedBlueprints(BlueprintTranslator):
    """The default asset spec, then the `translation:` attributes of the defs.yaml."""

    def __init__(self, translation: Any) -> None:
        self.translation = translation

    def get_asset_spec(self, data: ModuleAssetData) -> dg.AssetSpec:
        return self.translation(super().get_asset_spec(data), data)


class BlueprintsScaffoldParams(BaseModel):
    blueprints_dir: str = "blueprints"


class BlueprintsScaffolder(dg.Scaffolder[BlueprintsScaffoldParams]):
    """Writes the defs.yaml and creates the (empty) Blueprint folder it points at."""

    @classmethod
    def get_scaffold_params(cls) -> type[BlueprintsScaffoldParams]:
        return BlueprintsScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[BlueprintsScaffoldParams]) -> None:
        folder = request.params.blueprints_dir
        dg.scaffold_component(request, {"blueprints_dir": folder})
        (request.target_path / folder).mkdir(parents=True, exist_ok=True)


@dg.scaffold_with(BlueprintsScaffolder)
@dataclass
class BlueprintsComponent(dg.Component, dg.Resolvable):
    """Aqueduct Blueprints (YAML Spark pipelines) as assets, asset checks and one job each."""

    blueprints_dir: Annotated[
        str,
        dg.Resolver.default(
            description="Folder of Blueprint files, relative to this defs.yaml's folder. Only the "
            "files directly in it are Blueprints (sub-folders hold Arcades, UDFs and tests)."
        ),
    ] = "blueprints"
    context: Annotated[
        dict[str, Any],
        dg.Resolver.default(
            description="Context overrides applied to every Blueprint (they beat the files' "
            "own `context:` and profiles, like `aqueduct validate --ctx`)."
        ),
    ] = field(default_factory=dict)
    profile: Annotated[
        str | None,
        dg.Resolver.default(description="Context profile (`context_profiles:`) to apply."),
    ] = None
    spark_master: Annotated[
        str | None,
        dg.Resolver.default(
            description="Spark master for runs: local[N], spark://host:port, sc://host:port or "
            "`managed`. Set, it beats a Blueprint's own engine.spark.master_url. Unset: the "
            "Blueprint's, then AQUEDUCT_SPARK_MASTER, then aqueduct.yml, then local[2]."
        ),
    ] = None
    healing: Annotated[
        bool,
        dg.Resolver.default(
            description="Include the failure sensor and the heal, approve and reject jobs. What "
            "a heal may do is still each Blueprint's `agent.approval` (default: disabled)."
        ),
    ] = True
    translation: ResolvedTranslationFn[ModuleAssetData] = None

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        defs = build_definitions(
            Path(context.path) / self.blueprints_dir,
            translator=_TranslatedBlueprints(self.translation) if self.translation else None,
            context_overrides=self.context or None,
            profile=self.profile,
            spark_master=self.spark_master,
        )
        if self.healing:
            return defs
        # Healing off drops what heals; schedules and the Blueprints' hook sensors stay.
        return dg.Definitions(
            assets=defs.assets,
            asset_checks=defs.asset_checks,
            jobs=[job for job in defs.jobs or [] if job.name not in _HEALING_JOBS],
            schedules=defs.schedules,
            sensors=[sensor for sensor in defs.sensors or [] if sensor.name != HEAL_SENSOR],
            resources=defs.resources,
        )
