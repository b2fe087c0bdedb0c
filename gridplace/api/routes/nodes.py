"""Nodes: inventory registration, telemetry, probes from a node, assignments and reported state.

A node token may act only for its own node (403 otherwise), may not claim ``attested``
inventory (only the admin can vouch for that), and may not change the placement facts the
operator registered (``ownership.py``: kept, or 409 when the agent says otherwise); the admin may
act for any node.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter

from gridplace.api.bodies import json_body, read_documents
from gridplace.api.deps import (
    AdminDep,
    AppState,
    PrincipalDep,
    ServiceDep,
    SettingsDep,
    StateDep,
    StoreDep,
    bearer_token,
    principal_of,
    require_node_access,
)
from gridplace.api.errors import Conflict, Forbidden, InvalidRequest, Issue, NotFound
from gridplace.api.grid import NodeView
from gridplace.api.models import (
    NodeAssignmentsResponse,
    NodeListResponse,
    NodePipelinesResponse,
    NodeResponse,
    NodeStateReport,
    NodeStateResponse,
    ProbesAccepted,
    TelemetryReport,
)
from gridplace.api.ownership import merge_agent_registration
from gridplace.api.pipelines import foreign_stages, later_stages, pipeline_statuses
from gridplace.api.routes import AUTH_ERRORS, BEARER, errors, json_body_schema, raw_body
from gridplace.api.security import Principal
from gridplace.api.store import PlanAssignmentIndex
from gridplace.specs import Assignment, ClaimLevel, LatencyProbes, Node, NodeStatus, build_bundle
from gridplace.specs.plan import Prewarm

router = APIRouter(prefix="/v1/nodes", tags=["nodes"])
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
PREFER_MAX_LENGTH = 256
NodeName = Annotated[
    str,
    Path(
        pattern=NAME_PATTERN,
        description="The node's name (metadata.name of its Node document).",
    ),
]
JSON = "application/json"
MINIMAL = "return=minimal"
MINIMAL_APPLIED = {"Preference-Applied": MINIMAL}
# What an agent can establish about its own machine; stronger claims need the admin.
NODE_CLAIM_CEILING = ClaimLevel.BENCHMARKED


def node_response(view: NodeView) -> NodeResponse:
    record = view.record
    return NodeResponse(
        name=record.name,
        node=view.node,
        healthy=view.healthy,
        silent=view.silent,
        seconds_since_heard=round(view.silent_s, 3),
        last_heartbeat=record.last_heartbeat,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _view(service: ServiceDep, name: str) -> NodeView:
    view = service.node_view(name)
    if view is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    return view


@router.get(
    "",
    response_model=NodeListResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS),
)
def list_nodes(
    _: PrincipalDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    after: Annotated[
        str | None,
        Query(
            pattern=NAME_PATTERN,
            description="Only nodes named after this one (the last name of the previous page).",
        ),
    ] = None,
) -> NodeListResponse:
    """Registered nodes by name, with their health as the planner sees it now. One page is read
    (``after``, then ``offset``, then ``limit``), never the whole grid; ``total`` counts all."""
    views, total = service.nodes_page(limit, offset, after)
    return NodeListResponse(items=[node_response(v) for v in views], total=total)


@router.post(
    "",
    response_model=NodeListResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 413),
    openapi_extra=raw_body("Node documents (e.g. a whole inventory file).", array=True),
)
async def register_nodes(
    request: Request, _: AdminDep, service: ServiceDep, settings: SettingsDep
) -> NodeListResponse:
    """Register or replace many nodes at once (the admin importing an inventory): all or none."""
    documents = await read_documents(
        request, settings.max_documents, {"Node"}, settings.max_list_items
    )
    nodes = build_bundle(documents).nodes  # duplicates refused, GPU names resolved
    records = await run_in_threadpool(service.store.upsert_nodes, nodes, service.clock())
    views = [service.view_of(record) for record, _ in records]
    return NodeListResponse(items=[node_response(v) for v in views], total=len(views))


@router.put(
    "/{name}",
    response_model=NodeResponse,
    response_model_exclude_none=True,
    responses={
        **errors(*AUTH_ERRORS, 409, 413),
        201: {"model": NodeResponse, "description": "Registered."},
    },
    openapi_extra=raw_body("A Node document (what `gridplace inventory` prints).", array=False),
)
async def register_node(
    name: NodeName,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    service: ServiceDep,
    settings: SettingsDep,
) -> NodeResponse:
    """Register or replace a node's inventory (200 replaced, 201 registered)."""
    require_node_access(principal, name)
    documents = await read_documents(request, 1, {"Node"}, settings.max_list_items)
    node: Node = build_bundle(documents).nodes[0]  # GPU names resolved to catalog ids
    if node.name != name:
        raise InvalidRequest.field(
            "metadata.name", f"the document names node {node.name!r} but the URL names {name!r}"
        )
    _check_claims(principal, node)
    if not principal.is_admin:
        node = await run_in_threadpool(_keep_operator_fields, service, node)
    record, created = await run_in_threadpool(service.store.upsert_node, node, service.clock())
    response.status_code = 201 if created else 200
    return node_response(await run_in_threadpool(service.view_of, record))


