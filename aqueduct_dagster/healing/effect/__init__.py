"""What a compiled Blueprint does to the world, and whether a patch may change it.

A patch can name a location in many ways: `path`, `options.path`, a context value, an
`@aq.env(...)` or a macro, an Egress `table:`, a whole new module. Judging the patch text
misses some of them; judging the compiled Manifest cannot, because every route ends there.
`compiled_effect` lists every location a Manifest reads and writes (normalized: absolute,
`..` and symlinks resolved), the code it loads and its engine conf; `judge_effect` compares
the unpatched with the patched effect under the guardrail policy and answers the problems,
each naming the location and what would pass.

Default policy (no configuration): no new write target of any kind, a new read lies under a
folder the Blueprint already reads from, no new code location, engine conf changes only for
allowlisted keys with values under a ceiling.

The parts: `records` (Target, Effect, EffectPolicy), `compiled` (a Manifest's effect),
`module_effects` (one module's, by type), `locations` (path normalization), `sql_values`
(the SQL a module holds), `judging` (before against after), `bounds` (numbers a patch sets).
"""

from aqueduct_dagster.healing.effect.compiled import compiled_effect
from aqueduct_dagster.healing.effect.config_values import strings_in
from aqueduct_dagster.healing.effect.judging import judge_effect, sql_problems_of
from aqueduct_dagster.healing.effect.locations import names_a_location
from aqueduct_dagster.healing.effect.records import (
    DEFAULT_ENGINE_CEILINGS,
    Effect,
    EffectPolicy,
    SqlValue,
    Target,
)

__all__ = [
    "DEFAULT_ENGINE_CEILINGS",
    "Effect",
    "EffectPolicy",
    "SqlValue",
    "Target",
    "compiled_effect",
    "judge_effect",
    "names_a_location",
    "sql_problems_of",
    "strings_in",
]
