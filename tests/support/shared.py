"""Where the shared reference material lives, and what a test does when it is missing.

The gallery and the peer's schemas sit beside the repository (`../shared`, or AQUEDUCT_SHARED).
A developer's checkout may lack it: tests that need it skip, saying why. CI always has it, so
there a missing folder is a broken set-up and fails loudly instead of passing by running nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("AQUEDUCT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """`<shared>/reference/<parts>`, whether or not it exists (for collection-time listings)."""
    return SHARED.joinpath("reference", *parts)


def shared_reference(*parts: str) -> Path:
    """`<shared>/reference/<parts>`; skips the caller outside CI when it is missing."""
    return require_shared(shared_path(*parts))


def require_shared(path: Path) -> Path:
    if path.exists():
        return path
    message = f"{path} is missing (set AQUEDUCT_SHARED to the shared/ folder)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must have the shared reference material: {message}", pytrace=False)
    pytest.skip(message, allow_module_level=True)