def _keep_operator_fields(service: ServiceDep, node: Node) -> Node:
    """A node token's registration keeps the operator's placement facts (``ownership.py``)."""
    stored = service.store.node(node.name)
    if stored is None:
        return node
    merged, conflicts = merge_agent_registration(stored.node, node)
    if conflicts:
        messages = [conflict.message(node.name) for conflict in conflicts]
        raise Conflict(
            "; ".join(messages),
            None,
            [Issue(message=m, field=c.field) for m, c in zip(messages, conflicts, strict=True)],
        )
    return merged


def _check_claims(principal: Principal, node: Node) -> None:
    claims = node.spec.claims
    if not principal.is_admin and claims.rank > NODE_CLAIM_CEILING.rank:
        raise Forbidden(
            f"a node token may claim at most {NODE_CLAIM_CEILING.value!r} inventory, not "
            f"{claims.value!r}: attestation is vouched for by the admin"
        )


@router.get(
    "/{name}",
    response_model=NodeResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def get_node(name: NodeName, principal: PrincipalDep, service: ServiceDep) -> NodeResponse:
    require_node_access(principal, name)
    return node_response(_view(service, name))


@router.delete(
    "/{name}", status_code=204, response_class=Response, responses=errors(*AUTH_ERRORS, 404)
)
def delete_node(name: NodeName, _: AdminDep, store: StoreDep) -> Response:
    """Deregister a node (its replicas move at the next change check). Its tokens stay valid;
    revoke them separately if the machine is not coming back."""
    if not store.delete_node(name):
        raise NotFound(f"no node {name!r} is registered")
    return Response(status_code=204)


TELEMETRY = TypeAdapter(TelemetryReport)


@router.post(
    "/{name}/telemetry",
    response_model=NodeResponse,
    response_model_exclude_none=True,
    responses={
        **errors(*AUTH_ERRORS, 400, 404, 413),
        204: {"description": "Recorded; asked for with 'Prefer: return=minimal'."},
    },
    openapi_extra=json_body_schema(TelemetryReport, "A heartbeat.") | BEARER,
)
async def post_telemetry(
    name: NodeName,
    request: Request,
    prefer: Annotated[
        str | None,
        Header(
            max_length=PREFER_MAX_LENGTH,
            description="'return=minimal': answer 204 without the node (RFC 7240); an agent "
            "reporting every few seconds needs nothing back.",
        ),
    ] = None,
) -> Response:
    """A heartbeat: health, thermal summary, message. The server's clock stamps it.

    A lean route (an agent's every few seconds): the token, the body and the answer are handled
    here rather than by dependencies, a body model and a response model. With 'Prefer:
    return=minimal' the heartbeat is held in memory and written with the next batch
    (``heartbeat_flush_s``); without it, it is committed before the node is read back."""
    state: AppState = request.app.state.gridplace
    principal = await principal_of(request, state, bearer_token(request))
    require_node_access(principal, name)
    report = json_body(await request.body(), request.headers.get("content-type"), TELEMETRY)
    status = NodeStatus(healthy=report.healthy, thermal=report.thermal, message=report.message)
    store, now = state.store, state.clock()
    if prefer is not None and MINIMAL in prefer.lower():
        known = store.buffer_known_heartbeat(name, status, now) or await run_in_threadpool(
            store.record_heartbeat, name, status, now
        )
        if not known:
            raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
        return Response(status_code=204, headers=MINIMAL_APPLIED)
    answer = await run_in_threadpool(_report_status, state, name, status, now)
    return Response(answer, media_type=JSON)


def _report_status(state: AppState, name: str, status: NodeStatus, now: datetime) -> bytes:
    record = state.store.report_status(name, status, now)
    if record is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    # Serialized here, once: the response model would validate the whole Node again.
    answer = node_response(state.service.view_of(record))
    return answer.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


@router.post(
    "/{name}/probes",
    response_model=ProbesAccepted,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404, 413),
    openapi_extra=raw_body("A LatencyProbes document measured from this node.", array=False),
)
async def post_node_probes(
    name: NodeName,
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
) -> ProbesAccepted:
    """Probes measured from this node: every sample's source must be the node itself."""
    require_node_access(principal, name)
    probes = await read_probes(request, state.settings.max_list_items)
    foreign = sorted({s.source for s in probes.spec.samples if s.source != name})
    if foreign:
        message = f"samples measured from {', '.join(foreign[:5])}, not from node {name!r}"
        if not principal.is_admin:
            raise Forbidden(f"a node may only report its own probes: {message}")
        raise InvalidRequest.field("spec.samples", message)
    if await run_in_threadpool(state.store.node, name) is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    stored = await run_in_threadpool(
        state.store.add_probes, name, probes, state.clock(), PROBE_DOCUMENTS_KEPT
    )
    return ProbesAccepted(
        name=probes.metadata.name, samples=len(probes.spec.samples), stored_documents=stored
    )


