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
its registered throttle ratio wobbling under the replan threshold) and a pull with its ETag every
15 s at a random phase; due rounds are sent in time order over ``--connections`` keep-alive
connections (one client process, so that 10,000 agents cost it tens of MiB), the plans spread
over the window; ``--agents 2000 --schedule 3`` offers the same request rate as 10,000 agents on
15 s. SQLite is served by one process, PostgreSQL by ``--workers 2``.

PostgreSQL is used from ``GRIDPLACE_TEST_POSTGRES_URL`` (a fresh schema, dropped after), else a
throwaway cluster is made with the local ``initdb``/``pg_ctl`` (run as the ``postgres`` user when
this runs as root) on a unix socket in a temporary directory; without either it is skipped.

Printed per backend: agent requests/s over the measured window, p50/p99 latency per request
kind as the agents saw it and the mean time inside the server (its own request histogram, from
``/metrics``), non-2xx/304 answers, and each plan submission's latency. Plans are solved in the
server's worker process (the default), so the API keeps answering while they run. Client, server
and solver share this machine's cores (2 in the project's sandbox), so the figures are a floor,
not a server ceiling. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import glob
import heapq
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from gridplace.api.store.engine import scratch_schema

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
STARTUP_TIMEOUT_S = 300  # several workers on a loaded 2-core machine
SEED = 20261127
STAGGER_S = 1.0  # agents start spread over this much time (inside the measured window)


@dataclass
class Results:
    latencies_s: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    plan_latencies_s: list[float] = field(default_factory=list)
    plan_statuses: Counter[int] = field(default_factory=Counter)
    window_s: float = 0.0
    server_mean_ms: dict[str, float] = field(default_factory=dict)
    slips_s: list[float] = field(default_factory=list)  # scheduled agents: how late each round
    client_cpu_s: float = 0.0  # this process's CPU over the window

    def record(self, kind: str, started: float, status: int) -> None:
        self.latencies_s[kind].append(time.perf_counter() - started)
        self.statuses[(kind, status)] += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------------------ the server


@contextlib.contextmanager
def server(
    database_url: str, workdir: Path, rate_unlimited: bool, workers: int = 1
) -> Iterator[str]:
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
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        errors = [line for line in log_path.read_text().splitlines() if "ERROR" in line]
        if errors:
            print(f"server log ({len(errors)} errors): " + "\n".join(errors[:10]), file=sys.stderr)


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


async def agent_round(
    client: httpx.AsyncClient,
    name: str,
    token: str,
    throttle: float,
    etags: dict[str, str],
    results: Results,
) -> None:
    """One round of a real agent: a heartbeat (its throttle ratio wobbling under the replan
    threshold), then a pull with the ETag of its last answer."""
    headers = {"Authorization": f"Bearer {token}"}
    telemetry = {"healthy": True, "thermal": {"throttleRatio": round(throttle, 4)}}
    started = time.perf_counter()
    answer = await client.post(
        f"/v1/nodes/{name}/telemetry", json=telemetry, headers=headers | MINIMAL
    )
    results.record("telemetry", started, answer.status_code)
    started = time.perf_counter()
    etag = etags.get(name)
    pull_headers = headers | ({"If-None-Match": etag} if etag else {})
    answer = await client.get(f"/v1/nodes/{name}/assignments", headers=pull_headers)
    results.record("assignments", started, answer.status_code)
    if answer.status_code == 200 and "ETag" in answer.headers:
        etags[name] = answer.headers["ETag"]


async def load_scheduled(
    url: str,
    nodes: list[dict[str, Any]],
    tokens: list[str],
    args: argparse.Namespace,
) -> Results:
    """``--schedule``: every agent's round is due every ``--schedule`` s at a random phase; due
    rounds are queued in time order and sent by ``--connections`` senders, each on its own
    keep-alive connection; ``--plans`` submissions are spread over the window.

    One httpx pool shared by 10,000 waiting agents costs the pool O(waiting x connections) per
    request: at 10,000 agents the load generator spent its core there and sent nothing."""
    results, warming = Results(), Results()  # ``--warmup``'s rounds are sent, not counted
    names = [node["metadata"]["name"] for node in nodes]
    rng = random.Random(SEED)
    throttles = [throttle_of(node) + rng.uniform(0.0, 0.02) for node in nodes]
    etags: dict[str, str] = {}
    due: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()

    async def schedule(started: float, deadline: float) -> None:
        rounds = [(started + rng.uniform(0.0, args.schedule), i) for i in range(len(names))]
        heapq.heapify(rounds)
        while rounds[0][0] < deadline:
            await asyncio.sleep(max(0.0, rounds[0][0] - time.perf_counter()))
            now = time.perf_counter()
            while rounds[0][0] <= now:
                at, i = heapq.heappop(rounds)
                due.put_nowait((at, i))
                heapq.heappush(rounds, (at + args.schedule, i))
        for _ in range(args.connections):
            due.put_nowait(None)

    async def send() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            while (item := await due.get()) is not None:
                at, i = item
                counted = results if at >= measured_from else warming
                counted.slips_s.append(time.perf_counter() - at)
                await agent_round(client, names[i], tokens[i], throttles[i], etags, counted)

    async def window_opens() -> float:
        await asyncio.sleep(max(0.0, measured_from - time.perf_counter()))
        return time.process_time()

    async with httpx.AsyncClient(base_url=url, timeout=300) as planner:
        started = time.perf_counter()
        measured_from = started + args.warmup
        senders = [asyncio.create_task(send()) for _ in range(args.connections)]
        cpu = asyncio.create_task(window_opens())
        plans = asyncio.create_task(submit_spread(planner, args, results))
        await schedule(started, measured_from + args.duration)
        await asyncio.gather(*senders)
        results.window_s = time.perf_counter() - measured_from
        results.client_cpu_s = time.process_time() - await cpu
        await plans
        results.server_mean_ms = server_means_ms((await planner.get("/metrics")).text)
    return results


