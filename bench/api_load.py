#!/usr/bin/env python3
"""Load on the HTTP API: a real ``gridplace serve`` (uvicorn) in a subprocess on 127.0.0.1, node
agents posting telemetry and pulling their assignments, plan submissions in parallel, on SQLite
and on PostgreSQL.

Run from the repository root::

    .venv/bin/python bench/api_load.py                          # both backends, 20 s each
    .venv/bin/python bench/api_load.py --backends sqlite --duration 10 --agents 50

The grid is the shipped example (``examples/``: 104 nodes, 9 workloads, 1,466 probe samples); each
node gets its own token and one simulated agent (``--agents`` takes the first N nodes). Setup
(registration, tokens and their first use, probes, a first plan) is not measured. Then, for
``--duration`` seconds, every agent (each with its own connection, started within the first
second) loops without pause: ``POST /v1/nodes/{n}/telemetry`` (health and a throttle ratio
that wobbles under the replan threshold), ``GET /v1/nodes/{n}/assignments`` with the ETag of its
last answer (304 while the plan is unchanged), and every fourth round ``PUT /v1/nodes/{n}/state``.
At the start ``--plans`` submissions of the example workloads are sent at once; they queue for
the solver (one at a time, the default) and each builds on the previous plan.

With ``--schedule 15`` each agent behaves as a real one: a heartbeat (``Prefer: return=minimal``,
the throttle ratio its node was registered with, under the replan threshold) and a pull with its
ETag every 15 s at a random phase; ``--schedule 5`` offers three times that (10,000 agents: 4,000
requests/s). The agents are dealt over ``--procs`` generator processes (spawned; each its own
event loop, a shard of the agents and their tokens, ``--connections / --procs`` keep-alive
connections), which send their due rounds in time order on a clock they share; the plans are
spread over the window by the first. Their results are merged: every latency, status and
lateness, and each process's CPU. The agents' requests go through a lean HTTP/1.1 client on
asyncio's streams and h11 (``--client httpx`` for httpx, which cost the generator ~10x the CPU per
request). Then the bare FastAPI app (``bare_app.py``, as many processes as the server) gets the
same agents on the same schedule from the same generators, and each route's rate, p99 and the
ratio of the rates are printed beside gridplace's (``--no-bare`` skips it). SQLite is served by one
process, PostgreSQL by ``--workers 2``.

PostgreSQL is used from ``GRIDPLACE_TEST_POSTGRES_URL`` (a fresh schema, dropped after), else a
throwaway cluster is made with the local ``initdb``/``pg_ctl`` (run as the ``postgres`` user when
this runs as root) on a unix socket in a temporary directory; without either it is skipped.

Printed per backend: the offered rate, agent requests/s served over the measured window,
p50/p99 latency per request kind as the agents saw it and the mean time inside the server (its own
request histogram, from ``/metrics``), answers other than 200/204/304 (status 0: no answer), and
each plan submission's latency. With ``--schedule``: how late rounds were sent, the CPU seconds per
second of each generator process, of the server's processes (the API processes and the solver
worker, ``/proc``) and of PostgreSQL, each per request served, the load average, and which side
limits the rate (if rounds fell behind: the one costing more CPU per request). Plans are solved in
the server's worker process (the default), so the API keeps answering while they run. Client,
server and solver share this machine's cores (2 in the project's sandbox), so the figures are a
floor, not a server ceiling. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import glob
import heapq
import json
import multiprocessing
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import h11
import httpx
import yaml

from gridplace.api.store.engine import scratch_schema

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
STARTUP_TIMEOUT_S = 300  # several workers on a loaded 2-core machine
SEED = 20261127
STAGGER_S = 1.0  # agents start spread over this much time (inside the measured window)


@dataclass(frozen=True)
class Generator:
    """One load generator process over the measured window."""

    cpu_per_s: float  # its CPU seconds per wall second
    max_rss_mib: float


@dataclass
class Results:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    plan_latencies_s: list[float] = field(default_factory=list)
    plan_statuses: Counter[int] = field(default_factory=Counter)
    window_s: float = 0.0
    server_mean_ms: dict[str, float] = field(default_factory=dict)
    slips_s: list[float] = field(default_factory=list)  # scheduled agents: how late each round
    generators: list[Generator] = field(default_factory=list)  # one per generator process
    sides_cpu: dict[str, float] = field(default_factory=dict)  # CPU s per s of each server side
    sides_wall_s: float = 0.0  # over which: the window until every generator returned
    offered_per_s: float = 0.0
    load_after: float = 0.0  # the load average when the window closed

    def record(self, kind: str, started: float, status: int) -> None:
        self.latencies_s[kind].append(time.perf_counter() - started)
        self.statuses[(kind, status)] += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------------------ the server


class Served(NamedTuple):
    url: str
    pid: int  # the root of the server's processes


@contextlib.contextmanager
def server(
    database_url: str, workdir: Path, rate_unlimited: bool, workers: int = 1
) -> Iterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPLACE_")}
    env["GRIDPLACE_ADMIN_TOKEN"] = ADMIN_TOKEN
    if rate_unlimited:  # agents here loop without pause; real ones report every few seconds
        env["GRIDPLACE_RATE_LIMIT_PER_S"] = "1000000"
        env["GRIDPLACE_RATE_LIMIT_BURST"] = "1000000"
    log_path = workdir / f"server-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridplace.api.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--database-url",
                database_url,
                "--log-level",
                "warning",
                "--workers",
                str(workers),
            ],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Served(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        errors = [line for line in log_path.read_text().splitlines() if "ERROR" in line]
        if errors:
            print(f"server log ({len(errors)} errors): " + "\n".join(errors[:10]), file=sys.stderr)


@contextlib.contextmanager
def bare(workdir: Path, workers: int) -> Iterator[Served]:
    """The baseline app (``bench/bare_app.py``) under uvicorn with ``workers`` processes."""
    port = free_port()
    env = dict(os.environ, BARE_DB=str(workdir / f"bare-{port}.db"))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--workers",
            str(workers),
        ],
        cwd=Path(__file__).resolve().parent,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/v1/nodes/a/assignments", timeout=1.0)
                break
            time.sleep(0.1)
        yield Served(url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[str | None]:
    """A PostgreSQL URL for one run (see the module docstring), or None."""
    base = os.environ.get("GRIDPLACE_TEST_POSTGRES_URL")
    if base:
        with scratch_schema(base, "bench") as url:
            yield url
        return
    bindir = _pg_bin()
    if bindir is None:
        yield None
        return
    # Not under ``workdir``: the postgres user must be able to reach it.
    cluster = Path(tempfile.mkdtemp(prefix="gridplace-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root; the package's postgres user runs it
        shutil.chown(cluster, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = cluster / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_postgres, *command], check=True, capture_output=True, text=True)

    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {cluster} -c listen_addresses='' -c fsync=off -c max_connections=200"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(cluster / "log"),
        "-w",
        "start",
    )
    try:
        run(str(bindir / "createdb"), "-h", str(cluster), "-p", str(port), "-U", "postgres", "gp")
        yield f"postgresql+psycopg://postgres@/gp?host={cluster}&port={port}"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(cluster, ignore_errors=True)


# ------------------------------------------------------------------------------------ load


def example_nodes() -> list[dict[str, Any]]:
    documents = yaml.safe_load_all((EXAMPLES / "grid" / "nodes.yaml").read_text())
    return [d for d in documents if d and d.get("kind") == "Node"]


def nodes_for(agents: int) -> list[dict[str, Any]]:
    """``agents`` Node documents: the example grid's, cloned under new names past its 104."""
    base = example_nodes()
    nodes = []
    for i in range(agents):
        node = copy.deepcopy(base[i % len(base)])
        if i >= len(base):
            node["metadata"]["name"] = f"{node['metadata']['name'][:50]}-x{i}"
        nodes.append(node)
    return nodes


