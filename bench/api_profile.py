#!/usr/bin/env python3
"""Where the time of the agents' two hot routes goes, in process: the app called as an ASGI
callable (no client, no sockets), under cProfile.

Run from the repository root::

    .venv/bin/python bench/api_profile.py --requests 3000            # SQLite in a temp dir
    .venv/bin/python bench/api_profile.py --database-url postgresql+psycopg://...

``--nodes`` nodes are registered with a token each (tokens verified once before measuring). First
one token's hash check (the fast keyed hash and the old scrypt) and the whole grid read in the
serving process (``PlanService.grid``: wall and CPU time, the collections meanwhile). Then
``--requests`` telemetry posts (``Prefer: return=minimal``, as the agent sends) and as many
assignment pulls with the current ETag (304) run one after another on one event loop, rotating
over the nodes. Printed: microseconds per request (median of ``--repeats`` runs of each), the
garbage collections meanwhile (how many, how many full, the longest pause), and cProfile's top
functions by own time for one run of each. cProfile sees the event loop's thread only; work a
route hands to a worker thread shows as the wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gridplace.api.app import create_app
from gridplace.api.security import hash_issued_secret, hash_secret
from gridplace.api.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import nodes_for  # a sibling script, not a package

ADMIN = "profile-admin-token-0123456789"
BODY = b'{"healthy": true, "thermal": {"throttleRatio": 0.1}}'

Call = Callable[[int], Awaitable[int]]


async def asgi(
    app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> int:
    """One request through the whole app; its status."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def calls(app: FastAPI, names: list[str], tokens: list[str], etag: str) -> dict[str, Call]:
    auth = [[(b"authorization", f"Bearer {t}".encode())] for t in tokens]

    async def telemetry(i: int) -> int:
        k = i % len(names)
        headers = auth[k] + [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
            (b"prefer", b"return=minimal"),
        ]
        return await asgi(app, "POST", f"/v1/nodes/{names[k]}/telemetry", headers, BODY)

    async def assignments(i: int) -> int:
        k = i % len(names)
        headers = auth[k] + [(b"if-none-match", etag.encode())]
        return await asgi(app, "GET", f"/v1/nodes/{names[k]}/assignments", headers)

    return {"telemetry": telemetry, "assignments": assignments}


class Pauses:
    """Garbage collections while measuring (``gc.callbacks``): count, full ones, the longest."""

    def __init__(self) -> None:
        self.durations: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.durations.append((info["generation"], time.perf_counter() - self._started))

    def summary(self) -> str:
        full = [s for generation, s in self.durations if generation == 2]
        longest = max((s for _, s in self.durations), default=0.0)
        return (
            f"gc: {len(self.durations)} collections ({len(full)} full), longest "
            f"{longest * 1e3:.1f} ms"
        )


async def run(call: Call, count: int) -> tuple[float, dict[int, int]]:
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    for i in range(count):
        status = await call(i)
        statuses[status] = statuses.get(status, 0) + 1
    return (time.perf_counter() - started) / count * 1e6, statuses


def grid_reads(app: FastAPI, repeats: int) -> None:
    """The whole grid read and judged in the serving process (``PlanService.grid``: what a plan,
    a dry run and a change check that found something read): its time, its CPU and the garbage
    collections meanwhile (each full one walks every object alive, the new nodes' included)."""
    service = app.state.gridplace.service
    for _ in range(repeats):
        pauses = Pauses()
        gc.callbacks.append(pauses)
        started, cpu = time.perf_counter(), time.thread_time()
        view = service.grid()
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu
        gc.callbacks.remove(pauses)
        full = [s for generation, s in pauses.durations if generation == 2]
        print(
            f"grid read    {len(view.nodes)} nodes: {wall * 1e3:.0f} ms ({cpu * 1e3:.0f} ms CPU); "
            f"{pauses.summary()}, full ones {sum(full) * 1e3:.0f} ms in all"
        )
        del view


def token_checks(repeats: int) -> None:
    """One issued token's hash check, the fast keyed hash against the old scrypt (median)."""
    secret = "x" * 43  # as long as an issued secret
    for name, hashed, count in (
        ("fast (hmac-sha256)", hash_issued_secret(secret), 20_000),
        ("old (scrypt)", hash_secret(secret), 50),
    ):
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(count):
                hashed.matches(secret)
            runs.append((time.perf_counter() - started) / count * 1e6)
        print(f"token check  {name}: {statistics.median(runs):.1f} us")


async def measure(app: FastAPI, routes: dict[str, Call], args: argparse.Namespace) -> None:
    async with app.router.lifespan_context(app):
        token_checks(args.repeats)
        grid_reads(app, args.repeats)
        for name, call in routes.items():
            await run(call, min(args.requests, 500))  # warm
            per = []
            statuses: dict[int, int] = {}
            pauses = Pauses()
            gc.callbacks.append(pauses)
            for _ in range(args.repeats):
                us, statuses = await run(call, args.requests)
                per.append(us)
            gc.callbacks.remove(pauses)
            print(
                f"{name:<12} {statistics.median(per):8.0f} us/request (median of "
                f"{args.repeats}: {', '.join(f'{u:.0f}' for u in per)}); statuses {statuses}; "
                + pauses.summary()
            )
            profile = cProfile.Profile()
            profile.enable()
            await run(call, args.requests)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
            print("\n".join(out.getvalue().splitlines()[6:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gridplace-profile-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'profile.db'}"
        settings = Settings(
            database_url=url,
            admin_token=ADMIN,
            replan_interval_s=0,
            rate_limit_per_s=1e6,
            rate_limit_burst=1_000_000,
            solve_in_subprocess=False,
        )
        app = create_app(settings)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        names, tokens = [], []
        with TestClient(app) as client:
            documents = nodes_for(args.nodes)
            for first in range(0, len(documents), 1000):
                batch = documents[first : first + 1000]
                client.post("/v1/nodes", json=batch, headers=admin).raise_for_status()
            for node in documents:
                name = node["metadata"]["name"]
                issued = client.post(f"/v1/admin/nodes/{name}/tokens", headers=admin)
                names.append(name)
                tokens.append(issued.raise_for_status().json()["token"])
                mine = {"Authorization": f"Bearer {tokens[-1]}"}
                client.get(f"/v1/nodes/{name}", headers=mine).raise_for_status()
            etag = client.get(
                f"/v1/nodes/{names[0]}/assignments",
                headers={"Authorization": f"Bearer {tokens[0]}"},
            ).headers["ETag"]
        print(
            f"# .venv/bin/python bench/api_profile.py --nodes {args.nodes} --requests "
            f"{args.requests} ({'PostgreSQL' if args.database_url else 'SQLite'})"
        )
        asyncio.run(measure(app, calls(app, names, tokens, etag), args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
