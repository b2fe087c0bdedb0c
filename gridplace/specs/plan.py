"""The ``PlacementPlan`` kind: where each replica runs, what it is predicted to do, and why not."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gridplace.specs.common import (
    API_VERSION,
    Metadata,
    Name,
    Precision,
    ShortText,
    StrictModel,
)
from gridplace.specs.fixes import Fix, Refusal


class LatencyAtDemand(StrictModel):
    """Expected latency of one replica at the load the demand puts on it (the workload's demand
    routed in proportion to capacity), from the queueing model."""

    load_rps: float = Field(ge=0, description="Requests/s the demand routes to this replica.")
    ttft_p50_ms: float = Field(ge=0, description="Median TTFT incl. network RTT, ms.")
    ttft_p99_ms: float = Field(ge=0, description="99th percentile TTFT incl. network RTT, ms.")
    itl_ms: float = Field(ge=0, description="Mean inter-token latency, ms.")


class Prediction(StrictModel):
    """What the performance model expects of one replica."""

    ttft_ms: float = Field(
        ge=0, description="Time to first token incl. network RTT at full booked load, ms."
    )
    itl_ms: float = Field(ge=0, description="Inter-token latency at full booked load, ms.")
    capacity_rps: float = Field(ge=0, description="Requests/s one replica sustains in SLO.")
    vram_gib: float = Field(ge=0, description="VRAM per GPU it occupies, GiB.")
    at_demand: LatencyAtDemand | None = Field(
        default=None, description="Expected latency at the demand's load (absent if unknown)."
    )


class PipelineStage(StrictModel):
    """One stage of a pipeline replica: a contiguous, half-open layer range ``[first, last)`` on
    GPUs of one node (tensor parallel inside the node when several)."""

    node: Name
    gpus: list[int] = Field(min_length=1, max_length=64, description="GPU indices on the node.")
    layers: tuple[int, int] = Field(description="[first, last) layer range, half-open.")

    @model_validator(mode="after")
    def _range(self) -> PipelineStage:
        first, last = self.layers
        if first < 0 or last <= first:
            raise ValueError(
                f"layers {list(self.layers)} is not a range [first, last) with first < last"
            )
        if len(set(self.gpus)) != len(self.gpus) or any(i < 0 for i in self.gpus):
            raise ValueError(f"gpus {self.gpus} lists a GPU twice or a negative index")
        return self


class Assignment(StrictModel):
    """One replica of a workload on GPUs of one node."""

    workload: Name
    node: Name
    gpus: list[int] = Field(min_length=1, max_length=64, description="GPU indices on the node.")
    precision: Precision
    tensor_parallel: int = Field(default=1, ge=1, le=64)
    gpu_share: Literal[1, 2, 4] = Field(
        default=1,
        description="The replica gets 1/gpuShare of its GPU's memory and bandwidth (1 = whole).",
    )
    predicted: Prediction | None = None
    pinned: bool = Field(default=False, description="Replanning keeps it where it is.")
    stages: list[PipelineStage] | None = Field(
        default=None,
        max_length=64,
        description=(
            "A pipeline replica's stages in order (absent: the replica lives on one node). The "
            "first stage is on ``node``/``gpus``, where the replica's endpoint runs."
        ),
    )

    @model_validator(mode="after")
    def _gpus(self) -> Assignment:
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"gpus {self.gpus} lists a GPU twice")
        if any(index < 0 for index in self.gpus):
            raise ValueError(f"gpus {self.gpus} has a negative index")
        if self.gpu_share > 1 and self.tensor_parallel > 1:
            raise ValueError("a tensor-parallel replica takes whole GPUs (gpuShare must be 1)")
        if len(self.gpus) != self.tensor_parallel:
            raise ValueError(
                f"tensorParallel ({self.tensor_parallel}) must equal the number of gpus "
                f"({len(self.gpus)})"
            )
        if self.stages is not None:
            _check_stages(self)
        return self


def _check_stages(assignment: Assignment) -> None:
    """A pipeline: at least two stages on distinct nodes, contiguous from layer 0, the first on
    the assignment's own node and GPUs, whole GPUs only."""
    stages = assignment.stages or []
    if len(stages) < 2:
        raise ValueError(f"a pipeline has at least 2 stages, got {len(stages)}")
    if stages[0].node != assignment.node or stages[0].gpus != assignment.gpus:
        raise ValueError("the first stage must be on the assignment's node and gpus")
    if assignment.gpu_share != 1:
        raise ValueError("a pipeline replica takes whole GPUs (gpuShare must be 1)")
    nodes = [s.node for s in stages]
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"stages list a node twice: {nodes}")
    expected = 0
    for i, stage in enumerate(stages):
        if stage.layers[0] != expected:
            raise ValueError(
                f"stage {i} starts at layer {stage.layers[0]}, expected {expected} (contiguous)"
            )
        expected = stage.layers[1]


