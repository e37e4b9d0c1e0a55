"""Every Blueprint in the shared aqueduct-gallery compiles, or fails on an unsupported feature.

The gallery lives outside the repository (AQUEDUCT_SHARED, default ../shared); without it
these tests are skipped.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from aqueduct_dagster.blueprint import compile_blueprint
from aqueduct_dagster.errors import BlueprintError
from tests.support.shared import shared_reference

GALLERY = shared_reference("aqueduct-gallery")

#: Features we knowingly do not compile yet; a gallery failure must name one of them.
UNSUPPORTED_FEATURES: tuple[str, ...] = ()  # Arcade compiles since sub-Blueprint expansion

#: Environment the gallery Blueprints read (`@aq.env('HOME')`); never the real one.
GALLERY_ENV = {"HOME": "/home/aqueduct"}


def _is_blueprint(path: Path) -> bool:
    name = path.name
    return not (
        name.startswith("aqueduct") or name.endswith((".aqtest.yml", ".aqscenario.yml"))
    )


BLUEPRINTS = sorted(p for p in GALLERY.rglob("*.yml") if _is_blueprint(p))
OUTCOMES: Counter[str] = Counter()


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: str(p.relative_to(GALLERY)))
def test_gallery_blueprint_compiles_or_names_an_unsupported_feature(path: Path) -> None:
    try:
        manifest = compile_blueprint(path, env=GALLERY_ENV)
    except BlueprintError as error:
        OUTCOMES["unsupported"] += 1
        assert any(feature in error.message for feature in UNSUPPORTED_FEATURES), str(error)
        return
    OUTCOMES["compiled"] += 1
    assert manifest.modules, "a gallery Blueprint compiled to no modules"
    assert manifest.fingerprint


def test_gallery_is_not_empty_and_report_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(BLUEPRINTS) >= 40
    with capsys.disabled():
        print(f"\n[gallery] {len(BLUEPRINTS)} blueprints: {dict(OUTCOMES)}")
