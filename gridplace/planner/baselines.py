"""The baselines every figure is measured against, in the planner's own terms.

``capacity-only``: the static matching most grids use — for each workload in input order, the
first acceptable precision whose weights fit, on the node with the most free VRAM first (first
fit), replicas = max(min, demand / nameplate throughput). It ignores latency targets, network
distance and thermal derate: it is run on a problem compiled with those rules switched off.

``greedy``: filter and score, one workload at a time in priority order: among the options that
meet every rule, take the cheapest per request/s (ties: preferred precision, lower ITL) until the
demand of each traffic source is covered, within replica bounds, spread and budget; then top up
to replicas.min with the cheapest replicas that carry load (``Problem.carries_load``).

Both return option counts; de-aggregation and the plan output are shared with the CP-SAT path.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict

from gridplace.planner.core import RATE_SCALE, power_budget_watts, power_draw_watts
from gridplace.planner.deaggregate import NodeSlots
from gridplace.planner.problem import GpuPool, Option, Problem, WorkloadDemand


class _Grid:
    """Concrete free slots per node, so a baseline never books what cannot be packed.

    A replica goes on the fullest node of its pool that fits it (ties by name). The nodes of a
    pool are identical, so nodes with the same free slots per GPU answer alike: per pool, the
    nodes are kept by that state (each state's names in a heap), and a booking looks at one node
    per state instead of every node (greedy booked ~48,000 replicas over pools of up to hundreds
    of nodes at 10,000 x 1,000)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.nodes = {
            (pool.index, name): NodeSlots(name, pool.gpu_indices)
            for pool in problem.pools
            for name in pool.node_names
        }
        self.states: dict[int, dict[tuple[int, ...], list[str]]] = {}

    def _states(self, pool: GpuPool) -> dict[tuple[int, ...], list[str]]:
        """The pool's nodes by free slots per GPU (made on the pool's first booking, when every
        node is still free)."""
        states = self.states.get(pool.index)
        if states is None:
            names = sorted(pool.node_names)  # a sorted list is a heap
            states = self.states[pool.index] = {}
            if names:
                states[_state(self.nodes[(pool.index, names[0])])] = names
        return states

    def take(self, option: Option) -> bool:
        pool = self.problem.pools[option.pool]
        states = self._states(pool)
        best: tuple[tuple[int, str], tuple[int, ...], tuple[int, ...]] | None = None
        for state, names in states.items():
            node = self.nodes[(pool.index, names[0])]  # the state's first name
            gpus = node.find(option)
            if gpus is not None and (best is None or (-node.used, names[0]) < best[0]):
                best = ((-node.used, names[0]), state, gpus)
        if best is None:
            return False
        (_, name), state, gpus = best
        heapq.heappop(states[state])
        if not states[state]:
            del states[state]
        node = self.nodes[(pool.index, name)]
        node.take(option, gpus)
        heapq.heappush(states.setdefault(_state(node), []), name)
        return True

    def free_vram_gib(self, pool_index: int) -> float:
        pool = self.problem.pools[pool_index]
        free_slots = sum(sum(self.nodes[(pool_index, n)].free.values()) for n in pool.node_names)
        return free_slots / 4 * pool.memory_gib


def _state(node: NodeSlots) -> tuple[int, ...]:
    return tuple(node.free.values())


def _domain(problem: Problem, option: Option) -> str | None:
    workload = problem.workloads[option.workload]
    if workload.spread_across is None:
        return None
    pool = problem.pools[option.pool]
    return pool.provider if workload.spread_across == "provider" else pool.region


class Booking:
    """What greedy has booked: replicas per option, per workload and domain, and the spend."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.grid = _Grid(problem)
        self.counts: dict[int, int] = defaultdict(int)
        self.replicas: dict[int, int] = defaultdict(int)
        self.carrying: dict[int, int] = defaultdict(int)  # replicas that carry load
        self.per_domain: dict[tuple[int, str], int] = defaultdict(int)  # carrying ones
        # milli-requests/s per (workload, domain), as the model's spread capacity rows count it
        self.domain_milli: dict[tuple[int, str], int] = defaultdict(int)
        self.spent = 0.0
        self.budget = problem.budget_per_hour if problem.budget_per_hour is not None else math.inf
        self.power: dict[int, int] = defaultdict(int)  # watts booked per pool
        self.respect_power = True

    def add(self, option: Option) -> bool:
        """Book one more replica of ``option`` if every rule allows it."""
        if option.stages:  # the baselines place replicas on one node; the solver, pipelines
            return False
        workload = self.problem.workloads[option.workload]
        domain = _domain(self.problem, option)
        key = (workload.index, domain or "")
        limit = workload.spread_max_per_domain
        carries = self.problem.carries_load(option)
        if self.replicas[workload.index] >= workload.replicas_max:
            return False
        at_limit = limit is not None and carries and self.per_domain[key] >= limit
        limit_rps = self.problem.spread_limit_rps(workload.index)
        milli = math.floor(option.capacity_rps * RATE_SCALE)
        over_rps = limit_rps is not None and (
            self.domain_milli[key] + milli > math.floor(limit_rps * RATE_SCALE)
        )
        if domain is not None and (at_limit or over_rps):
            return False
        power_budget = power_budget_watts(self.problem.pools[option.pool])
        draw = power_draw_watts(option.power_watts)
        over_power = power_budget is not None and self.power[option.pool] + draw > power_budget
        if self.respect_power and over_power:
            return False
        if self.spent + option.cost_per_hour > self.budget or not self.grid.take(option):
            return False
        self.power[option.pool] += draw
        self.counts[option.index] += 1
        self.replicas[workload.index] += 1
        self.carrying[workload.index] += carries
        self.spent += option.cost_per_hour
        if domain is not None:
            self.per_domain[key] += carries
            self.domain_milli[key] += milli
        return True


def greedy(problem: Problem, booking: Booking | None = None) -> dict[int, int]:
    """The greedy baseline (module docstring); books into ``booking`` when one is given, whose
    replicas then count toward the demand first."""
    booking = booking or Booking(problem)
    for workload in sorted(problem.workloads, key=lambda w: (-w.priority, w.index)):
        # Score: cheapest per request/s first; ties by preferred precision, lower ITL, index.
        options = sorted(
            problem.options_of(workload.index),
            key=lambda o: (o.cost_per_hour / o.capacity_rps, o.precision_rank, o.itl_ms, o.index),
        )
        # Replicas booked before (a replan's kept replicas) serve first, in the same order.
        booked = {o.index: booking.counts[o.index] * o.capacity_rps for o in options}
        sources = sorted(workload.sources, key=lambda s: -s[1])
        book_demand(problem, booking, workload, options, sources, booked)
    return dict(booking.counts)


def book_demand(
    problem: Problem,
    booking: Booking,
    workload: WorkloadDemand,
    options: list[Option],
    sources: list[tuple[str, float]],
    spare: dict[int, float],
    new_spare: bool = False,
) -> None:
    """Books ``workload``'s demand source by source, taking ``options`` in their order: the
    capacity in ``spare`` (per option, used up as it serves) first, then new replicas, whose
    capacity left over joins ``spare`` when ``new_spare``; then replicas up to ``replicas.min``
    with the first options that carry load."""
    for region, share in sources:
        need = workload.booked_rps * share
        for option in options:
            if region in option.servable_sources and spare.get(option.index, 0.0) > 0:
                used = min(need, spare[option.index])
                spare[option.index] -= used
                need -= used
        for option in options:
            if region not in option.servable_sources:
                continue
            while need > 1e-9 and booking.add(option):
                need -= option.capacity_rps
                if new_spare:
                    spare[option.index] = spare.get(option.index, 0.0) + max(0.0, -need)
            if need <= 1e-9:
                break
    for option in options:
        if not problem.carries_load(option):
            continue
        while booking.carrying[workload.index] < workload.replicas_min and booking.add(option):
            pass


def capacity_only(problem: Problem) -> dict[int, int]:
    """First fit by free VRAM; ``problem`` must be compiled with SLOs and derate switched off.

    It keeps the structural rules (replica bounds, spread) but not the budget or the thermal
    power budget: a VRAM matcher neither prices what it places nor reads telemetry.
    """
    booking = Booking(problem)
    booking.budget = math.inf
    booking.respect_power = False  # nameplate figures: no thermal budget either
    for workload in problem.workloads:
        options = problem.options_of(workload.index)
        if not options:
            continue
        # The first acceptable precision that fits anywhere, at its smallest whole-GPU footprint.
        rank = min(o.precision_rank for o in options)
        fitting = [o for o in options if o.precision_rank == rank and o.share == 1]
        if not fitting:
            continue
        smallest_tp = min(o.tensor_parallel for o in fitting)
        fitting = [o for o in fitting if o.tensor_parallel == smallest_tp]
        nameplate_rps = max(o.capacity_rps for o in fitting)
        wanted = max(workload.replicas_min, math.ceil(workload.demand_rps / nameplate_rps))
        for _ in range(min(wanted, workload.replicas_max)):
            # Most free VRAM first; ties by pool order (stable).
            by_free_vram = sorted(
                fitting, key=lambda o: (-booking.grid.free_vram_gib(o.pool), o.pool)
            )
            if not any(booking.add(option) for option in by_free_vram):
                break  # nothing left that fits
    return dict(booking.counts)
