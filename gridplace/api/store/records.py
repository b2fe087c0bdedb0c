"""What the store hands out: plain frozen records, never ORM objects bound to a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gridplace.api.security import Role, TokenHash
from gridplace.specs import Node, ObservationWindow, PlacementPlan


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
class PlanAssignmentIndex:
    """The latest plan's assignments grouped by node, read at once to serve every agent's pull
    from memory."""

    generation: int | None  # None: no plan yet
    plan_name: str | None
    by_node: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    prewarm_by_node: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # standbys


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
