"""The discrete-event loop: requests sent, routed, delivered and served; nodes failing and back.

Owns: the event heap, the router, and the network between clients and replicas. Must not: read
plans or specs (``deploy`` turns them into a ``World``), or know how step times are computed
(replicas ask their ``SpeedSchedule``).

Events (a ``heapq`` of (time, kind, sequence number, payload); at equal times node changes go
first, then deliveries, then sends, then by sequence number, so runs are deterministic):

- send: a client sends a request. The router (at the client's side) picks the live replica of
  the workload with the lowest expected latency: p50 RTT from the client's region + the
  replica's expected TTFT and decode time from its visible load (``Replica.expected_ms``) plus
  the requests this client region's router sent there that have not arrived yet (a gateway
  counts what it sent itself; without them a clump sent in one millisecond all went to the
  replica that looked idlest when it left); a replica whose KV cache cannot hold the request at
  all is skipped. The request's RTT is drawn now: lognormal around the p50 with the sigma that
  puts its p99 at the measured p99 (``rtt_z`` is the request's standard normal draw). It
  reaches the replica half an RTT later.
- deliver: the request joins the replica's queue. If the replica died meanwhile, the error
  returns to the client (half an RTT) and the request is routed again.
- node down: replicas on the node fail; requests being prefilled or decoded are lost, waiting
  ones are routed again (after the error returns to the client).
- node up: its replicas restart empty, after their cold start (``ReplicaSetup.restart_s``:
  weights loaded from the node's disk and the engine started; 0 when cold starts are off).
- failover (``coldstart``): a standby replica (``standby``) is down until a node holding a
  replica of its workload fails; then one standby per replica lost starts, after the failure is
  detected (``World.detect_s``) and its own cold start (``start_s``: from nothing, from weights
  on disk or from weights in VRAM), and serves from then on.
- ready: a replica's cold start ended; it serves (unless its node went down meanwhile).
TTFT as the client sees it = first token at the replica + half the RTT - send time (the request
travelled the other half). Token gaps are taken as the replica produced them (network jitter
per token is not modelled).

Sends stop at ``duration_s``; the run then drains for up to ``drain_s`` so requests in flight
can finish. What is still in flight after that is ``UNFINISHED`` (and misses the SLA).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from gridplace.sim.arrivals import Arrivals
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.metrics import SimResult, WorkloadInfo
from gridplace.sim.replica import Replica, Request, Status
from gridplace.sim.steps import ReplicaLimits, SpeedSchedule

DRAIN_S = 600.0
NODE_DOWN, NODE_UP, DELIVER, SEND, READY = 0, 1, 2, 3, 4
NOTHING_IN_TRANSIT = (0, 0)


@dataclass(frozen=True)
class WorkloadSetup:
    name: str
    ttft_slo_ms: float
    itl_slo_ms: float
    mean_prompt_tokens: int
    mean_output_tokens: int
    regions: tuple[str, ...]
    cost_per_hour: float = 0.0


@dataclass(frozen=True)
class ReplicaSetup:
    label: str
    workload: int
    node: str
    speed: SpeedSchedule
    limits: ReplicaLimits
    rtt_p50_ms: tuple[float, ...]  # from each of its workload's regions
    rtt_sigma: tuple[float, ...]  # lognormal sigma of the RTT, per region
    restart_s: float = 0.0  # cold start when its node comes back (weights on the node's disk)
    standby: bool = False  # starts when a replica of its workload is lost (failover)
    start_s: float = 0.0  # a standby's cold start after the failure is detected


@dataclass(frozen=True)
class World:
    """Everything a run needs besides the requests."""

    workloads: tuple[WorkloadSetup, ...]
    replicas: tuple[ReplicaSetup, ...]
    outages: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    detect_s: float = 0.0  # from a node failure to its standbys being started


class _Run:
    def __init__(self, world: World, arrivals: Arrivals, window_s: float | None = None) -> None:
        self.world = world
        self.replicas = [
            Replica(i, r.speed, r.limits, window_s) for i, r in enumerate(world.replicas)
        ]
        self.by_workload: list[list[int]] = [[] for _ in world.workloads]
        for index, setup in enumerate(world.replicas):
            self.by_workload[setup.workload].append(index)
        self.by_node: dict[str, list[int]] = {}
        for index, setup in enumerate(world.replicas):
            self.by_node.setdefault(setup.node, []).append(index)
        self.standbys: dict[int, list[int]] = {}  # workload -> its standbys
        for index, setup in enumerate(world.replicas):
            if setup.standby:
                self.standbys.setdefault(setup.workload, []).append(index)
                self.replicas[index].alive = False
        self.down: set[str] = set()
        self.starting: dict[int, tuple[float, float, float]] = {}  # -> (began, ready, lost at)
        # (replica, cold start began, serving, when the node loss that caused it happened)
        self.cold_starts: list[tuple[int, float, float, float]] = []
        self.lost_at: dict[str, float] = {}  # node -> when it went down last
        # (replica, client region) -> (requests, prompt tokens) routed there, not arrived yet
        self.transit: dict[tuple[int, int], tuple[int, int]] = {}
        self.heap: list[tuple[float, int, int, object]] = []
        self.sequence = len(arrivals)
        self.requests = [
            Request(i, int(w), int(g), float(t), int(p), int(o), float(z))
            for i, (t, w, g, p, o, z) in enumerate(
                zip(
                    arrivals.time_s.tolist(),
                    arrivals.workload.tolist(),
                    arrivals.region.tolist(),
                    arrivals.prompt_tokens.tolist(),
                    arrivals.output_tokens.tolist(),
                    arrivals.rtt_z.tolist(),
                    strict=True,
                )
            )
        ]

    def push(self, time_s: float, kind: int, payload: object) -> None:
        self.sequence += 1
        heapq.heappush(self.heap, (time_s, kind, self.sequence, payload))

    def route(self, request: Request, now_s: float, delay_s: float) -> None:
        """Send ``request`` to the best live replica, arriving after ``delay_s`` + half an RTT."""
        workload = self.world.workloads[request.workload]
        setups = self.world.replicas
        best, best_ms = -1, math.inf
        for index in self.by_workload[request.workload]:
            replica = self.replicas[index]
            if not replica.alive or request.tokens > replica.limits.kv_tokens:
                continue
            replica.advance(now_s)
            expected_ms = setups[index].rtt_p50_ms[request.region] + replica.expected_ms(
                now_s,
                request.prompt,
                request.output,
                workload.mean_prompt_tokens,
                workload.mean_output_tokens,
                self.transit.get((index, request.region), NOTHING_IN_TRANSIT),
            )
            # Ties go to the lower replica index (deterministic).
            if expected_ms < best_ms:
                best, best_ms = index, expected_ms
        if best < 0:
            request.status = Status.LOST
            request.replica = -1
            return
        setup = setups[best]
        p50_ms, sigma = setup.rtt_p50_ms[request.region], setup.rtt_sigma[request.region]
        request.rtt_s = p50_ms * math.exp(sigma * request.rtt_z) / 1000.0
        request.replica = best
        sent, prompt_tokens = self.transit.get((best, request.region), NOTHING_IN_TRANSIT)
        self.transit[best, request.region] = (sent + 1, prompt_tokens + request.prompt)
        self.push(now_s + delay_s + request.rtt_s / 2, DELIVER, request)

    def arrived(self, request: Request) -> None:
        """``request`` reached its replica (or found it dead): no longer in transit."""
        key = (request.replica, request.region)
        sent, prompt_tokens = self.transit[key]
        self.transit[key] = (sent - 1, prompt_tokens - request.prompt)

    def cold_start(self, index: int, start_s: float, began_s: float, lost_s: float) -> None:
        """Start replica ``index`` at ``start_s``: it serves after its cold start (a standby
        already starting or serving is left alone)."""
        setup, replica = self.world.replicas[index], self.replicas[index]
        if replica.alive or index in self.starting or setup.node in self.down:
            return
        took_s = setup.start_s if setup.standby else setup.restart_s
        self.starting[index] = (began_s, start_s + took_s, lost_s)
        self.push(start_s + took_s, READY, index)

    def fail_over(self, lost: int, now_s: float) -> None:
        """Start the first idle standby of the lost replica's workload (list order: the plan's)."""
        for index in self.standbys.get(self.world.replicas[lost].workload, []):
            node = self.world.replicas[index].node
            if (
                not self.replicas[index].alive
                and index not in self.starting
                and (node not in self.down)
            ):
                self.cold_start(index, now_s + self.world.detect_s, now_s, now_s)
                return

    def lose(self, requests: list[Request]) -> None:
        for request in requests:
            request.status = Status.LOST

    def loop(self, end_s: float) -> None:
        self.heap = [(r.sent_s, SEND, r.index, r) for r in self.requests]
        for node, outages in self.world.outages.items():
            if node not in self.by_node:
                continue
            for down_s, up_s in outages:
                self.push(down_s, NODE_DOWN, node)
                if math.isfinite(up_s):
                    self.push(up_s, NODE_UP, node)
        heapq.heapify(self.heap)
        while self.heap:
            now_s, kind, _, payload = heapq.heappop(self.heap)
            if now_s > end_s:
                break
            if kind == SEND:
                assert isinstance(payload, Request)
                self.route(payload, now_s, 0.0)
            elif kind == DELIVER:
                assert isinstance(payload, Request)
                self.arrived(payload)
                replica = self.replicas[payload.replica]
                if replica.alive:
                    replica.advance(now_s)
                    replica.enqueue(payload, now_s)
                else:
                    self.route(payload, now_s, payload.rtt_s / 2)
            elif kind == NODE_DOWN:
                assert isinstance(payload, str)
                self.down.add(payload)
                self.lost_at[payload] = now_s
                for index in self.by_node[payload]:
                    self.starting.pop(index, None)
                    if self.replicas[index].alive and not self.world.replicas[index].standby:
                        self.fail_over(index, now_s)
                for index in self.by_node[payload]:
                    replica = self.replicas[index]
                    if not replica.alive:
                        continue
                    replica.advance(now_s)
                    lost, reroute = replica.fail()
                    self.lose(lost)
                    for request in reroute:
                        self.route(request, now_s, request.rtt_s / 2)
            elif kind == NODE_UP:
                assert isinstance(payload, str)
                self.down.discard(payload)
                for index in self.by_node[payload]:
                    if not self.world.replicas[index].standby:
                        self.cold_start(index, now_s, now_s, self.lost_at.get(payload, now_s))
            else:
                assert isinstance(payload, int)
                began, ready_s, lost_s = self.starting.get(payload, (math.nan,) * 3)
                if ready_s == now_s:  # not a start cancelled by a later failure
                    del self.starting[payload]
                    self.replicas[payload].restart(now_s)
                    self.cold_starts.append((payload, began, now_s, lost_s))
        for replica in self.replicas:
            replica.advance(end_s)
        for request in self.requests:
            if request.status is Status.PENDING:
                request.status = Status.UNFINISHED


def run(
    world: World,
    arrivals: Arrivals,
    duration_s: float,
    drain_s: float = DRAIN_S,
    window_s: float | None = None,
) -> SimResult:
    """Simulate ``arrivals`` (sent within ``[0, duration_s)``) against ``world``; with
    ``window_s``, each replica also accounts its engine figures per window of that length."""
    if not duration_s > 0:
        raise SimSettingsError("duration_s", duration_s, "must be > 0")
    if drain_s < 0:
        raise SimSettingsError("drain_s", drain_s, "must be >= 0")
    started = time.perf_counter()
    state = _Run(world, arrivals, window_s)
    state.loop(duration_s + drain_s)
    requests = state.requests
    first = np.array([r.first_token_s for r in requests], dtype=np.float64)
    last = np.array([r.last_token_s for r in requests], dtype=np.float64)
    sent = arrivals.time_s
    rtt = np.array([r.rtt_s for r in requests], dtype=np.float64)
    output = arrivals.output_tokens
    status = np.array([int(r.status) for r in requests], dtype=np.int64)
    done = status == int(Status.DONE)
    # The client sees the first token half an RTT after the replica sent it.
    ttft_ms = np.where(np.isfinite(first), (first + rtt / 2 - sent) * 1000.0, np.inf)
    gaps = np.maximum(output - 1, 1)
    itl_mean_ms = np.where(done, np.where(output > 1, (last - first) * 1000.0 / gaps, 0.0), np.inf)
    itl_max_ms = np.array(
        [r.itl_max_ms if r.status is Status.DONE else math.inf for r in requests], dtype=np.float64
    )
    e2e_ms = np.where(done, (last + rtt / 2 - sent) * 1000.0, np.inf)
    return SimResult(
        workloads=tuple(
            WorkloadInfo(
                w.name,
                w.ttft_slo_ms,
                w.itl_slo_ms,
                w.cost_per_hour,
                sum(1 for r in world.replicas if r.workload == i and not r.standby),
            )
            for i, w in enumerate(world.workloads)
        ),
        replica_labels=tuple(r.label for r in world.replicas),
        duration_s=duration_s,
        workload=arrivals.workload,
        region=arrivals.region,
        sent_s=sent,
        prompt_tokens=arrivals.prompt_tokens,
        output_tokens=output,
        replica=np.array([r.replica for r in requests], dtype=np.int64),
        status=status,
        ttft_ms=ttft_ms,
        itl_mean_ms=itl_mean_ms,
        itl_max_ms=itl_max_ms,
        e2e_ms=e2e_ms,
        steps=sum(r.steps_run for r in state.replicas),
        replica_windows=tuple(r.windows for r in state.replicas),
        wall_s=time.perf_counter() - started,
        cold_starts=tuple(state.cold_starts),
        replica_workloads=tuple(r.workload for r in world.replicas),
    )
