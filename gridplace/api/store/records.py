"""What the store hands out: plain frozen records, never ORM objects bound to a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridplace.api.security import Role, TokenHash
from gridplace.specs import Assignment, Node, ObservationWindow, PlacementPlan
from gridplace.specs.plan import pipeline_id


@dataclass(frozen=True)
class NodeRecord:
    """A registered node; ``node.status`` is what its agent reported (silence not applied)."""

    node: Node
    created_at: datetime
    updated_at: datetime
    last_heartbeat: datetime | None

    @property
    def name(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class NodeBasis:
    """What the planner was told about a node when a plan was computed."""

    healthy: bool
    throttle_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "throttleRatio": self.throttle_ratio}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeBasis:
        return cls(healthy=bool(data["healthy"]), throttle_ratio=float(data["throttleRatio"]))


@dataclass(frozen=True)
class NodePulse:
    """A node's reported health and throttle and when it was last heard of, without its document
    (``Store.node_pulses``: what the periodic check looks at before it reads the whole grid)."""

    name: str
    reported: NodeBasis  # as its agent reported (silence is judged on read)
    last_heartbeat: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class NewPlan:
    """A plan to store as ``plan.metadata.generation``, computed from ``base_generation``."""

    plan: PlacementPlan
    base_generation: int  # 0 when there was no plan before
    trigger: str
    reasons: list[str]
    inputs: list[dict[str, Any]]
    options: dict[str, Any]
    basis: dict[str, NodeBasis]
    explanation: list[dict[str, Any]]
    compile_s: float
    solve_s: float


@dataclass(frozen=True)
class PlanSummary:
    generation: int
    name: str
    created_at: datetime
    trigger: str
    reasons: list[str]
    replicas: int
    unplaced: int
    compile_s: float
    solve_s: float


@dataclass(frozen=True)
class PlanRecord:
    summary: PlanSummary
    plan: PlacementPlan
    inputs: list[dict[str, Any]]
    options: dict[str, Any]
    basis: dict[str, NodeBasis]
    explanation: list[dict[str, Any]]

    @property
    def generation(self) -> int:
        return self.summary.generation


@dataclass(frozen=True)
class NodeTokenRecord:
    """An issued token: a node's (``node`` is the node) or a viewer's (``node`` is its label)."""

    token_id: str
    node: str
    hash: TokenHash
    created_at: datetime
    revoked_at: datetime | None
    role: Role = Role.NODE


@dataclass(frozen=True)
class StateRecord:
    node: str
    observed_generation: int | None
    report: dict[str, Any]
    reported_at: datetime


@dataclass(frozen=True)
class NodeAssignments:
    generation: int | None  # None: no plan yet
    plan_name: str | None
    assignments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PipelineEntry:
    """One pipeline replica of the latest plan: its assignment (camelCase, as stored) and the
    node of each stage, first to last."""

    assignment: dict[str, Any]
    stage_nodes: tuple[str, ...]


@dataclass(frozen=True)
class PlanAssignmentIndex:
    """The latest plan's assignments grouped by node, read at once to serve every agent's pull
    from memory; pipeline replicas also by id and by every node that holds one of their stages
    (built once per generation: a pull or a stage report looks them up, never scans the plan)."""

    generation: int | None  # None: no plan yet
    plan_name: str | None
    by_node: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    prewarm_by_node: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # standbys
    pipelines: dict[str, PipelineEntry] = field(default_factory=dict)
    stages_by_node: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        generation: int,
        plan_name: str,
        rows: list[tuple[str, dict[str, Any]]],
        standbys: list[dict[str, Any]],
    ) -> PlanAssignmentIndex:
        """From (node, assignment) rows in plan order and the plan's standbys; only pipeline
        rows are parsed."""
        by_node: dict[str, list[dict[str, Any]]] = {}
        pipelines: dict[str, PipelineEntry] = {}
        stages_by_node: dict[str, list[tuple[str, int]]] = {}
        for node, assignment in rows:
            by_node.setdefault(node, []).append(assignment)
            if not assignment.get("stages"):
                continue
            key = pipeline_id(Assignment.model_validate(assignment))
            if key is None or key in pipelines:  # an identical replica twice: one pipeline
                continue
            nodes = tuple(stage["node"] for stage in assignment["stages"])
            pipelines[key] = PipelineEntry(assignment, nodes)
            for index, stage_node in enumerate(nodes):
                stages_by_node.setdefault(stage_node, []).append((key, index))
        prewarm: dict[str, list[dict[str, Any]]] = {}
        for standby in standbys:
            prewarm.setdefault(standby["node"], []).append(standby)
        return cls(generation, plan_name, by_node, prewarm, pipelines, stages_by_node)


@dataclass(frozen=True)
class ObservationRecord:
    id: int
    received_at: datetime
    window: ObservationWindow


@dataclass(frozen=True)
class CalibrationRecord:
    id: int
    computed_at: datetime
    document: dict[str, Any]  # planner.recalibrate.Calibration.as_dict()
