"""The pure Blueprint compiler: YAML Blueprint (Aqueduct 1.0) -> Manifest.

No Spark and no Dagster here; later layers consume the Manifest.
"""

from aqueduct_dagster.blueprint.compiler import compile_blueprint, compile_text
from aqueduct_dagster.blueprint.functions import RunInfo
from aqueduct_dagster.blueprint.lineage import (
    column_lineage,
    parse_single_select,
    referenced_columns,
)
from aqueduct_dagster.blueprint.manifest import (
    ColumnSource,
    CompiledModule,
    Location,
    Manifest,
    ModuleInput,
    Provenance,
    fingerprint_of,
)
from aqueduct_dagster.blueprint.runtime import bind_runtime, reveal_secrets

__all__ = [
    "ColumnSource",
    "CompiledModule",
    "Location",
    "Manifest",
    "ModuleInput",
    "Provenance",
    "RunInfo",
    "bind_runtime",
    "column_lineage",
    "compile_blueprint",
    "compile_text",
    "fingerprint_of",
    "parse_single_select",
    "referenced_columns",
    "reveal_secrets",
]
