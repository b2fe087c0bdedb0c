"""Latency probes from anywhere (the admin's: region probes, imports) and the topology view."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from gridplace.api.deps import AdminDep, PrincipalDep, ServiceDep, StateDep
from gridplace.api.models import ProbesAccepted, TopologyLink, TopologyNode, TopologyResponse
from gridplace.api.routes import AUTH_ERRORS, errors, raw_body
from gridplace.api.routes.nodes import PROBE_DOCUMENTS_KEPT, read_probes
from gridplace.topology import SampleLog

router = APIRouter(prefix="/v1", tags=["topology"])
ADMIN_SUBMITTER = "admin"
# The admin imports whole measurement campaigns; keep more of them than a node's.
ADMIN_PROBE_DOCUMENTS_KEPT = 8 * PROBE_DOCUMENTS_KEPT


@router.post(
    "/probes",
    response_model=ProbesAccepted,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 413),
    openapi_extra=raw_body("A LatencyProbes document (any endpoints).", array=False),
)
async def post_probes(request: Request, _: AdminDep, state: StateDep) -> ProbesAccepted:
    """Store a LatencyProbes document (replacing an earlier one of the same name)."""
    probes = await read_probes(request, state.settings.max_list_items)
    stored = await run_in_threadpool(
        state.store.add_probes, ADMIN_SUBMITTER, probes, state.clock(), ADMIN_PROBE_DOCUMENTS_KEPT
    )
    return ProbesAccepted(
        name=probes.metadata.name, samples=len(probes.spec.samples), stored_documents=stored
    )


@router.get(
    "/topology",
    response_model=TopologyResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def topology(
    _: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=100_000, description="Most links listed.")] = 1000,
) -> TopologyResponse:
    """Nodes with their region and health, and the measured links (decay-weighted summaries)."""
    view = service.grid()
    log = SampleLog()
    log.add_probes(service.store.probes())
    pairs = log.summarize(None, None) if log.sample_count else None
    links: list[TopologyLink] = []
    total = 0
    if pairs is not None:
        total = len(pairs)
        for row in range(min(total, limit)):
            reachable = bool(pairs.samples[row] > 0)
            links.append(
                TopologyLink(
                    source=pairs.endpoints[int(pairs.lo[row])],
                    target=pairs.endpoints[int(pairs.hi[row])],
                    p50_ms=round(float(pairs.p50_ms[row]), 3) if reachable else None,
                    p99_ms=round(float(pairs.p99_ms[row]), 3) if reachable else None,
                    samples=int(pairs.samples[row]),
                    loss_ratio=min(1.0, max(0.0, float(pairs.loss_ratio[row]))),
                )
            )
    nodes = [
        TopologyNode(
            name=v.name,
            region=v.node.spec.region,
            provider=v.node.spec.provider,
            healthy=v.healthy,
        )
        for v in view.nodes
    ]
    return TopologyResponse(nodes=nodes, links=links, total_links=total)
