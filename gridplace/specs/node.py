"""The ``Node`` kind: one machine of one provider, and the status its agent writes back."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from gridplace.specs.common import (
    API_VERSION,
    CatalogRef,
    ClaimLevel,
    Interconnect,
    Metadata,
    Name,
    StrictModel,
)
from gridplace.specs.gpu import PCIeLink


class GPUGroup(StrictModel):
    """``count`` GPUs of one catalog model in this node, with optional measured overrides."""

    model: CatalogRef = Field(description="GPU catalog id (or a name NVML/amdsmi reports).")
    count: int = Field(ge=1, le=64, description="How many GPUs of this model.")
    memory_gib: float | None = Field(
        default=None, gt=0, le=4096, description="Overrides the catalog VRAM per GPU, GiB."
    )
    memory_bandwidth_gbps: float | None = Field(
        default=None, gt=0, le=100_000, description="Overrides catalog memory bandwidth, GB/s."
    )
    pcie: PCIeLink | None = Field(default=None, description="Overrides the catalog host link.")


class NodeSpec(StrictModel):
    """What a provider offers: GPUs, where they are, what they cost."""

    region: Name = Field(description="Site its probes and client traffic are measured against.")
    provider: Name = Field(description="Failure and trust domain.")
    price_per_hour: float = Field(ge=0, le=100_000, description="USD per hour, whole node.")
    gpus: list[GPUGroup] = Field(min_length=1, max_length=16, description="The node's GPUs.")
    interconnect: Interconnect = Field(
        default=Interconnect.PCIE, description="Link between this node's GPUs."
    )
    network_gbps: float = Field(
        default=1.0, gt=0, le=10_000, alias="networkGbps", description="Uplink, gigabits/s."
    )
    reliability: float | None = Field(
        default=None, ge=0, le=1, description="Observed availability, 0..1."
    )
    claims: ClaimLevel = Field(
        default=ClaimLevel.SELF_REPORTED, description="How the inventory was verified."
    )
    address: str | None = Field(
        default=None, max_length=255, description="host:port where its agent/prober answers."
    )

    @property
    def gpu_count(self) -> int:
        return sum(group.count for group in self.gpus)


class ThermalStatus(StrictModel):
    """Telemetry summary over a window, written by the agent."""

    throttle_ratio: float = Field(
        ge=0, le=1, description="Share of time clocks were thermally or power capped."
    )
    window_hours: float = Field(default=24, gt=0, le=24 * 365, description="Window length, h.")
    sustained_clock_ratio: float | None = Field(
        default=None, gt=0, le=1.5, description="Mean SM clock / max SM clock over the window."
    )
    p95_temperature_c: float | None = Field(default=None, ge=-50, le=150)
    forecast_throttle_ratio: float | None = Field(
        default=None, ge=0, le=1, description="Expected throttle ratio over the next window."
    )


class NodeStatus(StrictModel):
    """What the node's agent last reported."""

    thermal: ThermalStatus | None = None
    healthy: bool = True
    last_heartbeat: datetime | None = None
    message: str | None = Field(default=None, max_length=1000)


class Node(StrictModel):
    """A ``Node`` document."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["Node"] = "Node"
    metadata: Metadata
    spec: NodeSpec
    status: NodeStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def throttle_ratio(self) -> float:
        """The derate the planner books: forecast if known, else the observed ratio, else 0."""
        thermal = self.status.thermal if self.status else None
        if thermal is None:
            return 0.0
        if thermal.forecast_throttle_ratio is not None:
            return thermal.forecast_throttle_ratio
        return thermal.throttle_ratio

    @property
    def healthy(self) -> bool:
        return self.status.healthy if self.status else True
