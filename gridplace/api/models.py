"""Request and response bodies of the HTTP API that are not gridplace kinds themselves.

Kinds (``Node``, ``PlacementPlan``, ``Assignment``, ``ThermalStatus``) are used as they are; these
models wrap them with what the API adds (effective health, generations, tokens, agent reports).
All camelCase on the wire, unknown fields refused, like the kinds.

The agent contract (the executor issue builds on it):
- ``GET /v1/nodes/{name}/assignments`` -> ``NodeAssignmentsResponse``: the latest plan's replicas
  on that node and the plan's generation; ``ETag`` is the generation, so ``If-None-Match`` gives
  304 while nothing changed.
- ``PUT /v1/nodes/{name}/state`` <- ``NodeStateReport``: what runs (``ReplicaState`` per replica)
  and Kubernetes-style conditions: ``Applied`` (the observed generation is fully in place),
  ``Progressing`` (starting or draining replicas), ``Degraded`` (a replica failed), each with
  status True/False/Unknown, a CamelCase ``reason`` and a ``message`` for people; ``stages``:
  the agent's pipeline stages (``StageState``: starting, ready with the address its peers use,
  failed), each one it holds in the latest plan (403 for a stage the plan gives another node).
- ``GET /v1/nodes/{name}/pipelines`` -> ``NodePipelinesResponse``: for each pipeline replica the
  node holds a stage of, every stage's phase and address as its node last reported them, or
  ``lost`` when that node is unhealthy, silent past the grace period or gone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from gridplace.api.security import Role
from gridplace.specs import (
    Assignment,
    Node,
    ObservationWindow,
    PlacementPlan,
    Precision,
    ThermalStatus,
)
from gridplace.specs.common import MAX_GENERATION, Name, StrictModel
from gridplace.specs.fixes import Fix, Refusal
from gridplace.specs.plan import Prewarm, PrewarmLevel

# On a dry run (``POST /v1/plans?dryRun=true``): the generation the answer was computed from
# (0: none), so that a client diffs against exactly that plan.
BASE_GENERATION_HEADER = "X-Gridplace-Base-Generation"

Reason = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Za-z0-9]{0,63}$")]
MAX_REPLICAS_REPORTED = 4_096
MAX_CONDITIONS = 16
MAX_STAGES_REPORTED = 256  # pipeline stages one node holds (a node holds one per pipeline)
PipelineId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Address = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class IssueOut(StrictModel):
    """One problem with a request: the field at fault (dotted camelCase path) and why."""

    message: str
    field: str | None = None
    document: int | None = Field(default=None, description="0-based document of the body.")
    line: int | None = Field(default=None, description="1-based line in the body.")


class ErrorResponse(StrictModel):
    """Every 4xx/5xx answer."""

    error: str = Field(description="unauthorized, forbidden, not_found, conflict, invalid, ...")
    message: str
    issues: list[IssueOut] = Field(default_factory=list)
    current_generation: int | None = Field(
        default=None, description="On 409: the latest plan generation."
    )


class HealthResponse(StrictModel):
    status: str = Field(description="ok")
    database: str = Field(description="sqlite or postgresql")
    version: str


class NodeResponse(StrictModel):
    """A registered node with its health as the planner sees it now."""

    name: Name
    node: Node = Field(description="The inventory and the status its agent last reported.")
    healthy: bool = Field(description="Usable by the planner now (reported healthy, not silent).")
    silent: bool = Field(description="Nothing heard for longer than the heartbeat grace period.")
    seconds_since_heard: float = Field(ge=0)
    last_heartbeat: datetime | None = None
    created_at: datetime
    updated_at: datetime


class NodeListResponse(StrictModel):
    items: list[NodeResponse]
    total: int = Field(ge=0)


class TelemetryReport(StrictModel):
    """A heartbeat with the node's health and thermal summary (its server-side time is used)."""

    healthy: bool = True
    thermal: ThermalStatus | None = None
    message: str | None = Field(default=None, max_length=1000)


class ProbesAccepted(StrictModel):
    name: Name
    samples: int = Field(ge=0)
    stored_documents: int = Field(ge=0, description="Probe documents kept for this submitter.")


class ObservationsAccepted(StrictModel):
    node: Name
    windows: int = Field(ge=0, description="Windows accepted from this request.")
    stored_windows: int = Field(ge=0, description="Windows kept for this node after retention.")


