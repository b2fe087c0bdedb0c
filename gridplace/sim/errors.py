"""Errors of the simulator.

    SimError (ValueError)              base: the simulation cannot run on this input
        PlanReferenceError             assignments that cannot be simulated; .problems lists
                                       each one as (assignment label, what is wrong)
        TraceError                     a request trace that cannot be read; .path, .line
        SimSettingsError               settings outside their domain; .field, .value

Only the CLI maps them to exit codes (1); the simulation itself never prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class SimError(ValueError):
    """The simulation cannot run on this input."""


class PlanReferenceError(SimError):
    """The plan names something the inputs do not have (or a replica that cannot run)."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        if not problems:
            raise ValueError("PlanReferenceError needs at least one problem")
        self.problems = list(problems)
        lines = [f"{label}: {what}" for label, what in self.problems[:5]]
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__("; ".join(lines) + more)


class TraceError(SimError):
    """A request trace file that cannot be read."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class SimSettingsError(SimError):
    """A setting outside its domain."""

    def __init__(self, field: str, value: object, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {message}")
