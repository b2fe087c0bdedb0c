"""Which token roles each route accepts: the whole access rule set, in one table.

``ROUTE_ROLES`` maps ``"METHOD /path"`` (the path as the route declares it) to the roles it lets
in; ``deps.authenticate`` enforces it on every authenticated route, before the route runs.
A node token is further scoped to its own node by the route (``deps.require_node_access``).
A route missing from the table accepts the admin only, so a new route never opens to viewers or
nodes by omission (and ``tests/api/test_roles.py`` fails until it is listed).

A viewer reads nodes, topology, plans and explanations, calls validate, and asks for dry-run
plans (``POST /v1/plans?dryRun=true``: ``DRY_RUN_ROLES``); it writes nothing anywhere.
Must not: authenticate (``deps``) or know how tokens are made (``security``).
"""

from __future__ import annotations

from gridplace.api.security import Role

ADMIN_ONLY = frozenset({Role.ADMIN})
PLANNERS = frozenset({Role.ADMIN, Role.VIEWER})  # read and try plans, change nothing
AGENTS = frozenset({Role.ADMIN, Role.NODE})  # write a node's own data
ANYONE = frozenset(Role)  # reads of one node's data (a node token: its own)

ROUTE_ROLES: dict[str, frozenset[Role]] = {
    # plans
    "POST /v1/plans": ADMIN_ONLY,  # with ?dryRun=true: DRY_RUN_ROLES
    "GET /v1/plans": PLANNERS,
    "GET /v1/plans/latest": PLANNERS,
    "GET /v1/plans/{generation}": PLANNERS,
    "GET /v1/plans/{generation}/explanation": PLANNERS,
    "POST /v1/validate": PLANNERS,
    "POST /v1/replan": ADMIN_ONLY,
    # nodes
    "GET /v1/nodes": PLANNERS,
    "POST /v1/nodes": ADMIN_ONLY,
    "GET /v1/nodes/{name}": ANYONE,
    "PUT /v1/nodes/{name}": AGENTS,
    "DELETE /v1/nodes/{name}": ADMIN_ONLY,
    "POST /v1/nodes/{name}/telemetry": AGENTS,
    "POST /v1/nodes/{name}/probes": AGENTS,
    "GET /v1/nodes/{name}/assignments": ANYONE,
    "GET /v1/nodes/{name}/state": ANYONE,
    "PUT /v1/nodes/{name}/state": AGENTS,  # with the node's pipeline stages
    "GET /v1/nodes/{name}/pipelines": ANYONE,
    "POST /v1/nodes/{name}/observations": AGENTS,
    # engine observations and what was learned from them
    "GET /v1/observations": PLANNERS,
    "GET /v1/calibration": PLANNERS,
    # probes and topology
    "POST /v1/probes": ADMIN_ONLY,
    "GET /v1/topology": PLANNERS,
    # demand history and forecasts (a gateway posts with the admin token)
    "POST /v1/workloads/{name}/demand": ADMIN_ONLY,
    "GET /v1/workloads/{name}/demand": PLANNERS,
    "GET /v1/workloads/{name}/forecast": PLANNERS,
    # tokens
    "POST /v1/admin/nodes/{name}/tokens": ADMIN_ONLY,
    "POST /v1/admin/viewers/{name}/tokens": ADMIN_ONLY,
    "GET /v1/admin/tokens": ADMIN_ONLY,
    "DELETE /v1/admin/tokens/{token_id}": ADMIN_ONLY,
}

# Routes that write unless asked for a dry run (``?dryRun=true``), and who may ask for one.
DRY_RUN_ROLES: dict[str, frozenset[Role]] = {"POST /v1/plans": PLANNERS}
DRY_RUN_PARAM = "dryRun"
# What FastAPI (pydantic) reads as a true bool: the route and this check must agree.
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def accepted_roles(method: str, path: str, dry_run_param: str | None) -> frozenset[Role]:
    """The roles the route ``method path`` accepts for this request."""
    key = route_key(method, path)
    if key in DRY_RUN_ROLES and is_true(dry_run_param):
        return DRY_RUN_ROLES[key]
    return ROUTE_ROLES.get(key, ADMIN_ONLY)


def is_true(value: str | None) -> bool:
    return value is not None and value.lower() in _TRUE