class ObservationOut(StrictModel):
    id: int
    received_at: datetime
    window: ObservationWindow


class ObservationListResponse(StrictModel):
    items: list[ObservationOut]


class CorrectionOut(StrictModel):
    """A learned correction: observed / predicted GPU part of a step (host overhead excluded),
    and the windows' weight behind it."""

    gpu: str
    model: str
    precision: str
    engine: str
    node: str | None = Field(default=None, description="Absent: the GPU type's correction.")
    decode_factor: float
    prefill_factor: float
    decode_weight: float = Field(ge=0, description="Full windows' worth of decode evidence.")
    prefill_weight: float = Field(ge=0)


class CalibrationResponse(StrictModel):
    id: int
    computed_at: datetime
    windows: int = Field(ge=0, description="Observation windows used.")
    ignored: int = Field(ge=0, description="Windows without usable figures or of unknown ids.")
    gpu_types: list[CorrectionOut]
    nodes: list[CorrectionOut]


class TokenIssued(StrictModel):
    """An issued token; ``token`` is shown this once and only its hash is kept."""

    token_id: str
    node: Name = Field(description="The node it belongs to, or the viewer's label.")
    role: Role = Role.NODE
    token: str
    created_at: datetime


class TokenInfo(StrictModel):
    token_id: str
    node: Name = Field(description="The node it belongs to, or the viewer's label.")
    role: Role = Role.NODE
    created_at: datetime
    revoked_at: datetime | None = None


class TokenListResponse(StrictModel):
    items: list[TokenInfo]


class PlanSummaryResponse(StrictModel):
    generation: int = Field(ge=1)
    name: Name
    created_at: datetime
    trigger: str = Field(description="submitted, requested (POST /v1/replan) or change.")
    reasons: list[str]
    replicas: int = Field(ge=0)
    unplaced: int = Field(ge=0)
    compile_seconds: float = Field(ge=0)
    solve_seconds: float = Field(ge=0)


class PlanListResponse(StrictModel):
    items: list[PlanSummaryResponse]


class WorkloadExplanation(StrictModel):
    name: Name
    placed: bool
    replicas: int = Field(ge=0)
    demand_rps: float | None = None
    capacity_rps: float | None = None
    slo_met: bool
    reasons: list[Refusal] = Field(description="Why it is not (fully) placed, as data.")
    summary: list[str] = Field(default_factory=list, description="The reasons as text.")
    hints: list[str]
    fixes: list[Fix] = Field(default_factory=list, description="Changes tried that place it.")


def stored_explanation(entry: dict[str, Any]) -> WorkloadExplanation:
    """An explanation entry as a plan stored it; one stored before the reasons were data has
    their text in ``reasons``: it becomes the summary."""
    reasons = entry.get("reasons", [])
    if any(isinstance(reason, str) for reason in reasons):
        entry = {**entry, "reasons": [], "summary": reasons}
    return WorkloadExplanation.model_validate(entry)


class ExplanationResponse(StrictModel):
    generation: int
    workloads: list[WorkloadExplanation]


class WorkloadCheckResponse(StrictModel):
    name: str
    placeable: bool
    reasons: list[str]


class ValidationResponse(StrictModel):
    """Whether every workload can be placed (``gridplace validate --format json`` without the
    schema issues, which are a 422 here)."""

    valid: bool
    workloads: list[WorkloadCheckResponse]


class ReplanResponse(StrictModel):
    replanned: bool
    reasons: list[str]
    generation: int | None = Field(default=None, description="The new generation, if any.")
    skipped: str | None = Field(default=None, description="Why not: no-plan, no-change, ...")
    plan: PlacementPlan | None = None


class PipelineStageRole(StrictModel):
    """A later stage (index >= 1) this node runs of a pipeline replica whose endpoint, the first
    stage, is on another node."""

    pipeline: PipelineId = Field(description="The pipeline's id (``specs.plan.pipeline_id``).")
    stage: int = Field(ge=1, le=63, description="This node's stage, 0 being the first.")
    assignment: Assignment = Field(description="The whole replica; its stages name the peers.")


class NodeAssignmentsResponse(StrictModel):
    """What the agent on ``node`` should run: the latest plan's replicas there (a pipeline
    replica's first stage among them), and the later stages it holds of pipelines."""

    node: Name
    generation: int | None = Field(default=None, description="None: no plan exists yet.")
    plan: str | None = None
    assignments: list[Assignment]
    prewarm: list[Prewarm] | None = Field(
        default=None, description="The plan's warm standbys on this node (absent: none)."
    )
    stages: list[PipelineStageRole] | None = Field(
        default=None, description="Absent when the node holds no later stage of a pipeline."
    )


