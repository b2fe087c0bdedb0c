"""The agents' two routes served without FastAPI's routing and parameter machinery.

Owns: recognising ``POST /v1/nodes/{name}/telemetry`` and ``GET /v1/nodes/{name}/assignments``
(nearly every request of a large grid) before the router sees them, and calling their endpoint
functions (``routes.nodes``) directly. Measured with ``bench/api_profile.py``, FastAPI's route
matching (every earlier route tried in turn) and its path and header parameters were two fifths
(heartbeats) to two thirds (pulls) of their CPU. The routes stay registered with FastAPI, which
documents them and serves whatever this does not take: a name outside the route's pattern, a
``Prefer`` header over its length limit, an app mounted under a root path. Errors are answered
by the app's own exception handlers, so both ways give the same answers
(``tests/api/test_lean_routes.py``).
Must not: check tokens, bodies or access itself (the endpoints do), or handle any other route.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from gridplace.api.routes.nodes import NAME_PATTERN, PREFER_MAX_LENGTH, router
from gridplace.api.routes.nodes import get_assignments as _pull
from gridplace.api.routes.nodes import post_telemetry as _report

PREFIX = "/v1/nodes/"
NAME = re.compile(NAME_PATTERN)
Handler = Callable[[Request, Any], Response | Awaitable[Response]]
Endpoint = Callable[[str, Request, str | None], Awaitable[Response]]
# (method, last path segment) -> (the header passed to the endpoint, its length limit or None)
ROUTES: dict[tuple[str, str], tuple[Endpoint, str, int | None]] = {
    ("POST", "telemetry"): (_report, "prefer", PREFER_MAX_LENGTH),
    ("GET", "assignments"): (_pull, "if-none-match", None),
}


class AgentFastPath:
    """ASGI middleware: the two agent routes straight to their endpoints (module docstring)."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app
        # The registered routes, put in the scope as the router would (access checks, metrics).
        self._routes = {
            route.path.rsplit("/", 1)[-1]: route
            for route in router.routes
            if isinstance(route, APIRoute) and route.endpoint in (_report, _pull)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        taken = _match(scope)
        route = None if taken is None else self._routes.get(taken[1])
        if taken is None or route is None:
            await self.app(scope, receive, send)
            return
        name, suffix = taken
        endpoint, header, limit = ROUTES[(scope["method"], suffix)]
        value = _header(scope, header.encode("latin-1"))
        if value is not None and limit is not None and len(value) > limit:
            await self.app(scope, receive, send)  # FastAPI's 422 names the header
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {"name": name}
        request = Request(scope, receive)
        try:
            response = await endpoint(name, request, value)
        except Exception as error:
            handler = self._handler(error)
            if handler is None:
                raise
            answer = handler(request, error)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _handler(self, error: Exception) -> Handler | None:
        """The app's exception handler for ``error`` (by class, nearest first), as Starlette's
        exception middleware would choose it."""
        handlers = self.fastapi_app.exception_handlers
        for cls in type(error).__mro__:
            if cls in handlers:
                handler: Handler = handlers[cls]
                return handler
        return None


def _match(scope: Scope) -> tuple[str, str] | None:
    """(node name, route suffix) when ``scope`` is one of the two routes with a valid name."""
    if scope["type"] != "http" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    name, _, suffix = path[len(PREFIX) :].partition("/")
    if (scope["method"], suffix) not in ROUTES or not NAME.fullmatch(name):
        return None
    return name, suffix


def _header(scope: Scope, key: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == key:
            decoded: str = value.decode("latin-1")
            return decoded
    return None