REGISTER_BATCH = 1000  # nodes per POST /v1/nodes (the server takes up to 2,000 documents)
SETUP_CONCURRENCY = 8  # token requests in flight: each costs the server a hash


async def setup(url: str, nodes: list[dict[str, Any]], plan_time_limit_s: float) -> list[str]:
    """Register nodes (in batches), issue their tokens and use each once (its hash check, not
    measured), post the probes, store a first plan."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    names = [node["metadata"]["name"] for node in nodes]
    limits = httpx.Limits(max_connections=SETUP_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        for first in range(0, len(nodes), REGISTER_BATCH):
            batch = nodes[first : first + REGISTER_BATCH]
            (await client.post("/v1/nodes", json=batch, headers=admin)).raise_for_status()
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def token_of(name: str) -> str:
            async with gate:
                issued = await client.post(f"/v1/admin/nodes/{name}/tokens", headers=admin)
                token: str = issued.raise_for_status().json()["token"]
                mine = {"Authorization": f"Bearer {token}"}
                (await client.get(f"/v1/nodes/{name}", headers=mine)).raise_for_status()
                return token

        tokens = list(await asyncio.gather(*(token_of(name) for name in names)))
        probes = (EXAMPLES / "probes" / "probes.yaml").read_text()
        yaml_type = {"Content-Type": "application/yaml"}
        (
            await client.post("/v1/probes", content=probes, headers=admin | yaml_type)
        ).raise_for_status()
        answer = await client.post(
            "/v1/plans",
            content=(EXAMPLES / "workloads" / "workloads.yaml").read_text(),
            headers=admin | yaml_type,
            params={"timeLimitSeconds": plan_time_limit_s},
        )
        answer.raise_for_status()
    return tokens


async def agent(
    url: str,
    name: str,
    token: str,
    deadline: float,
    results: Results,
    rng: random.Random,
) -> None:
    # One client (one keep-alive connection) per agent, as on a real grid; a single shared
    # pool of a hundred connections costs the load generator more CPU than the server uses.
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        await _agent_rounds(client, name, token, deadline, results, rng)


async def _agent_rounds(
    client: httpx.AsyncClient,
    name: str,
    token: str,
    deadline: float,
    results: Results,
    rng: random.Random,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    etag: str | None = None
    base_throttle = rng.uniform(0.0, 0.3)
    rounds = 0
    # Real agents are not in step; started together, closed-loop agents would stay in phase and
    # measure a burst of N simultaneous requests, round after round.
    await asyncio.sleep(rng.uniform(0.0, STAGGER_S))
    while time.perf_counter() < deadline:
        telemetry = {
            "healthy": True,
            "thermal": {"throttleRatio": round(base_throttle + rng.uniform(0, 0.02), 4)},
        }
        started = time.perf_counter()
        answer = await client.post(f"/v1/nodes/{name}/telemetry", json=telemetry, headers=headers)
        results.record("telemetry", started, answer.status_code)
        started = time.perf_counter()
        pull_headers = headers | ({"If-None-Match": etag} if etag else {})
        answer = await client.get(f"/v1/nodes/{name}/assignments", headers=pull_headers)
        results.record("assignments", started, answer.status_code)
        if answer.status_code == 200:
            etag = answer.headers.get("ETag")
            generation = answer.json().get("generation")
        else:
            generation = None
        rounds += 1
        if rounds % 4 == 0:
            report = {"observedGeneration": generation, "replicas": [], "conditions": []}
            started = time.perf_counter()
            answer = await client.put(f"/v1/nodes/{name}/state", json=report, headers=headers)
            results.record("state", started, answer.status_code)


MINIMAL = {"Prefer": "return=minimal"}  # as the agent sends its heartbeats


def throttle_of(node: dict[str, Any]) -> float:
    """The throttle ratio a node was registered with (what its agent goes on reporting)."""
    return float(((node.get("status") or {}).get("thermal") or {}).get("throttleRatio", 0.0))


class Wire:
    """One keep-alive HTTP/1.1 connection on asyncio's streams, framed and parsed by h11, for the
    scheduled agents' rounds: httpx spent ~1 ms of the load generator's CPU per request, more
    than the server spends on it; this costs ~0.06 ms (5,000 pulls answered 304 by a local asyncio
    server, median of 5 runs; a hand-written parser took 0.016 ms, but HTTP is h11's to get right).

    One request at a time, no TLS, no redirects. A connection the server has closed (idle past
    its keep-alive) is opened again and the request sent once more (a heartbeat or a pull
    repeats harmlessly); a request that fails twice is answered status 0."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.authority = parts.netloc
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.protocol = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, str | None]:
        """The answer's status and ETag (its body read and dropped)."""
        fields = [("Host", self.authority), *headers.items()]
        if body:
            fields += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        for _ in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                    self.protocol = h11.Connection(h11.CLIENT)
                protocol = self.protocol
                data = protocol.send(h11.Request(method=method, target=path, headers=fields)) or b""
                if body:
                    data += protocol.send(h11.Data(data=body)) or b""
                self.writer.write(data + (protocol.send(h11.EndOfMessage()) or b""))
                return await self._answer()
            except (OSError, asyncio.IncompleteReadError, h11.ProtocolError):
                await self.close()
        return 0, None

    async def _answer(self) -> tuple[int, str | None]:
        assert self.reader is not None
        protocol, status, etag = self.protocol, 0, None
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(await self.reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                etag = next((v.decode("latin-1") for k, v in event.headers if k == b"etag"), None)
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise OSError("the server closed the connection")
        if protocol.our_state is h11.MUST_CLOSE or protocol.their_state is h11.MUST_CLOSE:
            await self.close()
        else:
            protocol.start_next_cycle()
        return status, etag

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxWire:
    """The same requests through an httpx client (``--client httpx``: the figure before)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, str | None]:
        if body:
            headers = headers | {"Content-Type": "application/json"}
        answer = await self.client.request(method, path, headers=headers, content=body or None)
        return answer.status_code, answer.headers.get("ETag")


@contextlib.asynccontextmanager
async def connection(url: str, client: str) -> AsyncIterator[Wire | HttpxWire]:
    """One keep-alive connection to ``url`` through ``client`` (``streams`` or ``httpx``)."""
    if client == "httpx":
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as pooled:
            yield HttpxWire(pooled)
        return
    wire = Wire(url)
    try:
        yield wire
    finally:
        await wire.close()


async def agent_round(
    wire: Wire | HttpxWire,
    name: str,
    token: str,
    throttle: float,
    etags: dict[str, str],
    results: Results,
) -> None:
    """One round of a real agent: a heartbeat (the throttle ratio its node was registered with,
    under the replan threshold), then a pull with the ETag of its last answer."""
    auth = {"Authorization": f"Bearer {token}"}
    telemetry = {"healthy": True, "thermal": {"throttleRatio": round(throttle, 4)}}
    body = json.dumps(telemetry).encode()
    started = time.perf_counter()
    status, _ = await wire.request("POST", f"/v1/nodes/{name}/telemetry", auth | MINIMAL, body)
    results.record("telemetry", started, status)
    etag = etags.get(name)
    started = time.perf_counter()
    pull = auth | ({"If-None-Match": etag} if etag else {})
    status, tag = await wire.request("GET", f"/v1/nodes/{name}/assignments", pull)
    results.record("assignments", started, status)
    if status == 200 and tag:
        etags[name] = tag


@dataclass(frozen=True)
class Shard:
    """One generator process's part of a scheduled run: its agents (name, token, the throttle
    ratio it reports), the schedule on a clock shared by every process (``start_at``, wall
    time), its share of the connections and of the plans. Plain data: it is sent to a spawned
    process."""

    url: str
    names: list[str]
    tokens: list[str]
    throttles: list[float]
    start_at: float
    schedule_s: float
    warmup_s: float
    duration_s: float
    connections: int
    plans: int
    plan_time_limit_s: float
    seed: int
    admin_token: str  # a spawned process would make its own
    client: str = "streams"  # or "httpx"


def shards(
    url: str,
    nodes: list[dict[str, Any]],
    tokens: list[str],
    args: argparse.Namespace,
    start_at: float,
    plans: int,
    warmup_s: float,
) -> list[Shard]:
    """The agents dealt round-robin over ``args.procs`` processes (each gets every part of the
    grid alike), the connections split evenly (at least one each); the plans go to the first."""
    rng = random.Random(SEED)
    throttles = [throttle_of(node) + rng.uniform(0.0, 0.02) for node in nodes]
    names = [node["metadata"]["name"] for node in nodes]
    procs = args.procs
    return [
        Shard(
            url=url,
            names=names[p::procs],
            tokens=tokens[p::procs],
            throttles=throttles[p::procs],
            start_at=start_at,
            schedule_s=args.schedule,
            warmup_s=warmup_s,
            duration_s=args.duration,
            connections=max(1, args.connections // procs),
            plans=plans if p == 0 else 0,
            plan_time_limit_s=args.plan_time_limit,
            seed=SEED + p,
            admin_token=ADMIN_TOKEN,
            client=args.client,
        )
        for p in range(procs)
    ]


async def load_scheduled(shard: Shard) -> Results:
    """``--schedule``, one generator process: every agent's round is due every ``schedule_s`` at
    a random phase; due rounds are queued in time order and sent by ``connections`` senders,
    each on its own keep-alive connection; the shard's plans are spread over the window.

    One httpx pool shared by 10,000 waiting agents costs the pool O(waiting x connections) per
    request: at 10,000 agents the load generator spent its core there and sent nothing."""
    results, warming = Results(), Results()  # the warm-up's rounds are sent, not counted
    rng = random.Random(shard.seed)
    etags: dict[str, str] = {}
    due: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    started = time.perf_counter() + (shard.start_at - time.time())
    measured_from = started + shard.warmup_s
    deadline = measured_from + shard.duration_s

    async def schedule() -> None:
        await asyncio.sleep(max(0.0, started - time.perf_counter()))
        rounds = [
            (started + rng.uniform(0.0, shard.schedule_s), i) for i in range(len(shard.names))
        ]
        heapq.heapify(rounds)
        while rounds and rounds[0][0] < deadline:
            await asyncio.sleep(max(0.0, rounds[0][0] - time.perf_counter()))
            now = time.perf_counter()
            while rounds[0][0] <= now:
                at, i = heapq.heappop(rounds)
                due.put_nowait((at, i))
                heapq.heappush(rounds, (at + shard.schedule_s, i))
        for _ in range(shard.connections):
            due.put_nowait(None)

    async def send() -> None:
        async with connection(shard.url, shard.client) as wire:
            while (item := await due.get()) is not None:
                at, i = item
                counted = results if at >= measured_from else warming
                counted.slips_s.append(time.perf_counter() - at)
                await agent_round(
                    wire, shard.names[i], shard.tokens[i], shard.throttles[i], etags, counted
                )

    async def window_opens() -> float:
        await asyncio.sleep(max(0.0, measured_from - time.perf_counter()))
        return time.process_time()

    async with httpx.AsyncClient(base_url=shard.url, timeout=300) as planner:
        senders = [asyncio.create_task(send()) for _ in range(shard.connections)]
        cpu = asyncio.create_task(window_opens())
        plans = asyncio.create_task(submit_spread(planner, shard, results))
        await schedule()
        await asyncio.gather(*senders)
        results.window_s = time.perf_counter() - measured_from
        used = time.process_time() - await cpu
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.generators.append(Generator(used / results.window_s, rss_mib))
        await plans
    return results


def run_shard(shard: Shard) -> Results:
    """A generator process's whole run (its own event loop and clients)."""
    return asyncio.run(load_scheduled(shard))