class ReplicaPhase(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class ReplicaState(StrictModel):
    """One replica the agent observes on its node."""

    workload: Name
    gpus: list[Annotated[int, Field(ge=0, le=63)]] = Field(min_length=1, max_length=64)
    precision: Precision | None = None
    phase: ReplicaPhase
    endpoint: str | None = Field(default=None, max_length=255, description="host:port it serves.")
    message: str | None = Field(default=None, max_length=1000)


class ConditionType(StrEnum):
    APPLIED = "Applied"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StrictModel):
    type: ConditionType
    status: ConditionStatus
    reason: Reason | None = Field(default=None, description="CamelCase, e.g. WeightsDownloading.")
    message: str | None = Field(default=None, max_length=1000)
    last_transition_time: datetime | None = None


class StandbyPhase(StrEnum):
    WAITING = "waiting"  # the node's assigned replicas start first
    FETCHING = "fetching"
    READY = "ready"  # weights verified on the node's disk
    LOADED = "loaded"  # a vram standby's engine runs idle on its GPUs (its port in the message)
    SKIPPED = "skipped"  # the cache is full of weights in use
    FAILED = "failed"
    UNAVAILABLE = "unavailable"  # the agent's manifest has no weights for it


class StandbyState(StrictModel):
    """One of the plan's warm standbys on the node, as its agent keeps it."""

    workload: Name
    precision: Precision
    level: PrewarmLevel = Field(description="The level the plan asked for.")
    state: StandbyPhase
    message: str | None = Field(default=None, max_length=1000)


class ReportedStagePhase(StrEnum):
    """A pipeline stage as its node reports it."""

    STARTING = "starting"
    READY = "ready"  # its process answers at ``address``
    FAILED = "failed"


class StagePhase(StrEnum):
    """A pipeline stage as the API judges it (``NodePipelinesResponse``)."""

    PENDING = "pending"  # its node has not reported it
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    LOST = "lost"  # its node is unhealthy, silent or gone: its report is not believed


class StageState(StrictModel):
    """One pipeline stage the reporting node holds."""

    pipeline: PipelineId
    stage: int = Field(ge=0, le=63)
    phase: ReportedStagePhase
    address: Address | None = Field(default=None, description="host:port its peers reach.")
    message: str | None = Field(default=None, max_length=1000)


class NodeStateReport(StrictModel):
    """What an agent reports it actually runs, and how applying its assignments goes."""

    observed_generation: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GENERATION,
        description="The plan generation the agent is applying.",
    )
    replicas: list[ReplicaState] = Field(default_factory=list, max_length=MAX_REPLICAS_REPORTED)
    standbys: list[StandbyState] = Field(default_factory=list, max_length=MAX_REPLICAS_REPORTED)
    conditions: list[Condition] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    stages: list[StageState] = Field(default_factory=list, max_length=MAX_STAGES_REPORTED)


class NodeStateResponse(StrictModel):
    node: Name
    reported_at: datetime
    report: NodeStateReport


class PipelineStageStatus(StrictModel):
    stage: int = Field(ge=0)
    node: Name
    phase: StagePhase
    address: Address | None = None
    message: str | None = Field(default=None, max_length=1000)


class PipelineStatus(StrictModel):
    """Every stage of one pipeline replica, first to last."""

    pipeline: PipelineId
    workload: Name
    stages: list[PipelineStageStatus]


class NodePipelinesResponse(StrictModel):
    """The pipelines ``node`` holds a stage of, in the latest plan."""

    node: Name
    generation: int | None = None
    pipelines: list[PipelineStatus]


class TopologyNode(StrictModel):
    name: Name
    region: str
    provider: str
    healthy: bool


class TopologyLink(StrictModel):
    source: str
    target: str
    p50_ms: float | None = Field(default=None, description="None: probed but unreachable.")
    p99_ms: float | None = None
    samples: int = Field(ge=0)
    loss_ratio: float = Field(ge=0, le=1)


class TopologyResponse(StrictModel):
    nodes: list[TopologyNode]
    links: list[TopologyLink]
    total_links: int = Field(ge=0)
