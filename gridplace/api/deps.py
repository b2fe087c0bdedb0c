"""FastAPI dependencies: the app's state, the store, and who is asking (bearer tokens).

``StoreDep``, ``SettingsDep``, ``ServiceDep`` hand a route what the app factory built (``async``
functions that do no I/O: FastAPI runs them on the event loop instead of a worker thread each);
``PrincipalDep`` is a valid token whose role the route accepts (``roles.ROUTE_ROLES``; rate-limited
unless it is the admin's), ``AdminDep`` only the admin token. A route about one node's data calls
``require_node_access`` with the node's name: a node token for another node gets 403.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gridplace.api.errors import Forbidden, RateLimited, Unauthorized, Unavailable
from gridplace.api.metrics import Metrics
from gridplace.api.ratelimit import LeasedRateLimiter, RateLimiter
from gridplace.api.replan import Replanner
from gridplace.api.roles import DRY_RUN_PARAM, accepted_roles
from gridplace.api.security import (
    ADMIN,
    Principal,
    TokenHash,
    VerifiedTokens,
    fast_hash_for,
    split_issued_token,
)
from gridplace.api.service import PlanService
from gridplace.api.settings import Settings
from gridplace.api.shared import SharedState
from gridplace.api.store import DatabaseUnavailable, Store

T = TypeVar("T")
log = logging.getLogger("gridplace.api")


@dataclass
class AdminCredential:
    """The admin token: configured in settings (kept in memory) or its stored hash."""

    configured: str | None = None
    stored: TokenHash | None = None

    def matches(self, token: str) -> bool:
        if self.configured is not None:
            return hmac.compare_digest(token.encode("utf-8"), self.configured.encode("utf-8"))
        return self.stored is not None and self.stored.matches(token)


@dataclass
class AppState:
    """Everything the routes share; built by ``create_app`` and kept on ``app.state.gridplace``."""

    settings: Settings
    store: Store
    service: PlanService
    replanner: Replanner
    metrics: Metrics
    clock: Callable[[], datetime]
    admin: AdminCredential
    limiter: RateLimiter
    failed_logins: RateLimiter
    verified: VerifiedTokens
    shared: SharedState
    shared_limiter: LeasedRateLimiter | None  # PostgreSQL: every server's buckets in one place
    # Plan work (solve, validate, replan) waits for its turn here, on the event loop, so that a
    # queue of planners never holds the worker threads the agents' requests need.
    planning: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(1))


async def run_planning(state: AppState, work: Callable[..., T], *args: object) -> T:
    """Run ``work(*args)`` in a worker thread once a planning slot is free (503 after
    ``solve_wait_s`` of waiting)."""
    with anyio.move_on_after(state.settings.solve_wait_s):
        await state.planning.acquire()
        try:
            return await run_in_threadpool(work, *args)
        finally:
            state.planning.release()
    raise Unavailable(
        f"the solver is busy with other plans (waited {state.settings.solve_wait_s:g} s); "
        "retry later"
    )


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.gridplace
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_store(state: StateDep) -> Store:
    return state.store


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_service(state: StateDep) -> PlanService:
    return state.service


async def get_replanner(state: StateDep) -> Replanner:
    return state.replanner


StoreDep = Annotated[Store, Depends(get_store)]
ReplannerDep = Annotated[Replanner, Depends(get_replanner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[PlanService, Depends(get_service)]

bearer = HTTPBearer(
    auto_error=False,
    description="The admin token (planners), or a token issued by the admin: a node's (agents) "
    "or a viewer's (CI, dashboards: reads, validate and dry-run plans only).",
)
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _verify(state: AppState, token: str) -> Principal | None:
    issued = split_issued_token(token)
    if issued is not None:
        role, token_id, secret = issued
        record = state.store.node_token(token_id)
        if (
            record is None
            or record.role is not role  # a viewer's id under a node's prefix, or the reverse
            or record.revoked_at is not None
            or not record.hash.matches(secret)
        ):
            return None
        _store_fast_hash(state.store, token_id, record.hash, secret)
        return Principal(role=role, name=record.node, token_id=token_id)
    return ADMIN if state.admin.matches(token) else None


def _store_fast_hash(store: Store, token_id: str, stored: TokenHash, secret: str) -> None:
    """A token issued before the fast hash gets it at its first check (``security``): the next
    server (or restart) verifies it in microseconds. A database that refuses now only leaves it
    for the next check."""
    fast = fast_hash_for(stored, secret)
    if fast is not None:
        try:
            store.rehash_node_token(token_id, stored, fast)
        except DatabaseUnavailable:
            log.warning("storing the fast hash of token %s failed; kept its old one", token_id)


async def authenticate(request: Request, state: StateDep, credentials: CredentialsDep) -> Principal:
    """``principal_of`` as a dependency (the bearer scheme shows in the OpenAPI document)."""
    return await principal_of(request, state, credentials.credentials if credentials else None)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, read as ``HTTPBearer`` reads it; for
    the agents' lean routes, which skip the dependency machinery."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


async def principal_of(request: Request, state: AppState, token: str | None) -> Principal:
    """The principal behind the bearer token; 401 without a valid one, 429 over the rate, 403
    when the route does not accept its role.

    A token verified recently is answered from memory, on the event loop; only the slow path
    (a database read and the hash check, slow for a token of the old format) goes to a worker
    thread.
    """
    if token is None:
        raise Unauthorized("an Authorization: Bearer <token> header is required")
    principal = state.verified.get(token)
    if principal is not None and principal.token_id in state.shared.revoked:
        principal = None  # revoked by another server since it was cached here
    if principal is None:
        # A wrong token costs a database read (and maybe a slow hash): charge the caller's
        # address for each failure, and refuse before checking once its bucket is empty.
        address = f"address:{request.client.host if request.client else 'unknown'}"
        wait_s = state.failed_logins.peek(address)
        if wait_s > 0:
            state.metrics.limited()
            raise RateLimited("too many invalid tokens from this address", wait_s)
        principal = await run_in_threadpool(_verify, state, token)
        if principal is None:
            state.failed_logins.take(address)
            raise Unauthorized("the token is not valid (unknown, revoked or mistyped)")
        state.verified.put(token, principal)
    if not principal.is_admin:
        wait_s = await _take_rate(state, principal.rate_key)
        if wait_s > 0:
            state.metrics.limited()
            raise RateLimited(f"{principal.rate_key} is over its request rate", wait_s)
    _authorize(request, principal)
    return principal


async def _take_rate(state: AppState, key: str) -> float:
    """A token of ``key``'s bucket: in this process's memory on SQLite (one process), leased
    from the database on PostgreSQL, where every server must count the same requests."""
    shared = state.shared_limiter
    if shared is None:
        return state.limiter.take(key)
    wait_s = shared.take_held(key)
    if wait_s is None:
        wait_s = await run_in_threadpool(shared.take_leased, key)
    return wait_s


def _authorize(request: Request, principal: Principal) -> None:
    route = request.scope.get("route")
    path = route.path if isinstance(route, APIRoute) else request.url.path
    roles = accepted_roles(request.method, path, request.query_params.get(DRY_RUN_PARAM))
    if principal.role not in roles:
        accepted = ", ".join(sorted(role.value for role in roles))
        raise Forbidden(
            f"a {principal.role.value} token may not {request.method} {path} (accepted: {accepted})"
        )


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this needs the admin token; node tokens may only act for their node")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def require_node_access(principal: Principal, node: str) -> None:
    """403 when a node token acts for another node (the other roles are limited by route)."""
    if not principal.may_act_for(node):
        raise Forbidden(
            f"this token belongs to node {principal.node!r}; it may not act for node {node!r}"
        )
