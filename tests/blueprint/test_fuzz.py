"""Property-based fuzzing: any mutated Blueprint ends in data or in one located project error.

Seeded from the shared aqueduct-gallery (CI must have it: the test fails there when it is
missing) and the project's own Blueprints. Each input must finish within a budget counted in
work (YAML events, nodes built, characters scanned), never in seconds. `bench/fuzz.py` runs
the same properties longer and reports throughput.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.blueprint.fuzz_support import check, mutate, project_seeds, run_one, seed_files
from tests.support.shared import shared_reference

GALLERY = shared_reference("aqueduct-gallery")
SEEDS = [(str(p), p.read_text(encoding="utf-8")) for p in seed_files(GALLERY) + project_seeds()]

_SETTINGS = dict(
    derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip


def test_there_are_seeds_from_the_gallery_and_the_project():
    assert len(SEEDS) >= 20
    assert any("blueprints/orders_daily.yml" in path for path, _ in SEEDS)


@settings(max_examples=2_500, **_SETTINGS)
@given(seed=st.sampled_from(SEEDS), mutation_seed=st.integers(0, 2**32 - 1))
def test_loading_mutated_blueprints_raises_only_located_project_errors(seed, mutation_seed):
    path, text = seed
    mutated = mutate(text, random.Random(mutation_seed))
    check(run_one(mutated, path, compile_it=False), mutated)


@settings(max_examples=700, **_SETTINGS)
@given(seed=st.sampled_from(SEEDS), mutation_seed=st.integers(0, 2**32 - 1))
def test_compiling_mutated_blueprints_raises_only_located_project_errors(seed, mutation_seed):
    path, text = seed
    mutated = mutate(text, random.Random(mutation_seed))
    check(run_one(mutated, path), mutated)


@settings(max_examples=400, **_SETTINGS)
@given(text=st.text(alphabet=st.characters(exclude_categories=()), max_size=300))  # surrogates too
def test_arbitrary_text_raises_only_located_project_errors(text):
    check(run_one(text, "fuzz.yml"), text)


@settings(max_examples=300, **_SETTINGS)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=30,
    ),
    key=st.sampled_from(["context", "modules", "macros", "edges", "engine", "agent", "id"]),
)
def test_wrong_types_in_a_valid_blueprint_raise_only_located_project_errors(value, key):
    import json

    _, base = next(s for s in SEEDS if s[0].endswith("blueprints/orders_daily.yml"))
    text = base + f"\n{key}: {json.dumps(value)}\n"
    check(run_one(text, "fuzz.yml"), text)
