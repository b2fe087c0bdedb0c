"""Demand history and forecasts: ``/v1/workloads/{name}/demand`` and ``.../forecast``.

A gateway that counts requests posts them per traffic source and window; the forecast route
turns the hourly history into the next window's mean and upper-quantile rate
(``planner.forecast``) and says when a plan for it must be in place (``validFrom``): the lead
time before the first hour whose upper quantile exceeds the capacity of the latest plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import AwareDatetime, Field, field_validator

from gridplace.api.deps import AdminDep, PrincipalDep, StateDep
from gridplace.api.errors import Issue, NotFound
from gridplace.api.routes import AUTH_ERRORS, errors
from gridplace.api.store.demand import DemandSample, add_demand, rate_history
from gridplace.planner.forecast import ForecastError, forecast, valid_from
from gridplace.specs.common import Name, StrictModel

router = APIRouter(prefix="/v1/workloads", tags=["demand"])
MAX_SAMPLES = 10_000
STEP_S = 3600.0
WorkloadName = Annotated[str, Path(pattern=r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")]


class DemandWindow(StrictModel):
    source: Name = Field(description="Client region the requests came from.")
    window_start: AwareDatetime = Field(description="Start of the window, ISO 8601 with zone.")
    window_s: float = Field(gt=0, le=86_400, description="Window length, s.")
    requests: int = Field(ge=0, le=1_000_000_000, description="Requests sent in it.")

    @field_validator("window_start", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        if not isinstance(value, str | datetime):  # a bare number would read as epoch seconds
            raise ValueError("expected an ISO 8601 date-time string")
        return value

    @field_validator("window_s", "requests", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        return value


class DemandPost(StrictModel):
    samples: list[DemandWindow] = Field(min_length=1, max_length=MAX_SAMPLES)


class DemandStored(StrictModel):
    workload: Name
    stored: int = Field(ge=0)


class DemandHistory(StrictModel):
    workload: Name
    start: datetime
    step_s: float
    sources: dict[str, list[float]] = Field(description="Mean requests/s per step, per source.")


class DemandForecast(StrictModel):
    workload: Name
    start: datetime = Field(description="Start of the first forecast step.")
    step_s: float
    quantile: float
    mean_rps: list[float]
    upper_rps: list[float]
    plan_rps: float = Field(description="The rate to plan for: the window's highest upper rate.")
    capacity_rps: float = Field(description="Capacity of the latest plan (0 without one).")
    valid_from: datetime | None = Field(
        description="When a plan for planRps must be in place; null when the latest plan holds."
    )


@router.post("/{name}/demand", response_model=DemandStored, responses=errors(*AUTH_ERRORS, 413))
async def post_demand(
    name: WorkloadName, body: DemandPost, _: AdminDep, state: StateDep
) -> DemandStored:
    """Store requests counted per source and window (a gateway's tally)."""
    samples = [DemandSample(s.source, s.window_start, s.window_s, s.requests) for s in body.samples]
    stored = await run_in_threadpool(add_demand, state.store, name, samples, state.clock())
    return DemandStored(workload=name, stored=stored)


@router.get("/{name}/demand", response_model=DemandHistory, responses=errors(*AUTH_ERRORS))
def get_demand(
    name: WorkloadName,
    _: PrincipalDep,
    state: StateDep,
    hours: Annotated[int, Query(ge=1, le=24 * 35, description="History length.")] = 168,
) -> DemandHistory:
    """Hourly mean request rates per source over the last ``hours``."""
    now = _hour(state.clock())
    history = rate_history(state.store, name, now - timedelta(hours=hours), now, STEP_S)
    return DemandHistory(
        workload=name, start=history.start, step_s=STEP_S,
        sources={k: [round(v, 6) for v in rates] for k, rates in history.by_source.items()},
    )  # fmt: skip


@router.get("/{name}/forecast", response_model=DemandForecast, responses=errors(*AUTH_ERRORS, 404))
def get_forecast(
    name: WorkloadName,
    _: PrincipalDep,
    state: StateDep,
    history_hours: Annotated[int, Query(alias="historyHours", ge=8, le=24 * 35)] = 24 * 35,
    horizon_hours: Annotated[int, Query(alias="horizonHours", ge=1, le=168)] = 24,
    quantile: Annotated[float, Query(ge=0.5, le=0.999)] = 0.95,
    lead_s: Annotated[float, Query(alias="leadS", ge=0, le=86_400)] = 900.0,
) -> DemandForecast:
    """The next ``horizonHours`` of demand from the stored history, and when to plan for it."""
    now = _hour(state.clock())
    history = rate_history(state.store, name, now - timedelta(hours=history_hours), now, STEP_S)
    total = history.total
    if len(total) == 0 or not total.any():
        message = f"no demand history for workload {name!r}: POST its demand first"
        raise NotFound(message, [Issue(message, field="name")])
    first = next(i for i, v in enumerate(total) if v > 0)  # before the first sample: unknown
    try:
        result = forecast(total[first:], STEP_S, horizon_hours, quantile)
    except ForecastError as error:
        message = f"too little demand history for workload {name!r}: {error}"
        raise NotFound(message, [Issue(message, field="historyHours")]) from None
    capacity = _capacity(state, name)
    due = valid_from(now.timestamp(), result, capacity, lead_s)
    return DemandForecast(
        workload=name, start=now, step_s=STEP_S, quantile=quantile,
        mean_rps=[round(v, 6) for v in result.mean_rps],
        upper_rps=[round(v, 6) for v in result.upper_rps],
        plan_rps=round(result.plan_rps, 6), capacity_rps=round(capacity, 6),
        valid_from=None if due is None else datetime.fromtimestamp(due, now.tzinfo),
    )  # fmt: skip


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _capacity(state: StateDep, workload: str) -> float:
    latest = state.store.latest_plan()
    status = latest.plan.status if latest else None
    found = [w.capacity_rps for w in (status.workloads if status else []) if w.name == workload]
    return found[0] if found else 0.0
