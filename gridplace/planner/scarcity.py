"""A start for a grid short of capacity: greedy by scarcity, with pools priced by contention.

Owns one candidate start (``hints.choose_start`` checks it beside greedy's); must not state a
rule (``model``) or book a replica any other way than ``baselines.Booking`` does. Greedy
(``baselines.greedy``) takes each workload's cheapest replicas per request/s in priority order:
when the grid is short, the first workloads take the pools that later ones could not do
without, and its unmet demand is far above the optimum's (``docs/solver-tuning.md``). Here:

- each pool gets a *price* per share of it (slots or VRAM, whichever a replica uses more of):
  every workload asks for its demand on the option cheapest at the current prices, and a pool
  asked for more than it holds gets dearer (multiplicative updates, a fixed number of rounds),
  so that a workload leaves a contended pool when it has another;
- workloads are booked by priority, and within one priority the scarcest first (the demand
  that the pools it may use could hold the fewest times over);
- each takes the options that use the least priced pool share per request/s first (cost per
  request/s breaks ties: the cost stage comes later).

Everything is deterministic (sorted, indexed ties); the prices cost ``PRICE_ROUNDS`` passes over the
options (1.2 s of Python at 10,000 x 1,000).
"""

from __future__ import annotations

import math
from collections import defaultdict

from gridplace.planner.baselines import Booking, book_demand
from gridplace.planner.core import SLOTS_PER_GPU
from gridplace.planner.problem import Option, Problem, WorkloadDemand

# Rounds of price updates and the step of each (prices move by exp(step x (load - 1))).
PRICE_ROUNDS = 40
PRICE_STEP = 0.5
MAX_PRICE = 1e6


def pool_share(problem: Problem, option: Option) -> float:
    """The share of its pool one replica of ``option`` takes: slots or VRAM, the larger."""
    pool = problem.pools[option.pool]
    slots = pool.node_count * pool.gpus_per_node * SLOTS_PER_GPU
    vram = pool.node_count * pool.gpus_per_node * pool.memory_gib
    return max(option.slots / slots, option.vram_gib * option.tensor_parallel / max(vram, 1e-9))


def _single_node(problem: Problem, workload: int) -> list[Option]:
    return [o for o in problem.options_of(workload) if not o.stages and o.capacity_rps > 0]


def pool_prices(problem: Problem) -> list[float]:
    """Each pool's price per share (1 when no one contends for it); see the module docstring."""
    prices = [1.0] * len(problem.pools)
    shares = {o.index: pool_share(problem, o) for o in problem.options}
    for _ in range(PRICE_ROUNDS):
        load = [0.0] * len(problem.pools)
        for workload in problem.workloads:
            options = _single_node(problem, workload.index)
            for region, share in workload.sources:
                servable = [o for o in options if region in o.servable_sources]
                if not servable:
                    continue
                best = min(
                    servable,
                    key=lambda o: (shares[o.index] * prices[o.pool] / o.capacity_rps, o.index),
                )
                replicas = workload.booked_rps * share / best.capacity_rps
                load[best.pool] += replicas * shares[best.index]
        prices = [
            min(MAX_PRICE, max(1.0, price * math.exp(PRICE_STEP * (used - 1.0))))
            for price, used in zip(prices, load, strict=True)
        ]
    return prices


def _scarcity(problem: Problem, workload: WorkloadDemand) -> float:
    """Demand over what the pools it may use could serve of it if it had them all."""
    best: dict[int, float] = defaultdict(float)
    for option in _single_node(problem, workload.index):
        rate = option.capacity_rps / pool_share(problem, option)
        best[option.pool] = max(best[option.pool], rate)
    held = sum(best.values())
    return workload.booked_rps / held if held > 0 else 0.0


def scarcity_greedy(problem: Problem, booking: Booking | None = None) -> dict[int, int]:
    """Replicas per option booked by scarcity at the pools' prices (module docstring)."""
    booking = booking or Booking(problem)
    prices = pool_prices(problem)
    order = sorted(problem.workloads, key=lambda w: (-w.priority, -_scarcity(problem, w), w.index))
    for workload in order:
        options = sorted(
            _single_node(problem, workload.index),
            key=lambda o: (
                pool_share(problem, o) * prices[o.pool] / o.capacity_rps,
                o.cost_per_hour / o.capacity_rps,
                o.precision_rank,
                o.index,
            ),
        )
        sources = sorted(workload.sources, key=lambda s: (-s[1], s[0]))
        book_demand(problem, booking, workload, options, sources, {}, new_spare=True)
    return dict(booking.counts)