PROBE_DOCUMENTS_KEPT = 8  # per submitter; the topology decays old samples anyway


async def read_probes(request: Request, max_samples: int) -> LatencyProbes:
    documents = await read_documents(request, 1, {"LatencyProbes"}, max_samples)
    probes: LatencyProbes = documents[0].obj
    if len(probes.spec.samples) > max_samples:
        raise InvalidRequest.field(
            "spec.samples",
            f"{len(probes.spec.samples)} samples; at most {max_samples} in one request",
        )
    return probes


@router.get(
    "/{name}/assignments",
    response_model=NodeAssignmentsResponse,
    response_model_exclude_none=True,
    responses={
        **errors(*AUTH_ERRORS, 404),
        304: {"description": "The generation in If-None-Match is still the latest."},
    },
    openapi_extra=BEARER,
)
async def get_assignments(
    name: NodeName,
    request: Request,
    if_none_match: Annotated[
        str | None, Header(description="The ETag of the last answer: 304 if unchanged.")
    ] = None,
) -> Response:
    """What this node's agent should run: the latest plan's replicas on it, and its generation.

    Answered from memory: a current ETag gets 304 without touching the database, and a node's
    answer is read and serialized once per generation (``shared.PlanCache``). A lean route,
    like telemetry's."""
    state: AppState = request.app.state.gridplace
    principal = await principal_of(request, state, bearer_token(request))
    require_node_access(principal, name)
    plans = state.shared.plans
    etag = f'"{plans.generation}"'
    if if_none_match is not None and if_none_match.strip() == etag:
        return Response(status_code=304, headers={"ETag": etag})
    found = plans.cached(name)
    if found is None:
        found = await run_in_threadpool(plans.answer, name, partial(_render_assignments, state))
    if found is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    generation, body = found
    return Response(body, media_type=JSON, headers={"ETag": f'"{generation}"'})


def _render_assignments(state: AppState, name: str, index: PlanAssignmentIndex) -> bytes | None:
    """``name``'s answer as JSON bytes, once per generation; None for an unregistered node."""
    documents = index.by_node.get(name, [])
    standbys = index.prewarm_by_node.get(name, [])
    stages = later_stages(index, name)
    if not documents and not standbys and not stages and not state.store.is_node(name):
        return None
    answer = NodeAssignmentsResponse(
        node=name,
        generation=index.generation,
        plan=index.plan_name,
        assignments=[Assignment.model_validate(a) for a in documents],
        prewarm=[Prewarm.model_validate(p) for p in standbys] or None,
        stages=stages or None,
    )
    return answer.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


@router.put(
    "/{name}/state",
    response_model=NodeStateResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 400, 404, 413),
)
def put_state(
    name: NodeName,
    report: NodeStateReport,
    principal: PrincipalDep,
    service: ServiceDep,
    state: StateDep,
) -> NodeStateResponse:
    """The agent's report of what actually runs and how applying the plan goes, with the
    pipeline stages it holds (each one the latest plan gives this node)."""
    require_node_access(principal, name)
    if report.stages:
        foreign = foreign_stages(state.shared.plans.index(), name, report.stages)
        if foreign:
            message = f"node {name!r} reports stages it does not hold: {'; '.join(foreign[:5])}"
            if not principal.is_admin:
                raise Forbidden(message)
            raise InvalidRequest.field("stages", message)
    if service.store.node(name) is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    record = service.store.put_state(
        name, report.observed_generation, report.to_yaml_dict(), service.clock()
    )
    return NodeStateResponse(node=name, reported_at=record.reported_at, report=report)


@router.get(
    "/{name}/state",
    response_model=NodeStateResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def get_state(name: NodeName, principal: PrincipalDep, store: StoreDep) -> NodeStateResponse:
    require_node_access(principal, name)
    record = store.state(name)
    if record is None:
        raise NotFound(f"node {name!r} has not reported its state")
    return NodeStateResponse(
        node=name,
        reported_at=record.reported_at,
        report=NodeStateReport.model_validate(record.report),
    )


@router.get(
    "/{name}/pipelines",
    response_model=NodePipelinesResponse,
    response_model_exclude_none=True,
    responses=errors(*AUTH_ERRORS, 404),
)
def get_pipelines(
    name: NodeName, principal: PrincipalDep, state: StateDep
) -> NodePipelinesResponse:
    """Every pipeline replica this node holds a stage of, with each stage's phase and address as
    its node reported them (``lost`` when that node is unhealthy or silent): what the first
    stage's agent waits on before it starts the server, and what tells it to stop."""
    require_node_access(principal, name)
    service = state.service
    if service.store.node(name) is None:
        raise NotFound(f"no node {name!r} is registered: PUT /v1/nodes/{name} first")
    index = state.shared.plans.index()
    statuses = pipeline_statuses(index, name, service.node_view, service.store.state)
    return NodePipelinesResponse(node=name, generation=index.generation, pipelines=statuses)
