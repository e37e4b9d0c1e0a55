"""Counters of the work one input caused: YAML events read, nodes built, characters scanned.

Limits in the loader, the template scanner and SQL analysis bound these counts, so a test can
check "this input finished within its budget" in units of work rather than seconds (which
depend on the machine). Counting costs one attribute add per step and nothing when nobody is
measuring.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class WorkMeter:
    yaml_events: int = 0
    #: Nodes turned into data, counting each alias expansion again.
    nodes_built: int = 0
    #: Characters the template scanner read (each string once per resolution).
    template_chars: int = 0
    #: Characters of SQL handed to sqlglot.
    sql_chars: int = 0

    @property
    def total(self) -> int:
        return self.yaml_events + self.nodes_built + self.template_chars + self.sql_chars


_METER: ContextVar[WorkMeter | None] = ContextVar("aqueduct_work_meter", default=None)


@contextmanager
def measure() -> Iterator[WorkMeter]:
    """Count the work done inside the block (nested blocks count into the innermost)."""
    meter = WorkMeter()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


def count(kind: str, amount: int = 1) -> None:
    meter = _METER.get()
    if meter is not None:
        setattr(meter, kind, getattr(meter, kind) + amount)