def _started(_: int) -> int:
    return os.getpid()


SPAWN_MARGIN_S = 2.0  # the schedule starts this long after every generator process answered


def run_scheduled(
    url: str,
    sides: dict[str, int],
    nodes: list[dict[str, Any]],
    tokens: list[str],
    args: argparse.Namespace,
    plans: int,
    warmup_s: float,
) -> Results:
    """``--schedule`` over ``args.procs`` generator processes (spawned: a fresh interpreter
    each), their results merged; meanwhile the CPU of each serving side (``sides``: a label and
    the root of its process tree) over the measured window."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.procs) as pool:
        pool.map(_started, range(args.procs), chunksize=1)
        start_at = time.time() + SPAWN_MARGIN_S
        jobs = shards(url, nodes, tokens, args, start_at, plans, warmup_s)
        parts = pool.map_async(run_shard, jobs, chunksize=1)
        time.sleep(max(0.0, start_at + warmup_s - time.time()))
        before = {label: tree_cpu_s(pid) for label, pid in sides.items()}
        opened = time.perf_counter()
        merged = merge(parts.get())
        wall = time.perf_counter() - opened
        merged.sides_cpu = {
            label: (tree_cpu_s(pid) - before[label]) / wall for label, pid in sides.items()
        }
        merged.sides_wall_s = wall
    merged.offered_per_s = 2 * len(nodes) / args.schedule
    merged.load_after = os.getloadavg()[0]
    return merged


def merge(parts: list[Results]) -> Results:
    """One result from the generator processes' (which ran side by side over one window):
    every latency, status, lateness and process kept; the window is the longest."""
    merged = Results()
    for part in parts:
        for kind, values in part.latencies_s.items():
            merged.latencies_s[kind].extend(values)
        merged.statuses.update(part.statuses)
        merged.plan_latencies_s.extend(part.plan_latencies_s)
        merged.plan_statuses.update(part.plan_statuses)
        merged.slips_s.extend(part.slips_s)
        merged.generators.extend(part.generators)
        merged.window_s = max(merged.window_s, part.window_s)
    return merged


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user and system) of process ``root`` and all its descendants, including the
    children they have reaped (``/proc``; 0 where it cannot be read)."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            ticks[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
    return sum(ticks.get(pid, 0) for pid in tree) / CLOCK_TICKS


def postmaster_pid(database_url: str) -> int | None:
    """The PostgreSQL server's process for a URL on a local unix socket (its socket's lock
    file names it), else None."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(database_url).query)
    host, port = query.get("host", [""])[0], query.get("port", ["5432"])[0]
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((Path(host) / f".s.PGSQL.{port}.lock").read_text().split()[0])
    return None