def pipeline_id(assignment: Assignment) -> str | None:
    """A pipeline replica's identity, the same on every stage's node and in the API: the
    workload and a digest of what the replica is (precision, tensor parallel, stages). None for a
    replica on one node. A replan that changes any stage makes a new pipeline (a new id)."""
    if not assignment.stages:
        return None
    what = {
        "workload": assignment.workload,
        "precision": assignment.precision.value,
        "tensorParallel": assignment.tensor_parallel,
        "stages": [[s.node, s.gpus, list(s.layers)] for s in assignment.stages],
    }
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{assignment.workload}.{digest[:12]}"


class PrewarmLevel(StrEnum):
    DISK = "disk"  # weights in the node's cache: a start skips the download
    VRAM = "vram"  # weights loaded, engine idle: a start takes seconds (costs the GPU)


class Prewarm(StrictModel):
    """A warm standby: a node that holds a workload's weights ready for the replica it would
    run (failover after a node loss, or scaling up), without serving."""

    workload: Name
    node: Name
    gpus: list[int] = Field(min_length=1, max_length=64, description="GPU indices it would use.")
    precision: Precision
    tensor_parallel: int = Field(default=1, ge=1, le=64)
    gpu_share: Literal[1, 2, 4] = 1
    level: PrewarmLevel
    weights_gib: float = Field(ge=0, description="Disk (and, at vram, VRAM) the weights take.")
    cost_per_hour: float = Field(
        ge=0, description="What holding it costs: the GPUs' price at vram, 0 at disk."
    )

    @model_validator(mode="after")
    def _gpus(self) -> Prewarm:
        if len(set(self.gpus)) != len(self.gpus) or any(g < 0 for g in self.gpus):
            raise ValueError(f"gpus {self.gpus} must be distinct indices >= 0")
        if len(self.gpus) != self.tensor_parallel:
            raise ValueError(
                f"tensorParallel ({self.tensor_parallel}) must equal the number of gpus "
                f"({len(self.gpus)})"
            )
        return self


class PlacementPlanSpec(StrictModel):
    assignments: list[Assignment] = Field(default_factory=list, max_length=1_000_000)
    prewarm: list[Prewarm] = Field(
        default_factory=list, max_length=100_000, description="Warm standbys (not serving)."
    )


Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class SolverSummary(StrictModel):
    status: ShortText = Field(description="OPTIMAL, FEASIBLE, INFEASIBLE, ... or a baseline name.")
    wall_seconds: float = Field(ge=0)
    objective: float | None = None
    bound: float | None = None
    gap: float | None = Field(default=None, ge=0, description="Relative optimality gap.")
    strategy: ShortText | None = Field(default=None, description="cpsat, greedy, capacity-only.")


class WorkloadCoverage(StrictModel):
    name: Name
    demand_rps: float = Field(ge=0)
    capacity_rps: float = Field(ge=0)
    slo_met: bool
    replicas: int | None = Field(default=None, ge=0)
    cost_per_hour: float | None = Field(default=None, ge=0)
    capacity_after_node_loss_rps: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Capacity left after losing the one node, exempt or not, whose loss takes the most; "
            "absent when redundancy.nodeFailures is 0."
        ),
    )
    worst_node: Name | None = Field(
        default=None, description="The node whose loss takes the most capacity."
    )
    worst_node_exempt: bool | None = Field(
        default=None,
        description=(
            "Whether that node is exempt from the failover rule (redundancy.exemptReliability): "
            "the planner did not plan for its loss."
        ),
    )


class Unplaced(StrictModel):
    workload: Name
    reasons: list[Reason] = Field(min_length=1, max_length=200)
    hints: list[Reason] = Field(default_factory=list, max_length=50)
    fixes: list[Fix] = Field(
        default_factory=list, max_length=20, description="Changes tried and found to place it."
    )
    refusals: list[Refusal] = Field(
        default_factory=list, max_length=200, description="The reasons as data."
    )


class PlacementPlanStatus(StrictModel):
    solver: SolverSummary | None = None
    workloads: list[WorkloadCoverage] = Field(default_factory=list)
    unplaced: list[Unplaced] = Field(default_factory=list)
    warnings: list[Reason] = Field(
        default_factory=list,
        max_length=1000,
        description="Placed workloads at risk, e.g. short of their failover capacity.",
    )
    notes: list[Reason] = Field(
        default_factory=list,
        max_length=1000,
        description="How placed workloads were placed where it needs saying (pipelines, and why).",
    )
    cost_per_hour: float | None = Field(default=None, ge=0)


class PlacementPlan(StrictModel):
    """A ``PlacementPlan`` document."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["PlacementPlan"] = "PlacementPlan"
    metadata: Metadata
    spec: PlacementPlanSpec
    status: PlacementPlanStatus | None = None
