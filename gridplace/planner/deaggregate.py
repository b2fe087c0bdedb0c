"""Turning replica counts per option into concrete nodes and GPU indices.

The rule, per pool:
  1. Replicas of the previous plan keep their node and GPUs when their option still has replicas
     to place there (pinned ones first), so a replan moves nothing that did not have to move.
  2. The rest are placed largest first (TP degree, then GPU share), each on the node with room
     that stays within its share of a throttled pool's power budget (the model's thermal-power
     row is pool-wide; a node past its own budget throttles), then holds the fewest replicas of
     the same option, then of the same workload (spreading each option evenly over the pool's
     nodes is what the model's failover rows count on), then one that holds the workload's
     weights (``Problem.warm``: its start skips the download), then the most used one (packing
     keeps whole nodes free), ties by node name; on a node,
     whole-GPU replicas take the lowest free GPU indices, shared replicas the fullest GPU they
     still fit on (best fit), then the lowest index.
If step 1 fragmented a pool so that step 2 cannot place everything, the pool is redone without
the unpinned previous positions. Slot sizes divide each other, so largest-first always fits
counts that passed the model's packing rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from gridplace.planner.core import (
    SLOTS_PER_GPU,
    power_budget_watts,
    power_draw_watts,
    slots_per_gpu,
)
from gridplace.planner.problem import GpuPool, Option, PreviousReplica, Problem


@dataclass(frozen=True)
class Placement:
    """One replica of an option on a node's GPUs."""

    option: int
    node: str
    gpus: tuple[int, ...]


class NodeSlots:
    """One node's free GPU slots, power left and replicas, as placement fills it."""

    def __init__(
        self, name: str, gpu_indices: tuple[int, ...], power_budget: float = math.inf
    ) -> None:
        self.name = name
        self.free = {gpu: SLOTS_PER_GPU for gpu in gpu_indices}
        self.power_left = power_budget  # watts (infinite when the pool does not throttle)
        self.replicas_of: dict[int, int] = defaultdict(int)  # workload -> replicas here
        self.option_replicas: dict[int, int] = defaultdict(int)  # option -> replicas here

    @property
    def used(self) -> int:
        return sum(SLOTS_PER_GPU - f for f in self.free.values())

    def find(self, option: Option) -> tuple[int, ...] | None:
        if option.share == 1:
            whole = [gpu for gpu, free in sorted(self.free.items()) if free == SLOTS_PER_GPU]
            return (
                tuple(whole[: option.tensor_parallel])
                if len(whole) >= option.tensor_parallel
                else None
            )
        fitting = [(free, gpu) for gpu, free in self.free.items() if free >= option.slots]
        return (min(fitting)[1],) if fitting else None

    def fits_at(self, option: Option, gpus: tuple[int, ...]) -> bool:
        need = slots_per_gpu(option.share)
        return len(gpus) == option.tensor_parallel and all(
            self.free.get(g, -1) >= need for g in gpus
        )

    def take(self, option: Option, gpus: tuple[int, ...]) -> None:
        need = slots_per_gpu(option.share)
        for gpu in gpus:
            self.free[gpu] -= need
        self.replicas_of[option.workload] += 1
        self.option_replicas[option.index] += 1
        self.power_left -= power_draw_watts(option.power_watts)


def deaggregate(problem: Problem, counts: dict[int, int]) -> tuple[list[Placement], list[str]]:
    """Concrete placements for ``counts``; the second list names replicas that found no room.
    A pipeline is placed on its own nodes (the first stage's); single-node replicas fill the
    rest of each pool."""
    pipelines = sorted(i for i, n in counts.items() if n > 0 and problem.options[i].stages)
    taken = {s.node for i in pipelines for s in problem.options[i].stages}
    placements = [
        Placement(i, problem.options[i].stages[0].node, problem.options[i].stages[0].gpus)
        for i in pipelines
    ]
    by_pool: dict[int, dict[int, int]] = defaultdict(dict)
    for option_index, count in counts.items():
        if count > 0 and not problem.options[option_index].stages:
            by_pool[problem.options[option_index].pool][option_index] = count
    previous_by_pool: dict[int, list[PreviousReplica]] = defaultdict(list)
    for replica in problem.previous:
        if replica.option is not None and not problem.options[replica.option].stages:
            previous_by_pool[problem.options[replica.option].pool].append(replica)
    failures: list[str] = []
    for pool_index in sorted(by_pool):
        pool = problem.pools[pool_index]
        wanted = by_pool[pool_index]
        previous = previous_by_pool.get(pool_index, [])
        placed, missing = _place_pool(problem, pool, wanted, previous, taken)
        if missing:
            pinned_only = [r for r in previous if r.pinned]
            placed, missing = _place_pool(problem, pool, wanted, pinned_only, taken)
        placements.extend(placed)
        failures.extend(missing)
    return placements, failures


def _place_pool(
    problem: Problem,
    pool: GpuPool,
    wanted: dict[int, int],
    previous: list[PreviousReplica],
    taken: set[str],
) -> tuple[list[Placement], list[str]]:
    budget = power_budget_watts(pool)
    per_node = math.inf if budget is None else budget / pool.node_count
    nodes = {
        name: NodeSlots(name, pool.gpu_indices, per_node)
        for name in pool.node_names
        if name not in taken  # a pipeline's stage holds the node's GPUs of this pool
    }
    remaining = dict(wanted)
    placed: list[Placement] = []
    for replica in sorted(previous, key=lambda r: (not r.pinned, r.node, r.gpus)):
        assert replica.option is not None
        option = problem.options[replica.option]
        node = nodes.get(replica.node)
        if remaining.get(option.index, 0) > 0 and node and node.fits_at(option, replica.gpus):
            node.take(option, replica.gpus)
            placed.append(Placement(option.index, node.name, replica.gpus))
            remaining[option.index] -= 1
    missing: list[str] = []
    order = sorted(remaining.items(), key=lambda item: (-problem.options[item[0]].slots, item[0]))
    for option_index, count in order:
        option = problem.options[option_index]
        for _ in range(count):
            candidates = [
                (
                    node.power_left < power_draw_watts(option.power_watts),
                    node.option_replicas[option_index],
                    node.replicas_of[option.workload],
                    not problem.is_warm(option.workload, node.name),
                    -node.used,
                    node.name,
                    gpus,
                )
                for node in nodes.values()
                if (gpus := node.find(option)) is not None
            ]
            if not candidates:
                missing.append(
                    f"{problem.workloads[option.workload].name}: no room left in pool {pool.key}"
                )
                continue
            *_, name, gpus = min(candidates)
            nodes[name].take(option, gpus)
            placed.append(Placement(option_index, name, gpus))
    return placed, missing
