"""Errors of the topology package.

    TopologyError                  base; never raised itself
        ProbeDataError             samples handed to the ingest API are malformed (a NaN or
                                   negative RTT, arrays of different lengths, a bad endpoint name)
        UnknownEndpointError       a query named an endpoint the topology has never heard of
        RegionTableError           the built-in region-to-region table is missing or malformed
        PeersFileError             a prober peers file is unreadable or invalid
            carries .issues: list[SpecIssue] (file, line, message), every problem found

Errors carry data, not just text. Only ``gridplace.api`` maps them to exit codes (1) or HTTP
statuses. An unreachable peer is not an error: the prober reports it inside its result.
"""

from __future__ import annotations

from gridplace.specs import SpecIssue


class TopologyError(ValueError):
    """Base of every error the topology package raises on bad input."""


class ProbeDataError(TopologyError):
    """Samples given to ``SampleLog`` are malformed; the message says which and why."""


class UnknownEndpointError(TopologyError, KeyError):
    """A query named an endpoint that is neither a known node, region nor cache."""

    def __init__(self, endpoint: str, hint: str = "") -> None:
        self.endpoint = endpoint
        super().__init__(f"unknown endpoint {endpoint!r}" + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RegionTableError(TopologyError):
    """The region-to-region RTT table (package data) cannot be read."""


class PeersFileError(TopologyError):
    """A peers file for the prober is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        if not issues:
            raise ValueError("PeersFileError needs at least one issue")
        self.issues = list(issues)
        shown = "; ".join(str(issue) for issue in self.issues[:5])
        more = f" (and {len(self.issues) - 5} more)" if len(self.issues) > 5 else ""
        super().__init__(shown + more)
