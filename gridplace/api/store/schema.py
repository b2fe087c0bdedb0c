"""The tables of the store, as SQLAlchemy 2 declarative classes (the head revision's shape).

Owns: column names, types and indexes. The Alembic revisions in ``migrations/versions`` create
exactly this; a test compares the migrated database with this metadata.
Must not: hold queries (``store.py``) or know about HTTP.

Documents (Node, PlacementPlan, LatencyProbes, reports) are kept as JSON (JSONB on PostgreSQL) in
their camelCase form, next to the few columns that queries filter or sort on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_LENGTH = 63  # the Name pattern of the specs allows 63 characters


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite stores no zone, so naive values read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware (UTC) one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_document() -> JSON:
    return JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: json_document(),
        list[Any]: json_document(),
    }


class ServerSetting(Base):
    """Key/value settings the server keeps for itself (the admin token's hash)."""

    __tablename__ = "server_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NodeRow(Base):
    """A registered node: its inventory document and the status its agent reported last."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    document: Mapped[dict[str, Any]]  # the Node document without status
    status: Mapped[dict[str, Any] | None]  # the NodeStatus document, as reported
    healthy: Mapped[bool] = mapped_column(Boolean)  # as reported (silence is judged on read)
    throttle_ratio: Mapped[float] = mapped_column(Float, server_default="0")  # revision 0002
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NodeTokenRow(Base):
    """An issued token: only its salted hash; ``token_id`` is the public part of the token.
    ``role`` (revision 0004) is ``node`` (``node`` names the node) or ``viewer`` (``node`` holds
    the viewer's label)."""

    __tablename__ = "node_tokens"
    __table_args__ = (Index("ix_node_tokens_node", "node"),)

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node: Mapped[str] = mapped_column(String(NAME_LENGTH))
    salt: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16), server_default="node")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PlanRow(Base):
    """One plan generation. The primary key is the optimistic-concurrency guard: two writers
    computing from the same generation both insert ``generation + 1`` and one of them fails."""

    __tablename__ = "plans"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str] = mapped_column(String(32))  # submitted | requested | change
    reasons: Mapped[list[Any]]  # why it was computed (changes seen), for people
    document: Mapped[dict[str, Any]]  # the PlacementPlan document
    inputs: Mapped[list[Any]]  # the submitted documents (workloads...), what a replan re-solves
    options: Mapped[dict[str, Any]]  # strategy, budgetPerHour, timeLimitSeconds of the request
    basis: Mapped[dict[str, Any]]  # node -> {healthy, throttleRatio} the plan was computed on
    explanation: Mapped[list[Any]]  # per workload: placed?, reasons, hints
    replicas: Mapped[int] = mapped_column(Integer)
    unplaced: Mapped[int] = mapped_column(Integer)
    compile_s: Mapped[float] = mapped_column(Float)
    solve_s: Mapped[float] = mapped_column(Float)


class PlanAssignmentRow(Base):
    """A plan's assignments again, one row each, so an agent's pull reads only its own rows."""

    __tablename__ = "plan_assignments"
    __table_args__ = (Index("ix_plan_assignments_node", "node", "generation"),)

    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    node: Mapped[str] = mapped_column(String(NAME_LENGTH))
    assignment: Mapped[dict[str, Any]]


class RateBucketRow(Base):
    """A token bucket shared by the servers on one PostgreSQL (revision 0006; unlogged there)."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at_s: Mapped[float] = mapped_column(Float)
    granted: Mapped[int] = mapped_column(Integer)  # tokens the last lease handed out


class ProbeRow(Base):
    """A LatencyProbes document as received (revision 0002); the newest few per submitter."""

    __tablename__ = "probes"
    __table_args__ = (Index("ix_probes_submitter_name", "submitter", "name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submitter: Mapped[str] = mapped_column(String(NAME_LENGTH + 8))  # node name or "admin"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    samples: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]]


class NodeStateRow(Base):
    """What a node's agent reported it actually runs (revision 0002)."""

    __tablename__ = "node_states"

    node: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    observed_generation: Mapped[int | None] = mapped_column(Integer)
    report: Mapped[dict[str, Any]]
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DemandSampleRow(Base):
    """Requests one traffic source sent to a workload in one window (revision 0003): posted by a
    gateway that counts them, or taken from a node's observation window (``origin``, ``node``:
    revision 0007); the history demand forecasts are made from."""

    __tablename__ = "demand_samples"
    __table_args__ = (Index("ix_demand_samples_workload_start", "workload", "window_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workload: Mapped[str] = mapped_column(String(NAME_LENGTH))
    source: Mapped[str] = mapped_column(String(NAME_LENGTH))  # a client region
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_s: Mapped[float] = mapped_column(Float)
    requests: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(16), server_default="gateway")  # or "observed"
    node: Mapped[str | None] = mapped_column(String(NAME_LENGTH), nullable=True)  # observed on


class ObservationRow(Base):
    """One observation window an agent posted (revision 0005); retention in ``Store``."""

    __tablename__ = "observations"
    __table_args__ = (
        Index("ix_observations_node_end", "node", "end_s"),
        Index("ix_observations_workload_end", "workload", "end_s"),
        Index("ix_observations_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str] = mapped_column(String(NAME_LENGTH))
    workload: Mapped[str] = mapped_column(String(NAME_LENGTH))
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    window: Mapped[dict[str, Any]]  # the ObservationWindow, camelCase


class CalibrationRow(Base):
    """A calibration computed from observations (revision 0005); the newest few are kept."""

    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    document: Mapped[dict[str, Any]]  # planner.recalibrate.Calibration.as_dict()


def utc_now() -> datetime:
    return datetime.now(UTC)