async def submit_spread(
    client: httpx.AsyncClient, args: argparse.Namespace, results: Results
) -> None:
    await asyncio.sleep(args.warmup)
    for _ in range(args.plans):
        await asyncio.sleep(args.duration / (args.plans + 1))
        await submit_plan(client, args.plan_time_limit, results)


async def submit_plan(client: httpx.AsyncClient, time_limit_s: float, results: Results) -> None:
    started = time.perf_counter()
    answer = await client.post(
        "/v1/plans",
        content=(EXAMPLES / "workloads" / "workloads.yaml").read_text(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/yaml"},
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
        results.server_mean_ms = server_means_ms((await client.get("/metrics")).text)
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


def report(backend: str, results: Results) -> None:
    total = sum(len(v) for v in results.latencies_s.values())
    every = [x for values in results.latencies_s.values() for x in values]
    print(
        f"\n{backend}: {total:,} agent requests in {results.window_s:.1f} s = "
        f"{total / results.window_s:,.0f} requests/s; "
        f"p50 {percentile_ms(every, 0.5):.1f} ms, p99 {percentile_ms(every, 0.99):.1f} ms"
    )
    header = f"  {'request':<34}{'count':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'in server, mean ms':>20}")
    labels = {
        "telemetry": ("POST /v1/nodes/{n}/telemetry", "POST /v1/nodes/{name}/telemetry"),
        "assignments": ("GET  /v1/nodes/{n}/assignments", "GET /v1/nodes/{name}/assignments"),
        "state": ("PUT  /v1/nodes/{n}/state", "PUT /v1/nodes/{name}/state"),
    }
    for kind, (label, route) in labels.items():
        values = results.latencies_s.get(kind, [])
        inside = results.server_mean_ms.get(route, float("nan"))
        print(
            f"  {label:<34}{len(values):>8,}{len(values) / results.window_s:>9.0f}"
            f"{percentile_ms(values, 0.5):>9.1f}{percentile_ms(values, 0.99):>9.1f}"
            f"{inside:>20.1f}"
        )
    unexpected = {k: n for k, n in results.statuses.items() if k[1] not in (200, 204, 304)}
    not_modified = sum(n for (kind, status), n in results.statuses.items() if status == 304)
    print(
        f"  assignments answered 304 (unchanged): {not_modified:,}; other answers than "
        f"200/204/304: {dict(unexpected) or 'none'}"
    )
    if results.slips_s:
        print(
            f"  schedule: rounds started late by p50 {percentile_ms(results.slips_s, 0.5):.1f} ms,"
            f" p99 {percentile_ms(results.slips_s, 0.99):.1f} ms; load generator (this process) "
            f"{results.client_cpu_s / results.window_s:.2f} CPU s per s, max RSS "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        )
    plans = ", ".join(f"{s:.1f}" for s in sorted(results.plan_latencies_s))
    print(
        f"  plan submissions ({len(results.plan_latencies_s)} in parallel, queued for the "
        f"solver): {plans} s; statuses {dict(results.plan_statuses)}"
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
        help="Period of each agent's heartbeat and pull, s (15: a real agent); the plans are "
        "then spread over the window. 0: agents loop without pause, each on its own connection.",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="Pooled connections (with --schedule)."
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="With --schedule: seconds of rounds sent before the measured window and not "
        "counted (each agent's first pull has no ETag and each token its first check).",
    )
    args = parser.parse_args()
    if not 1 <= args.agents <= 100_000 or args.duration <= 0 or args.plans < 0:
        parser.error("--agents must be 1..100000, --duration > 0, --plans >= 0")
    if args.warmup < 0 or (args.warmup and not args.schedule):
        parser.error("--warmup must be >= 0 and needs --schedule")
    nodes = nodes_for(args.agents)
    names = [n["metadata"]["name"] for n in nodes]
    how = (
        f"each every {args.schedule:g} s over {args.connections} connections, {args.plans} plan "
        "submissions spread over the window"
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
                if backend == "sqlite":
                    url: str | None = f"sqlite:///{workdir / 'bench.db'}"
                elif backend == "postgresql":
                    url = stack.enter_context(postgres(workdir))
                    if url is None:
                        print("\npostgresql: skipped (no GRIDPLACE_TEST_POSTGRES_URL, no pg_ctl)")
                        continue
                else:
                    parser.error(f"unknown backend {backend!r}")
                workers = 1 if backend == "sqlite" else 2  # SQLite serves one process
                api = stack.enter_context(server(url, workdir, True, workers))
                tokens = asyncio.run(setup(api, nodes, args.plan_time_limit))
                results = asyncio.run(
                    load_scheduled(api, nodes, tokens, args)
                    if args.schedule
                    else load(api, names, tokens, args.duration, args.plans, args.plan_time_limit)
                )
                report(f"{backend} ({workers} process{'es' * (workers > 1)})", results)
    print(
        f"\nreproduce: .venv/bin/python bench/api_load.py --backends {args.backends} "
        f"--agents {args.agents} --duration {args.duration:g} --plans {args.plans} "
        f"--plan-time-limit {args.plan_time_limit:g}"
        + (
            f" --schedule {args.schedule:g} --connections {args.connections} "
            f"--warmup {args.warmup:g}"
        )
        * bool(args.schedule)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
