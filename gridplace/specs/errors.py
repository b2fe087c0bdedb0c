"""Errors of the specs package.

    SpecError                 the input is not a valid gridplace document set
        carries .issues: list[SpecIssue], one per problem found (all of them, not just the first)

A ``SpecIssue`` names where the problem is (file, document index, line, field path) and what was
expected. The CLI maps a ``SpecError`` to exit code 1; the API to HTTP 422.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem in the input: where it is and what was expected there."""

    message: str
    file: str | None = None
    document: int | None = None  # 0-based index of the YAML document inside its file
    line: int | None = None  # 1-based line of the offending value
    field: str | None = None  # dotted camelCase path, e.g. "spec.traffic.sources[1].share"

    def location(self) -> str:
        """``file:line (document N) at field`` with whatever parts are known."""
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file + (f":{self.line}" if self.line is not None else ""))
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts) if parts else "<input>"

    def __str__(self) -> str:
        return f"{self.location()}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view, used by ``validate --format json`` and the API."""
        return {
            "file": self.file,
            "document": self.document,
            "line": self.line,
            "field": self.field,
            "message": self.message,
        }


class SpecError(ValueError):
    """The input is not a valid set of gridplace documents; ``issues`` lists every problem."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        if not issues:
            raise ValueError("SpecError needs at least one issue")
        self.issues = list(issues)
        summary = "; ".join(str(i) for i in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(summary + more)

    @classmethod
    def single(cls, message: str, **where: object) -> SpecError:
        """A SpecError with one issue; ``where`` takes SpecIssue's location fields."""
        return cls([SpecIssue(message=message, **where)])  # type: ignore[arg-type]
