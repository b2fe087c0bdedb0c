"""``/healthz`` (is the server and its database answering) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from gridplace import __version__
from gridplace.api.deps import StateDep
from gridplace.api.models import HealthResponse
from gridplace.api.routes import errors

router = APIRouter(tags=["health"])
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/healthz",
    response_model=HealthResponse,
    response_model_exclude_none=True,
    responses=errors(503),
)
def healthz(state: StateDep) -> HealthResponse:
    """200 when the server answers and its database does too; 503 otherwise. No token needed."""
    state.store.ping()
    return HealthResponse(status="ok", database=state.store.backend, version=__version__)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **errors(503),
    },
)
def metrics(state: StateDep) -> PlainTextResponse:
    """Prometheus text format: plans solved, solve time, nodes by health, request latency."""
    judged = state.service.pulses()  # no node document: a scrape must not read the grid
    healthy = judged.healthy_count
    counts = {"healthy": healthy, "unhealthy": len(judged.pulses) - healthy}
    counts["silent"] = len(judged.silent)
    text = state.metrics.render(counts, state.store.latest_generation())
    return PlainTextResponse(text, media_type=PROMETHEUS_CONTENT_TYPE)
