"""ASGI middleware: the request body size limit (413) and request latency metrics.

The body is read up to the limit before the app sees it, then replayed: a body over the limit is
refused whether it announced its length or streamed without one, and never held in memory past
the limit plus one chunk. The limit is the route's own (``ROUTE_BODY_BYTES``: what its document
needs) or, for routes not listed, ``max_body_bytes``; so a node token's oversized Node is refused
before any of it is parsed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gridplace.api.metrics import Metrics

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
KIB = 1024
# Bodies of the routes a node token reaches, sized to their documents: a Node is a few kilobytes
# (16 GPU groups, 64 labels), a heartbeat less, a state report at most a few hundred replicas,
# an observations post at most 1,000 windows of under a kilobyte each.
# Plan submissions and probe campaigns (megabytes) keep the global ``max_body_bytes``.
ROUTE_BODY_BYTES: dict[tuple[str, str], int] = {
    ("PUT", "/v1/nodes/{name}"): 256 * KIB,
    ("POST", "/v1/nodes/{name}/telemetry"): 64 * KIB,
    ("PUT", "/v1/nodes/{name}/state"): 1024 * KIB,
    ("POST", "/v1/nodes/{name}/observations"): 2048 * KIB,
}
_ROUTE_PATTERNS = [
    (method, path, compile_path(path)[0], limit)
    for (method, path), limit in ROUTE_BODY_BYTES.items()
]


def _too_large(limit: int, route: str | None) -> bytes:
    where = f" of {route}" if route else ""
    return json.dumps(
        {
            "error": "payload_too_large",
            "message": f"the request body is larger than the {limit:,}-byte limit{where}",
            "issues": [],
        }
    ).encode("utf-8")


class BodyLimit:
    """413 for a body over its route's limit (``ROUTE_BODY_BYTES``) or over ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def limit_for(self, scope: Scope) -> tuple[int, str | None]:
        """The body limit of the route ``scope`` goes to, and that route's name for messages."""
        for method, path, pattern, limit in _ROUTE_PATTERNS:
            if scope["method"] == method and pattern.match(scope["path"]):
                return min(limit, self.max_body_bytes), f"{method} {path}"
        return self.max_body_bytes, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit, route = self.limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit, route)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._refuse(send, limit, route)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for a disconnect, as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, limit: int, route: str | None) -> None:
        content = _too_large(limit, route)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.observe_request(
                scope["method"], _route(scope), status, time.perf_counter() - started
            )


def _route(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
