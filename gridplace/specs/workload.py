"""The ``InferenceWorkload`` kind: one model served to some traffic under an SLO."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gridplace.specs.common import (
    API_VERSION,
    CatalogRef,
    ClaimLevel,
    Engine,
    EngineOptions,
    Metadata,
    Name,
    Precision,
    StrictModel,
)
from gridplace.specs.model_arch import ModelArchitectureSpec

SHARE_TOLERANCE = 1e-6


class ServiceLevel(StrictModel):
    """Latency targets every request should meet."""

    ttft_ms: float = Field(gt=0, le=600_000, description="Time to first token target, ms.")
    itl_ms: float = Field(gt=0, le=60_000, description="Inter-token latency target, ms.")


class TrafficSource(StrictModel):
    region: Name = Field(description="Client region requests come from.")
    share: float = Field(gt=0, le=1, description="Share of requests from this region.")


class BurstWindow(StrictModel):
    """How far the arrival rate rises above its mean over windows of one length."""

    window_s: float = Field(gt=0, le=86_400, description="Window length, s.")
    peak_to_mean: float = Field(
        ge=1,
        le=10_000,
        description="The request rate over windows of this length that leaves 1% of the "
        "requests above it / mean rate (Poisson noise taken out).",
    )


class Burstiness(StrictModel):
    """How bursty arrivals are: the rate's peaks over windows of several lengths (its arrival
    envelope). ``gridplace traffic fit TRACE.csv`` measures it."""

    windows: list[BurstWindow] = Field(min_length=1, max_length=16)

    @field_validator("windows")
    @classmethod
    def _distinct(cls, windows: list[BurstWindow]) -> list[BurstWindow]:
        lengths = [w.window_s for w in windows]
        if len(set(lengths)) != len(lengths):
            raise ValueError(f"window lengths must be distinct, got {lengths}")
        return sorted(windows, key=lambda w: w.window_s)


class Traffic(StrictModel):
    """The load to serve."""

    requests_per_second: float = Field(gt=0, le=1_000_000, description="Mean arrival rate.")
    prompt_tokens: int = Field(ge=1, le=10_000_000, description="Mean prompt length, tokens.")
    output_tokens: int = Field(ge=1, le=1_000_000, description="Mean output length, tokens.")
    sources: list[TrafficSource] = Field(min_length=1, max_length=64)
    burstiness: Burstiness | None = Field(
        default=None,
        description=(
            "Measured peaks of the arrival rate; the planner books capacity for them. Absent: "
            "unknown, booked with the planner's flat default headroom."
        ),
    )

    @field_validator("sources")
    @classmethod
    def _shares(cls, sources: list[TrafficSource]) -> list[TrafficSource]:
        regions = [s.region for s in sources]
        duplicated = sorted({r for r in regions if regions.count(r) > 1})
        if duplicated:
            raise ValueError(f"sources list region(s) {duplicated} more than once")
        total = math.fsum(s.share for s in sources)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"source shares must sum to 1, they sum to {total:g}")
        return sources


DEFAULT_MIN_SHARE = 0.25  # a replica carries a quarter of the target to count (ReplicaBounds)


class ReplicaBounds(StrictModel):
    min: int = Field(default=1, ge=0, le=10_000)
    max: int = Field(default=64, ge=1, le=10_000)
    min_share: float = Field(
        default=DEFAULT_MIN_SHARE,
        ge=0,
        le=1,
        description=(
            "The share of the workload's booked demand (what the plan covers) a replica must carry "
            "to count toward replicas.min, spread and failover (or the largest replica any "
            "option offers, when that is less): a replica that serves 1% of the load does not "
            "survive a domain's loss. Smaller replicas may still add capacity."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) must be <= replicas.max ({self.max})")
        return self


class SpreadDomain(StrEnum):
    PROVIDER = "provider"
    REGION = "region"


class Spread(StrictModel):
    """Anti-affinity: at most ``max_per_domain`` replicas that carry load (replicas.minShare)
    per provider (or region). When replicas.min is larger, a domain also holds at most
    maxPerDomain / replicas.min of the target capacity (or one replica of the largest kind): the
    share a domain would hold if replicas.min equal replicas served the workload."""

    across: SpreadDomain
    max_per_domain: int = Field(ge=1, le=10_000)


class Redundancy(StrictModel):
    """How many node failures a workload's capacity must ride out (none unless asked: N+1 costs
    capacity and solver time)."""

    node_failures: int = Field(
        default=0,
        ge=0,
        le=1,
        description=(
            "Node losses after which the demand (with the planner's headroom) must still be "
            "covered: 1 keeps N+1 capacity on distinct nodes, 0 (the default) turns it off."
        ),
    )
    exempt_reliability: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Nodes whose observed availability (reliability) is at least this are trusted to "
            "stay up and need no standby (compared to 0.01, rounded down). Unset (the default), "
            "every node may fail. The plan's capacity after a node loss always counts every "
            "node, and names an exempt one whose loss the N+1 rule did not cover."
        ),
    )


class PrewarmBudget(StrictModel):
    """What a workload may spend on warm standbys (``PlacementPlan.spec.prewarm``)."""

    disk_gib: float = Field(
        default=0, ge=0, le=1_000_000, description="Disk on other nodes for its weights, GiB."
    )
    idle_gpu_budget_per_hour: float = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="USD/hour for GPUs that hold its weights loaded and idle.",
    )


class TrustRequirement(StrictModel):
    """Which nodes may serve this workload at all."""

    min_claims: ClaimLevel = Field(default=ClaimLevel.SELF_REPORTED)
    min_reliability: float = Field(default=0.0, ge=0, le=1)


class PipelinePolicy(StrictModel):
    """A replica may be split over nodes as a pipeline of stages (contiguous layer ranges, one
    node each): the planner then weighs pipelines beside single-node replicas."""

    max_stages: int = Field(
        default=4, ge=2, le=16, description="Most nodes one pipeline replica may span."
    )


class InferenceWorkloadSpec(StrictModel):
    model: CatalogRef | ModelArchitectureSpec = Field(
        description="Model catalog id / Hugging Face repo, or an inline architecture."
    )
    precisions: list[Precision] = Field(
        min_length=1, max_length=5, description="Acceptable precisions, preferred first."
    )
    engine: Engine = Field(default=Engine.VLLM)
    engine_options: EngineOptions | None = Field(
        default=None, description="Engine settings (flash attention, n_ubatch, KV cache type)."
    )
    slo: ServiceLevel
    traffic: Traffic
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    spread: Spread | None = None
    redundancy: Redundancy = Field(
        default_factory=Redundancy, description="Failures the placement must survive."
    )
    trust: TrustRequirement | None = None
    prewarm: PrewarmBudget | None = Field(
        default=None, description="Warm standbys for failover; none unless a budget is given."
    )
    pipeline: PipelinePolicy | None = Field(
        default=None,
        description="Allow pipeline replicas over several nodes; absent: one node per replica.",
    )
    priority: int = Field(default=100, ge=0, le=1_000_000, description="Higher is served first.")

    @field_validator("precisions")
    @classmethod
    def _unique_precisions(cls, precisions: list[Precision]) -> list[Precision]:
        seen: set[Precision] = set()
        for precision in precisions:
            if precision in seen:
                raise ValueError(f"precision {precision.value!r} is listed twice")
            seen.add(precision)
        return precisions


class InferenceWorkload(StrictModel):
    """An ``InferenceWorkload`` document."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["InferenceWorkload"] = "InferenceWorkload"
    metadata: Metadata
    spec: InferenceWorkloadSpec

    @property
    def name(self) -> str:
        return self.metadata.name
