"""The HTTP service's app factory: ``create_app(settings) -> FastAPI``.

Building an app opens the store (migrating it to the head revision), settles the admin token
(configured, stored, or generated now and announced once), and wires routes, middleware (body
limit, request metrics) and the error handlers that turn every error into an ``ErrorResponse``:
``ServiceError`` subclasses by their status, ``SpecError`` as 422 with one issue per field,
``GenerationConflict`` as 409, ``DatabaseUnavailable`` as 503. While the app runs (its lifespan),
a background task runs the change check every ``replan_interval_s`` (one server of a database at
a time) and another keeps the plan generation and revoked tokens in step with the database every
``sync_interval_s`` (``shared.py``; on PostgreSQL also at once, on NOTIFY).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridplace import __version__
from gridplace.api.deps import AdminCredential, AppState, run_planning
from gridplace.api.errors import Issue, RateLimited, ServiceError, Unauthorized
from gridplace.api.fastpath import AgentFastPath
from gridplace.api.metrics import Metrics
from gridplace.api.middleware import BodyLimit, RequestMetrics
from gridplace.api.models import ErrorResponse, IssueOut
from gridplace.api.ratelimit import LeasedRateLimiter, RateLimiter
from gridplace.api.replan import Replanner
from gridplace.api.routes import admin, demand, health, nodes, observations, plans, probes
from gridplace.api.security import VerifiedTokens, hash_secret, new_admin_token
from gridplace.api.service import PlanService
from gridplace.api.settings import Settings
from gridplace.api.shared import SharedState
from gridplace.api.solver_pool import SolverPool
from gridplace.api.store import DatabaseDamaged, DatabaseUnavailable, GenerationConflict, Store
from gridplace.api.store.schema import utc_now
from gridplace.specs import SpecError

log = logging.getLogger("gridplace.api")
# Failed logins per client address: a few typos are fine, a scan is slowed to one try a second.
FAILED_LOGIN_RATE_PER_S = 1.0
FAILED_LOGIN_BURST = 10
# Share of a node's burst a server leases from its shared bucket at once (PostgreSQL): each lease
# is a database write that the request finding its server's tokens spent waits for (a worker
# thread). A lease of 10 of the default 60 put one request in ten behind it: at 10,000 agents
# the telemetry p99 was 379 ms (README). The other half of the burst stays for other servers.
RATE_LEASE_SHARE = 0.5


def announce_to_stderr(token: str) -> None:
    print(
        "gridplace: no admin token was configured, so one was generated. It is shown only now "
        "(the database keeps a hash):\n\n"
        f"    {token}\n\n"
        "Give it to planners as 'Authorization: Bearer <token>'. To choose your own, set "
        "GRIDPLACE_ADMIN_TOKEN.",
        file=sys.stderr,
        flush=True,
    )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    announce_admin_token: Callable[[str], None] = announce_to_stderr,
) -> FastAPI:
    """A ready app: store open and migrated, admin token settled, routes wired."""
    settings = settings or Settings()
    store = Store.open(settings.database_url)
    store.buffer_heartbeats(settings.heartbeat_flush_s)
    admin_credential = _admin_credential(store, settings, clock, announce_admin_token)
    metrics = Metrics()
    solver = _solver_pool(settings)
    service = PlanService(store, settings, metrics, clock, started_at=clock(), solver=solver)
    verified = VerifiedTokens(settings.token_cache_s)
    shared = SharedState(store, verified)
    shared.sync()
    state = AppState(
        settings=settings,
        store=store,
        service=service,
        replanner=Replanner(service, metrics),
        metrics=metrics,
        clock=clock,
        admin=admin_credential,
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        failed_logins=RateLimiter(FAILED_LOGIN_RATE_PER_S, FAILED_LOGIN_BURST),
        verified=verified,
        shared=shared,
        shared_limiter=_shared_limiter(store, settings),
        planning=anyio.CapacityLimiter(settings.max_concurrent_solves),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # anyio's default is 40 threads. A request's blocking part is a short query, and plan
        # work waits for its turn outside the pool (``run_planning``), so a few threads keep up
        # while bounding database connections and GIL contention.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        solver.warm()
        shared.start_listening()
        # What lives as long as the server (modules, the app, its caches so far) is left out of
        # every later collection: a full collection in a process holding a 10,000-node grid
        # walked ~600k objects for ~0.9 s, stalling every request meanwhile. Not collected
        # first: a collection here would cost every start (and test) that much.
        gc.freeze()
        tasks = [asyncio.create_task(_sync_periodically(state))]
        if settings.replan_interval_s > 0:
            tasks.append(asyncio.create_task(_check_periodically(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            shared.stop()
            solver.close()
            store.close()
            gc.unfreeze()

    app = FastAPI(
        title="gridplace",
        version=__version__,
        summary="Placement plans for LLM inference on a heterogeneous GPU grid.",
        lifespan=lifespan,
    )
    app.state.gridplace = state
    # Routes match in order: the agents' routes (nodes) first, as they are nearly every request.
    for module in (nodes, health, plans, observations, probes, admin, demand):
        app.include_router(module.router)
    _install_error_handlers(app)
    # The body limit is outermost and reads the whole body first, so request latency is timed
    # from a complete request: a client slow to send its body is not counted as server time.
    app.add_middleware(AgentFastPath, fastapi_app=app)  # innermost: inside the two below
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    return app


def _solver_pool(settings: Settings) -> SolverPool:
    """Plans solved in worker processes (or here), their parts on processes or Ray."""
    processes = settings.max_concurrent_solves if settings.solve_in_subprocess else 0
    return SolverPool(processes, settings.solver_part_workers, settings.ray_address)


def _shared_limiter(store: Store, settings: Settings) -> LeasedRateLimiter | None:
    if store.backend != "postgresql":
        return None
    lease = partial(
        store.lease_shared_tokens,
        rate_per_s=settings.rate_limit_per_s,
        burst=float(settings.rate_limit_burst),
    )
    return LeasedRateLimiter(lease, max(1, int(settings.rate_limit_burst * RATE_LEASE_SHARE)))


def _admin_credential(
    store: Store,
    settings: Settings,
    clock: Callable[[], datetime],
    announce: Callable[[str], None],
) -> AdminCredential:
    if settings.admin_token is not None:
        return AdminCredential(configured=settings.admin_token.get_secret_value())
    stored = store.admin_token_hash()
    if stored is not None:
        return AdminCredential(stored=stored)
    token = new_admin_token()
    candidate = hash_secret(token)
    kept = store.ensure_admin_token_hash(candidate, clock())
    if kept == candidate:  # not beaten to it by another server on the same database
        announce(token)
    return AdminCredential(stored=kept)


async def _sync_periodically(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.sync_interval_s)
        try:
            await anyio.to_thread.run_sync(state.shared.sync)
        except Exception:  # the database may be back at the next tick
            log.warning("comparing with the database's latest plan and revocations failed")


async def _check_periodically(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.replan_interval_s)
        try:
            await run_planning(state, state.replanner.check)
        except Exception:  # a failed check must not end the loop; the next one may succeed
            log.exception("the change check failed")


def _error(status: int, body: ErrorResponse, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True, exclude_none=True),
        status_code=status,
        headers=headers,
    )


def _issues(issues: list[Issue]) -> list[IssueOut]:
    return [IssueOut(**vars(issue)) for issue in issues]


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = list(loc)
    prefix = ""
    if parts and parts[0] == "body":
        parts = parts[1:]
    elif parts and parts[0] in ("query", "path", "header"):
        prefix = f"{parts[0]}."
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return prefix + out if out else None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        headers = {}
        if isinstance(error, RateLimited):
            headers["Retry-After"] = error.retry_after_header
        if isinstance(error, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        body = ErrorResponse(error=error.code, message=error.message, issues=_issues(error.issues))
        return _error(error.status, body, headers)

    @app.exception_handler(SpecError)
    async def spec_error(_: Request, error: SpecError) -> JSONResponse:
        issues = [Issue.from_spec(issue) for issue in error.issues]
        message = f"invalid input ({len(issues)} problem{'s' * (len(issues) != 1)})"
        return _error(422, ErrorResponse(error="invalid", message=message, issues=_issues(issues)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        issues = [
            Issue(message=str(item.get("msg", "invalid")), field=_field(tuple(item.get("loc", ()))))
            for item in error.errors()
        ]
        message = f"invalid request ({len(issues)} problem{'s' * (len(issues) != 1)})"
        return _error(422, ErrorResponse(error="invalid", message=message, issues=_issues(issues)))

    @app.exception_handler(GenerationConflict)
    async def conflict(_: Request, error: GenerationConflict) -> JSONResponse:
        body = ErrorResponse(error="conflict", message=str(error), current_generation=error.current)
        return _error(409, body)

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(_: Request, error: DatabaseUnavailable) -> JSONResponse:
        log.error("database unavailable: %s", error)
        # A damaged or vanished SQLite file is named (no secret in it); other messages may
        # carry a server's address, so they stay in the log.
        message = (
            str(error) if isinstance(error, DatabaseDamaged) else "the database is not answering"
        )
        body = ErrorResponse(error="unavailable", message=message)
        return _error(503, body, {"Retry-After": "5"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        body = ErrorResponse(error=codes.get(error.status_code, "http"), message=str(error.detail))
        headers = dict(error.headers or {})
        if error.status_code == 405:  # Starlette lists only the first matching route's methods
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return _error(error.status_code, body, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return sorted(methods)
