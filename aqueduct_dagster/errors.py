"""One root for every error the framework raises.

Every user-facing error says where (file:line:column, module id), what went wrong and how to
fix it. Whether an error is worth retrying is a property of the error, decided once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceLocation:
    """A position in a Blueprint file (1-based line and column)."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class AqueductError(Exception):
    """Root of every error raised by aqueduct-dagster."""

    #: Transient errors (lost executors, network, gateway) are retried, never healed.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        location: SourceLocation | None = None,
        module_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.location = location
        self.module_id = module_id
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        prefix = f"{self.location}: " if self.location else ""
        where = f"module '{self.module_id}': " if self.module_id else ""
        text = f"{prefix}{where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "location": str(self.location) if self.location else None,
            "module_id": self.module_id,
            "hint": self.hint,
            "transient": self.transient,
        }


class BlueprintError(AqueductError):
    """A Blueprint (or a file it references) is invalid; raised at load/compile time."""


class EngineError(AqueductError):
    """A module failed while running on Spark."""


class ConfigError(AqueductError):
    """The engine-wide configuration (aqueduct.yml) or the environment is invalid."""


class EnvironmentProblem(AqueductError):
    """This machine lacks something a command needs (DAGSTER_HOME, Java, a server)."""
