"""A start for N+1 on a grid short of capacity: one greedy over every workload's shortfall.

Owns one candidate start (``hints.choose_start`` checks it beside the others); must not state a
rule (``model``) or book a replica any other way than ``baselines.Booking`` does. Greedy by
scarcity (``scarcity``) books every workload's demand first and tops up failover afterwards, one
workload at a time: the replicas its demand took are the largest per GPU slot, and each then
needs a replica as large beside it to survive its loss, in pools that lower-priority demand has
filled meanwhile. Here every replica is chosen for what it takes off the first objective as the
model counts it, per workload:

    priority x (2 x demand not covered + capacity missing after the worst node loss)

(demand not covered: the largest shortfall over sets of the workload's traffic sources, as the
model's coverage rows; the loss: each option's replicas spread evenly over its group of
identical nodes, ``ceil(x / N)`` of them on one node). Among all workloads, the replica that
takes the most off per priced pool share (``scarcity.pool_prices``) is booked first, so demand
met now and demand met after a loss compete as the objective weighs them, and N+1 comes from
several smaller replicas on more nodes where that uses less of a scarce pool than doubling a
large one. Deterministic: ties by cost per hour, then option index.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict

from gridplace.planner.baselines import Booking
from gridplace.planner.core import RATE_SCALE
from gridplace.planner.objectives import SHORT_PENALTY, UNMET_WEIGHT
from gridplace.planner.problem import Option, Problem, WorkloadDemand
from gridplace.planner.scarcity import pool_prices, pool_share

MIN_GAIN = 1e-9
# What a state reads of each option once: the source sets it serves, whether it carries load,
# the group of nodes it is lost with (``Shortfall._profile``).
Profiles = dict[int, tuple[tuple[bool, ...], bool, tuple[str, ...] | None]]
# Replicas of one option weighed together in one move (``_best_move``).
LOOKAHEAD = 2


class Shortfall:
    """One workload's share of the first objective (in requests/s x priority) as its replicas
    are added: ``value()`` now, ``value_with(option)`` with one more replica of ``option``."""

    def __init__(
        self,
        problem: Problem,
        workload: WorkloadDemand,
        profiles: Profiles | None = None,
    ) -> None:
        self.problem, self.workload = problem, workload
        regions = [region for region, _ in workload.sources]
        shares = dict(workload.sources)
        self.sets = [
            (frozenset(chosen), workload.booked_rps * sum(shares[r] for r in chosen))
            for size in range(1, len(regions) + 1)
            for chosen in itertools.combinations(regions, size)
        ]
        self.serving = [0.0] * len(self.sets)  # capacity of options serving any source of a set
        self.carrying = 0.0  # capacity of replicas that carry load (what failover counts)
        self.carrying_replicas = 0  # toward replicas.min
        self.counts: dict[int, int] = defaultdict(int)
        self.lost: dict[tuple[str, ...], float] = defaultdict(float)  # per group of nodes
        self.worst = 0.0  # the largest of ``lost``
        # (``profiles``: read before by another state of the same workload, to share)
        self.profiles = {} if profiles is None else profiles
        self.failover = workload.node_failures > 0

    def _profile(self, option: Option) -> tuple[tuple[bool, ...], bool, tuple[str, ...] | None]:
        """Which source sets ``option`` serves, whether it carries load, and the group of
        identical nodes it is lost with (None when it counts for no failover), read once."""
        found = self.profiles.get(option.index)
        if found is None:
            pool = self.problem.pools[option.pool]
            carries = self.problem.carries_load(option)
            serves = tuple(bool(regions & set(option.servable_sources)) for regions, _ in self.sets)
            fails = carries and self.workload.may_fail(pool.reliability)
            found = self.profiles[option.index] = (
                serves,
                carries,
                pool.node_names if fails else None,
            )
        return found

    def _parts(self, option: Option | None, more: int) -> tuple[float, float]:
        """(demand not covered with replicas short of the minimum, capacity missing after the
        worst loss), with ``more`` more replicas of ``option`` when given."""
        serves, carries, group = self._profile(option) if option else ((), False, None)
        short = max(0, self.workload.replicas_min - self.carrying_replicas - more * carries)
        unmet = 0.0
        for position, (_, demand) in enumerate(self.sets):
            capacity = self.serving[position]
            if option is not None and serves[position]:
                capacity += option.capacity_rps * more
            unmet = max(unmet, demand - capacity)
        unmet += short * SHORT_PENALTY / RATE_SCALE
        if not self.failover:
            return unmet, 0.0
        carrying, worst = self.carrying, self.worst
        if option is not None and carries:
            carrying += option.capacity_rps * more
            if group is not None:
                worst = max(worst, self.lost[group] + self._extra_loss(option, more))
        return unmet, max(0.0, self.workload.booked_rps - (carrying - worst))

    def _extra_loss(self, option: Option, more: int) -> float:
        """What ``more`` replicas of ``option`` add to the loss of one node of its group."""
        nodes = self.problem.pools[option.pool].node_count
        count = self.counts[option.index]
        return option.capacity_rps * (math.ceil((count + more) / nodes) - math.ceil(count / nodes))

    def value(self) -> float:
        return self._weighted(self._parts(None, 0))

    def value_with(self, option: Option, more: int = 1) -> float:
        return self._weighted(self._parts(option, more))

    def _weighted(self, parts: tuple[float, float]) -> float:
        unmet, uncovered = parts
        return self.workload.priority * (UNMET_WEIGHT * max(0.0, unmet) + uncovered)

    def add(self, option: Option) -> None:
        """Count one more replica of ``option`` (booked)."""
        serves, carries, group = self._profile(option)
        for position, served in enumerate(serves):
            if served:
                self.serving[position] += option.capacity_rps
        if carries:
            self.carrying += option.capacity_rps
            self.carrying_replicas += 1
            if group is not None:
                self.lost[group] += self._extra_loss(option, 1)
                self.worst = max(self.worst, self.lost[group])
        self.counts[option.index] += 1


def failover_greedy(problem: Problem) -> dict[int, int]:
    """Replicas per option, booked by what they take off the first objective per priced pool
    share (module docstring); then replicas up to ``replicas.min`` where that is short."""
    booking = Booking(problem)
    prices = pool_prices(problem)
    price = {o.index: pool_share(problem, o) * prices[o.pool] for o in problem.options}
    states = {w.index: Shortfall(problem, w) for w in problem.workloads}
    blocked: dict[int, set[int]] = defaultdict(set)
    heap: list[tuple[float, float, int, int, int]] = []

    def push(workload: int) -> None:
        move = _best_move(states[workload], problem.options_of(workload), price, blocked[workload])
        if move is not None:
            heapq.heappush(heap, (move[0], move[1], workload, move[2], move[3]))

    for demand in problem.workloads:
        push(demand.index)
    while heap:
        _, _, workload, index, more = heapq.heappop(heap)
        option = problem.options[index]
        for _ in range(more):
            if not booking.add(option):  # a pool only fills, a bound only binds more
                blocked[workload].add(index)
                break
            states[workload].add(option)
        push(workload)
    _book_minimum(problem, booking)
    return dict(booking.counts)


def _best_move(
    state: Shortfall, options: list[Option], price: dict[int, float], blocked: set[int]
) -> tuple[float, float, int, int] | None:
    """The replicas of one option that take the most off ``state``'s value per priced pool
    share: (-that ratio, cost per hour, option index, how many). Up to ``LOOKAHEAD`` replicas of
    one option are weighed together: the first replica that carries load survives no loss of
    its own node, so only a second one shows what failover gains."""
    now = state.value()
    best: tuple[float, float, int, int] | None = None
    for option in options:
        if option.stages or option.index in blocked or option.capacity_rps <= 0:
            continue
        for more in range(1, (LOOKAHEAD if state.failover else 1) + 1):
            left = state.value_with(option, more)
            if now - left > MIN_GAIN:
                key = (-(now - left) / max(price[option.index] * more, 1e-12), option.cost_per_hour)
                if best is None or (*key, option.index, more) < best:
                    best = (*key, option.index, more)
            if left <= MIN_GAIN:  # more replicas take nothing more off
                break
    return best


def _book_minimum(problem: Problem, booking: Booking) -> None:
    """Replicas that carry load up to ``replicas.min``, cheapest per request/s first."""
    for workload in problem.workloads:
        options = sorted(
            (o for o in problem.options_of(workload.index) if problem.carries_load(o)),
            key=lambda o: (o.cost_per_hour / max(o.capacity_rps, 1e-12), o.index),
        )
        for option in options:
            while booking.carrying[workload.index] < workload.replicas_min and booking.add(option):
                pass


def demand_replicas(problem: Problem, counts: dict[int, int]) -> dict[int, int]:
    """``counts`` without the replicas no workload needs: per workload, the largest replicas
    (GPU slots, then cost per hour) go first while its part of the first objective, as
    ``problem`` counts it (replicas short of ``replicas.min`` included), does not rise. A first
    stage's optimum books every replica it can (it does not weigh cost), leaving no room for
    failover top-ups."""
    by_workload: dict[int, dict[int, int]] = defaultdict(dict)
    for index, count in counts.items():
        if count > 0:
            by_workload[problem.options[index].workload][index] = count
    kept: dict[int, int] = {}
    for workload, held in sorted(by_workload.items()):
        demand = problem.workloads[workload]
        target = _value(problem, demand, held)
        order = sorted(
            held, key=lambda i: (-problem.options[i].slots, -problem.options[i].cost_per_hour, i)
        )
        for index in order:
            while held[index] > 0:
                held[index] -= 1
                if _value(problem, demand, held) > target + MIN_GAIN:
                    held[index] += 1
                    break
        kept.update((i, n) for i, n in held.items() if n > 0)
    return kept


def _value(problem: Problem, workload: WorkloadDemand, held: dict[int, int]) -> float:
    state = Shortfall(problem, workload)
    for index, count in held.items():
        for _ in range(count):
            state.add(problem.options[index])
    return state.value()
