"""The ``LatencyProbes`` kind: round-trip times that probes measured between grid endpoints.

An endpoint is a node name, ``region/<region>`` for a client region, or ``cache/<name>`` for a
weights cache.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gridplace.specs.common import API_VERSION, Metadata, StrictModel

Endpoint = Annotated[
    str,
    StringConstraints(pattern=r"^((region|cache)/)?[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"),
]
MAX_SAMPLES_PER_PAIR = 10_000


class ProbeMethod(StrEnum):
    TCP_CONNECT = "tcp-connect"  # time of the TCP three-way handshake
    TCP_INFO = "tcp-info"  # the kernel's smoothed RTT of a live connection
    ICMP = "icmp"
    OTHER = "other"


class ProbeSample(StrictModel):
    """RTTs measured from ``source`` to ``target`` in one probe round."""

    source: Endpoint
    target: Endpoint
    rtt_ms: list[Annotated[float, Field(ge=0, le=60_000)]] = Field(
        default_factory=list, max_length=MAX_SAMPLES_PER_PAIR, description="Round trips, ms."
    )
    lost: int = Field(default=0, ge=0, le=MAX_SAMPLES_PER_PAIR, description="Probes unanswered.")
    measured_at: datetime | None = Field(
        default=None, description="When measured; defaults to the document's measuredAt."
    )
    method: ProbeMethod = ProbeMethod.TCP_CONNECT
    error: str | None = Field(default=None, max_length=500, description="Why probes failed.")

    @model_validator(mode="after")
    def _meaningful(self) -> ProbeSample:
        if self.source == self.target:
            raise ValueError(f"source and target are both {self.source!r}")
        if not self.rtt_ms and self.lost == 0:
            raise ValueError("a sample needs rttMs values or a lost count (unreachable)")
        return self

    @property
    def reachable(self) -> bool:
        return bool(self.rtt_ms)


class LatencyProbesSpec(StrictModel):
    measured_at: datetime | None = Field(default=None, description="Default time of samples.")
    samples: list[ProbeSample] = Field(max_length=1_000_000)


class LatencyProbes(StrictModel):
    """A ``LatencyProbes`` document."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["LatencyProbes"] = "LatencyProbes"
    metadata: Metadata
    spec: LatencyProbesSpec
