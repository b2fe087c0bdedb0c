"""Observations: engine windows an agent posts for its node, reading them back, and the
calibration learned from them (``GET /v1/calibration``).

A node token may post only for its own node, and every window must name that node (403 for a
node token, 422 for the admin: the admin may post for any node, but a window for another node in
the same document is a mistake). Each window's request count also joins its workload's demand
history (``store.demand``: a gateway's counts win where both exist). Retention (``Settings``):
windows received more than ``observation_max_age_s`` ago are deleted, and each node keeps its
newest ``observations_kept_per_node`` (by window end); both are applied on every post.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from gridplace.api.bodies import read_documents
from gridplace.api.deps import PrincipalDep, ServiceDep, StateDep, require_node_access
from gridplace.api.errors import Forbidden, InvalidRequest, NotFound
from gridplace.api.models import (
    CalibrationResponse,
    CorrectionOut,
    ObservationListResponse,
    ObservationOut,
    ObservationsAccepted,
)
from gridplace.api.routes import AUTH_ERRORS, errors, raw_body
from gridplace.api.routes.nodes import NodeName
from gridplace.api.store.demand import add_observed_demand
from gridplace.specs import Observations
from gridplace.specs.observation import MAX_WINDOWS_PER_DOCUMENT

router = APIRouter(prefix="/v1", tags=["observations"])
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"  # specs.common.Name


@router.post(
    "/nodes/{name}/observations",
    response_model=ObservationsAccepted,
    responses=errors(*AUTH_ERRORS, 404, 413),
    openapi_extra=raw_body("An Observations document: this node's engine windows.", array=False),
)
async def post_observations(
    name: NodeName, request: Request, principal: PrincipalDep, state: StateDep
) -> ObservationsAccepted:
    """Store this node's observation windows (what its engines served, and how fast)."""
    require_node_access(principal, name)
    # Parsed in a worker thread: a node's 2 MiB of windows must not stall the event loop.
    documents = await read_documents(request, 1, {"Observations"}, MAX_WINDOWS_PER_DOCUMENT)
    observations: Observations = documents[0].obj
    foreign = sorted({w.node for w in observations.spec.windows if w.node != name})
    if foreign:
        message = f"windows of node {', '.join(foreign[:5])}, not of node {name!r}"
        if not principal.is_admin:
            raise Forbidden(f"a node may only report its own observations: {message}")
        raise InvalidRequest.field("spec.windows", message)
    if await run_in_threadpool(state.store.node, name) is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    settings = state.settings
    windows, now = list(observations.spec.windows), state.clock()
    stored = await run_in_threadpool(
        state.store.add_observations,
        name,
        windows,
        now,
        settings.observations_kept_per_node,
        settings.observation_max_age_s,
    )
    # The windows' request counts are also the workloads' demand history (store.demand says
    # how they and a gateway's counts are kept apart).
    await run_in_threadpool(add_observed_demand, state.store, name, windows, now)
    return ObservationsAccepted(
        node=name, windows=len(observations.spec.windows), stored_windows=stored
    )


@router.get(
    "/observations",
    response_model=ObservationListResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def list_observations(
    _: PrincipalDep,
    state: StateDep,
    workload: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    node: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ObservationListResponse:
    """The newest windows (oldest first), optionally of one workload and/or one node."""
    records = state.store.observations(workload=workload, node=node, limit=limit)
    return ObservationListResponse(
        items=[ObservationOut(id=r.id, received_at=r.received_at, window=r.window) for r in records]
    )


@router.get(
    "/calibration",
    response_model=CalibrationResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def get_calibration(_: PrincipalDep, service: ServiceDep) -> CalibrationResponse:
    """The learned corrections: per GPU type (what the planner books) and per node. Estimated
    anew when windows arrived since the last estimate (the periodic check does the same)."""
    record = service.recalibrate()
    if record is None:
        raise NotFound("no calibration yet: no observation windows have been posted")
    document = record.document
    return CalibrationResponse(
        id=record.id,
        computed_at=record.computed_at,
        windows=int(document.get("windows", 0)),
        ignored=int(document.get("ignored", 0)),
        gpu_types=[CorrectionOut.model_validate(row) for row in document.get("gpuTypes", [])],
        nodes=[CorrectionOut.model_validate(row) for row in document.get("nodes", [])],
    )
