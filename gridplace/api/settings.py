"""Settings of the HTTP service, read from ``GRIDPLACE_*`` environment variables.

Owns: every knob of ``gridplace serve`` with its default, unit and bounds, validated once at start.
Must not: read files or reach the database (the app factory does that with these values).
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridplace.planner.parts import RayMissing, require_ray

DEFAULT_DATABASE_URL = "sqlite:///gridplace.db"  # relative: the working directory of the server


class Settings(BaseSettings):
    """What the service may be told; ``GRIDPLACE_DATABASE_URL=...`` sets ``database_url``."""

    model_config = SettingsConfigDict(env_prefix="GRIDPLACE_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        min_length=1,
        description="SQLAlchemy URL: sqlite:///file.db (WAL mode) or postgresql+psycopg://...",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="The planners' token. Unset: one is generated at first start, printed once "
        "and stored hashed.",
    )
    max_body_bytes: int = Field(
        default=8 * 2**20, ge=1024, le=256 * 2**20, description="Largest request body, bytes."
    )
    max_documents: int = Field(
        default=2_000, ge=1, le=100_000, description="Most documents in one request body."
    )
    max_list_items: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Most items in one list of a request (probe samples, reported replicas).",
    )
    rate_limit_per_s: float = Field(
        default=20.0, gt=0, le=1e6, description="Sustained requests/s per node token."
    )
    rate_limit_burst: int = Field(
        default=60, ge=1, le=1_000_000, description="Requests a node may send at once."
    )
    heartbeat_grace_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="A node silent longer than this is treated as gone (its replicas move).",
    )
    derate_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Change of a node's throttle ratio (absolute, 0..1) that triggers a replan.",
    )
    mass_silence_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="When more than this share of nodes falls silent at once, silence is "
        "blamed on the server's own network and triggers no replan.",
    )
    observations_kept_per_node: int = Field(
        default=5_000,
        ge=1,
        le=1_000_000,
        description="Observation windows kept per node (newest by window end).",
    )
    observation_max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        le=90 * 86_400,
        description="Observation windows received longer ago than this are deleted.",
    )
    observation_window_s: float = Field(
        default=60.0, gt=0, le=86_400, description="Agents' observation window (SLO trigger)."
    )
    calibration_capacity_change: float = Field(
        default=0.10,
        gt=0,
        le=10,
        description="Relative move of a replica's predicted capacity, under new corrections, "
        "that triggers a replan.",
    )
    slo_attainment_target: float = Field(
        default=0.99,
        gt=0,
        le=1,
        description="Observed SLO attainment under this for two windows running triggers a replan.",
    )
    replan_interval_s: float = Field(
        default=15.0, ge=0, le=86_400, description="Period of the change check; 0 turns it off."
    )
    cost_check_interval_s: float = Field(
        default=3_600.0,
        ge=0,
        le=30 * 86_400,
        description="The change check solves a plan afresh under the current calibration at most "
        "this often (and not sooner after a plan is made), and replans when that plan costs "
        "less by more than 5%; 0 turns this off.",
    )
    plan_time_limit_s: float = Field(
        default=10.0, gt=0, le=3_600, description="Default solver time limit of one plan, s."
    )
    max_plan_time_limit_s: float = Field(
        default=60.0, gt=0, le=3_600, description="Largest time limit a request may ask for, s."
    )
    max_concurrent_solves: int = Field(
        default=1, ge=1, le=64, description="Plans solved at once; others wait their turn."
    )
    solve_in_subprocess: bool = Field(
        default=True,
        description="Solve plans in a worker process, so that the API keeps answering meanwhile.",
    )
    solver_part_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Local processes that solve a plan's independent parts at once (1: in turn).",
    )
    ray_address: str | None = Field(
        default=None,
        max_length=256,
        description="Solve a plan's independent parts on this Ray cluster (HOST:PORT, or 'local'; "
        "needs gridplace[scale]).",
    )
    solve_wait_s: float = Field(
        default=120.0, gt=0, le=3_600, description="How long a plan request waits for its turn."
    )
    worker_threads: int = Field(
        default=8, ge=1, le=256, description="Threads that run blocking request work."
    )
    sync_interval_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often a server compares the latest plan generation and the revoked "
        "tokens with the database: the longest another server's plan or revocation goes unseen "
        "(on PostgreSQL a notification makes it immediate).",
    )
    heartbeat_flush_s: float = Field(
        default=0.1,
        ge=0,
        le=60,
        description="Heartbeats answered 204 ('Prefer: return=minimal', as the agent sends) are "
        "written in batches this often: a killed server loses at most this long of them (a clean "
        "shutdown writes them all). 0: each is committed before its answer.",
    )
    token_cache_s: float = Field(
        default=3_600.0,
        ge=0,
        le=3_600,
        description="How long a verified token skips its database read and hash check; "
        "revocations are honoured within sync_interval_s regardless.",
    )

    @field_validator("ray_address")
    @classmethod
    def _ray_installed(cls, address: str | None) -> str | None:
        try:
            require_ray(address)
        except RayMissing as error:
            raise ValueError(str(error)) from None
        return address