async def submit_spread(client: httpx.AsyncClient, shard: Shard, results: Results) -> None:
    await asyncio.sleep(max(0.0, shard.start_at + shard.warmup_s - time.time()))
    for _ in range(shard.plans):
        await asyncio.sleep(shard.duration_s / (shard.plans + 1))
        await submit_plan(client, shard.plan_time_limit_s, results, shard.admin_token)


async def submit_plan(
    client: httpx.AsyncClient, time_limit_s: float, results: Results, token: str = ADMIN_TOKEN
) -> None:
    started = time.perf_counter()
    answer = await client.post(
        "/v1/plans",
        content=(EXAMPLES / "workloads" / "workloads.yaml").read_text(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
        params={"timeLimitSeconds": time_limit_s},
    )
    results.plan_latencies_s.append(time.perf_counter() - started)
    results.plan_statuses[answer.status_code] += 1


async def load(
    url: str,
    names: list[str],
    tokens: list[str],
    duration_s: float,
    plans: int,
    plan_time_limit_s: float,
) -> Results:
    results = Results()
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        rng = random.Random(SEED)
        started = time.perf_counter()
        deadline = started + duration_s
        tasks = [
            agent(url, name, token, deadline, results, random.Random(rng.random()))
            for name, token in zip(names, tokens, strict=True)
        ]
        submissions = [submit_plan(client, plan_time_limit_s, results) for _ in range(plans)]
        agents_done = asyncio.gather(*tasks)
        plans_done = asyncio.gather(*submissions)
        await agents_done
        results.window_s = time.perf_counter() - started
        await plans_done
    return results


def server_means_ms(metrics: str) -> dict[str, float]:
    """Mean time inside the server per route (its request histogram: sum / count), ms."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for line in metrics.splitlines():
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            if line.startswith(f"gridplace_http_request_duration_seconds{suffix}"):
                labels, value = line.rsplit(" ", 1)
                method = labels.split('method="')[1].split('"')[0]
                route = labels.split('route="')[1].split('"')[0]
                into[f"{method} {route}"] += float(value)
    return {key: 1000 * sums[key] / counts[key] for key in sums if counts[key]}


def percentile_ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] * 1000


ROUTES = {  # kind: (label, the server's route in /metrics)
    "telemetry": ("POST /v1/nodes/{n}/telemetry", "POST /v1/nodes/{name}/telemetry"),
    "assignments": ("GET  /v1/nodes/{n}/assignments", "GET /v1/nodes/{name}/assignments"),
    "state": ("PUT  /v1/nodes/{n}/state", "PUT /v1/nodes/{name}/state"),
}
BEHIND_S = 1.0  # rounds started later than this at the median: the offered rate was not sent


def report(backend: str, results: Results, base: Results | None) -> None:
    """The run's figures; with ``base`` (the bare app under the same generator and schedule)
    each route's rate and p99 beside them and the ratio of the rates."""
    total = sum(len(v) for v in results.latencies_s.values())
    every = [x for values in results.latencies_s.values() for x in values]
    offered = f"offered {results.offered_per_s:,.0f} req/s, " if results.offered_per_s else ""
    print(
        f"\n{backend}: {offered}served {total / results.window_s:,.0f} req/s ({total:,} agent "
        f"requests in {results.window_s:.1f} s); p50 {percentile_ms(every, 0.5):.1f} ms, "
        f"p99 {percentile_ms(every, 0.99):.1f} ms"
    )
    header = f"  {'request':<32}{'count':>8}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'server ms':>10}"
    print(header + (f" | {'bare req/s':>10}{'p99 ms':>8}{'ratio':>7}" if base else ""))
    for kind, (label, route) in ROUTES.items():
        values = results.latencies_s.get(kind, [])
        if not values:
            continue
        rate = len(values) / results.window_s
        line = (
            f"  {label:<32}{len(values):>8,}{rate:>7.0f}{percentile_ms(values, 0.5):>8.1f}"
            f"{percentile_ms(values, 0.99):>8.1f}"
            f"{results.server_mean_ms.get(route, float('nan')):>10.1f}"
        )
        if base:
            theirs = base.latencies_s.get(kind, [])
            bare_rate = len(theirs) / base.window_s if base.window_s else 0.0
            ratio = rate / bare_rate if bare_rate else float("nan")
            line += f" | {bare_rate:>10.0f}{percentile_ms(theirs, 0.99):>8.1f}{ratio:>7.2f}"
        print(line)
    print("  (server ms: the mean inside the server, its own request histogram)")
    for label, run in (("", results), ("bare app: ", base)):
        if run is None:
            continue
        unexpected = {k: n for k, n in run.statuses.items() if k[1] not in (200, 204, 304)}
        not_modified = sum(n for (_, status), n in run.statuses.items() if status == 304)
        print(
            f"  {label}pulls answered 304 (unchanged): {not_modified:,}; answers other than "
            f"200/204/304: {dict(unexpected) or 'none'}"
        )
        if run.slips_s:
            print(f"  {label}{sides_line(run)}")
    if results.plan_latencies_s or results.plan_statuses:
        plans = ", ".join(f"{s:.1f}" for s in sorted(results.plan_latencies_s))
        print(f"  plan submissions: {plans} s; statuses {dict(results.plan_statuses)}")


def sides_line(run: Results) -> str:
    """Lateness, each side's CPU over the window (per second and per request served) and which
    limits the rate: the side costing more CPU per request, if rounds fell behind."""
    requests = sum(len(v) for v in run.latencies_s.values()) or float("nan")
    served = requests / run.window_s
    generators = sum(g.cpu_per_s for g in run.generators)
    each = ", ".join(f"{g.cpu_per_s:.2f}" for g in run.generators)
    rss = ", ".join(f"{g.max_rss_mib:.0f}" for g in run.generators)
    servers = "; ".join(
        f"{label} {cpu:.2f} ({1000 * cpu * run.sides_wall_s / requests:.2f} ms per request)"
        for label, cpu in run.sides_cpu.items()
    )
    late = percentile_ms(run.slips_s, 0.5) / 1000
    if late <= BEHIND_S:
        verdict = "the offered rate was sent on time"
    elif generators > sum(run.sides_cpu.values()):
        verdict = "rounds fell behind and the load generators cost more CPU: they limit the rate"
    else:
        verdict = "rounds fell behind and the server costs more CPU: it limits the rate"
    return (
        f"rounds started late by p50 {1000 * late:.1f} ms, p99 "
        f"{percentile_ms(run.slips_s, 0.99):.1f} ms; CPU s per s: load generators {each} "
        f"({1000 * generators / served:.2f} ms per request; {len(run.generators)} processes, max "
        f"RSS {rss} MiB); {servers}; load average {run.load_after:.1f} at the end: {verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--agents", type=int, default=104, help="Agents (the example's 104 nodes, then clones)."
    )
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of load.")
    parser.add_argument("--plans", type=int, default=3, help="Plan submissions in parallel.")
    parser.add_argument("--plan-time-limit", type=float, default=3.0, help="Solver limit, s.")
    parser.add_argument(
        "--schedule",
        type=float,
        default=0.0,
        help="Period of each agent's heartbeat and pull, s (15: a real agent; 5 offers 3x its "
        "rate); the plans are then spread over the window. 0: agents loop without pause, each "
        "on its own connection.",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="Keep-alive connections in all, split over the generator processes (--schedule).",
    )
    parser.add_argument(
        "--procs",
        type=int,
        default=1,
        help="With --schedule: load generator processes, each with a shard of the agents.",
    )
    parser.add_argument(
        "--client",
        choices=("streams", "httpx"),
        default="streams",
        help="With --schedule: the agents' HTTP client, a lean one on asyncio's streams or httpx "
        "(the figures before; ~1 ms of the generator's CPU per request).",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="With --schedule: seconds of rounds sent before the measured window and not "
        "counted (each agent's first pull has no ETag and each token its first check).",
    )
    parser.add_argument(
        "--no-bare",
        dest="bare",
        action="store_false",
        help="With --schedule: skip the bare FastAPI app (bare_app.py) under the same load.",
    )
    args = parser.parse_args()
    if not 1 <= args.agents <= 100_000 or args.duration <= 0 or args.plans < 0:
        parser.error("--agents must be 1..100000, --duration > 0, --plans >= 0")
    if args.schedule < 0 or args.warmup < 0 or (args.warmup and not args.schedule):
        parser.error("--schedule and --warmup must be >= 0; --warmup needs --schedule")
    if not 1 <= args.procs <= min(64, args.agents) or (args.procs > 1 and not args.schedule):
        parser.error("--procs must be 1..min(64, --agents) and, above 1, needs --schedule")
    nodes = nodes_for(args.agents)
    names = [n["metadata"]["name"] for n in nodes]
    how = (
        f"each every {args.schedule:g} s ({2 * len(nodes) / args.schedule:,.0f} req/s offered) "
        f"from {args.procs} generator process{'es' * (args.procs > 1)} over "
        f"{args.connections} connections, {args.plans} plan submissions spread over the window"
        if args.schedule
        else f"looping, {args.plans} plan submissions in parallel"
    )
    print(
        f"gridplace API load: {len(names)} agents x {args.duration:g} s, {how} (example "
        f"workloads, solver limit {args.plan_time_limit:g} s), {os.cpu_count()} cores shared by "
        f"client and server; load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="gridplace-bench-") as temporary:
        workdir = Path(temporary)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            with contextlib.ExitStack() as stack:
                roots: dict[str, int] = {}  # each serving side's process tree
                if backend == "sqlite":
                    url: str | None = f"sqlite:///{workdir / 'bench.db'}"
                elif backend == "postgresql":
                    url = stack.enter_context(postgres(workdir))
                    if url is None:
                        print("\npostgresql: skipped (no GRIDPLACE_TEST_POSTGRES_URL, no pg_ctl)")
                        continue
                    if (postmaster := postmaster_pid(url)) is not None:
                        roots["PostgreSQL"] = postmaster
                else:
                    parser.error(f"unknown backend {backend!r}")
                workers = 1 if backend == "sqlite" else 2  # SQLite serves one process
                assert url is not None  # (skipped above)
                api = stack.enter_context(server(url, workdir, True, workers))
                roots = {"server (API processes, solver)": api.pid} | roots
                tokens = asyncio.run(setup(api.url, nodes, args.plan_time_limit))
                if args.schedule:
                    results = run_scheduled(
                        api.url, roots, nodes, tokens, args, args.plans, args.warmup
                    )
                else:
                    results = asyncio.run(
                        load(
                            api.url, names, tokens, args.duration, args.plans, args.plan_time_limit
                        )
                    )
                results.server_mean_ms = server_means_ms(httpx.get(f"{api.url}/metrics").text)
            base = None
            if args.schedule and args.bare:
                with bare(workdir, workers) as served:
                    # Nothing to warm in the bare app but connections: one period of rounds.
                    base = run_scheduled(
                        served.url,
                        {"bare app": served.pid},
                        nodes,
                        tokens,
                        args,
                        0,
                        min(args.warmup, args.schedule),
                    )
            report(f"{backend} ({workers} process{'es' * (workers > 1)})", results, base)
    print(
        f"\nreproduce: .venv/bin/python bench/api_load.py --backends {args.backends} "
        f"--agents {args.agents} --duration {args.duration:g} --plans {args.plans} "
        f"--plan-time-limit {args.plan_time_limit:g}"
        + (
            f" --schedule {args.schedule:g} --connections {args.connections} "
            f"--warmup {args.warmup:g} --procs {args.procs} --client {args.client}"
            + " --no-bare"
            * (not args.bare)
        )
        * bool(args.schedule)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
