"""Reconcile: the demand the shards left unmet, placed on every shard's leftover capacity.

Owns the one pass that follows the join of a sharded plan (``shards``, ``shard_plan``): the
workloads short of their demand (their shard ran out of capacity another shard has spare) are
compiled once more against the whole grid's nodes less what the joined plan books — each node
with only its free GPUs, a reduced inventory (a GPU that any replica uses, even a share of it,
is not free; a node's price shrinks with its GPUs, so a GPU costs what it did) — solved for
their remaining demand, and the replicas found join the plan. Must not: change a replica the
shards placed.

What keeps the joined plan within every hard rule:
- a node of a throttled pool that holds any replica is left out: the power budget the model
  checks is a pool's, and the node's own share of it may be spent;
- replicas.max counts the replicas placed; replicas.min asks only for those still missing;
  the pass asks for no node-loss reserve (it serves demand that is unmet; failover is the
  shards');
- spread: a workload's new replicas go only to domains where it holds none yet, and a workload
  whose spread also caps capacity per domain (replicas.min above maxPerDomain) is left out;
- pipelines (stages on given GPUs of given nodes) are not offered.
Its pools are the compiled pools split by the real GPU indices their nodes have free, so that
its options, placements and the ``validate_plan`` oracle all speak of real GPUs.

Deterministic (nodes and workloads in the grid's order, one CP-SAT worker, a deterministic
work budget) and bounded: ``RECONCILE_SHARE`` of the plan's time limit; ``shard_plan`` gives
the shards the rest.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gridplace.planner.compile import compile_problem
from gridplace.planner.core import failure_domain
from gridplace.planner.deaggregate import Placement, deaggregate
from gridplace.planner.ports import OptionPredictor, PlannerInputs, RttLookup
from gridplace.planner.problem import GpuPool, Option, Problem, WorkloadDemand
from gridplace.planner.solve import solve_problem
from gridplace.planner.solver_settings import Solution, SolverSettings
from gridplace.specs import Node

RECONCILE_SHARE = 0.2  # of the plan's time limit (deterministic work)
MIN_UNMET_RPS = 1e-6  # booked req/s below this is served


@dataclass(frozen=True)
class Reconciled:
    """The pass's problem (its workloads' remaining demand; real GPU indices), its solution,
    the replicas it adds (in its problem's options), the grid's index of each of its workloads
    and the short workloads it left out, with why."""

    problem: Problem
    solution: Solution
    placements: list[Placement]
    workloads: tuple[int, ...]
    left_out: dict[int, str]


def booked_gpus(problem: Problem, placements: Sequence[Placement]) -> dict[str, set[int]]:
    """Per node, the GPU indices the placements use (every stage of a pipeline)."""
    used: dict[str, set[int]] = defaultdict(set)
    for placement in placements:
        option = problem.options[placement.option]
        for stage in option.stages:
            used[stage.node].update(stage.gpus)
        used[placement.node].update(placement.gpus)
    return used


def reduced_nodes(
    nodes: Sequence[Node], used: Mapping[str, set[int]], throttled: set[str]
) -> tuple[list[Node], dict[str, tuple[int, ...]]]:
    """Each healthy node with only its free GPUs (price per GPU kept) and, per node, the real
    index of each of its reduced GPUs; nodes with none free, and throttled nodes in use
    (``throttled``), are left out."""
    kept: list[Node] = []
    real: dict[str, tuple[int, ...]] = {}
    for node in nodes:
        busy = used.get(node.name, set())
        if not node.healthy or (busy and node.name in throttled):
            continue
        if not busy:
            kept.append(node)
            real[node.name] = tuple(range(node.spec.gpu_count))
            continue
        groups, free, start = [], [], 0
        for group in node.spec.gpus:
            mine = [g for g in range(start, start + group.count) if g not in busy]
            start += group.count
            if mine:
                groups.append(group.model_copy(update={"count": len(mine)}))
                free.extend(mine)
        if not free:
            continue
        price = node.spec.price_per_hour * len(free) / node.spec.gpu_count
        spec = node.spec.model_copy(update={"gpus": groups, "price_per_hour": price})
        kept.append(node.model_copy(update={"spec": spec}))
        real[node.name] = tuple(free)
    return kept, real


def unmet_by_workload(unmet_rps: Mapping[tuple[int, str], float]) -> dict[int, dict[str, float]]:
    """Booked req/s left unmet per workload and source (those above ``MIN_UNMET_RPS``)."""
    found: dict[int, dict[str, float]] = defaultdict(dict)
    for (workload, source), rps in sorted(unmet_rps.items()):
        if rps > MIN_UNMET_RPS:
            found[workload][source] = rps
    return dict(found)


def reconcile(
    inputs: PlannerInputs,
    joined: Problem,
    placements: Sequence[Placement],
    unmet_rps: Mapping[tuple[int, str], float],
    predictor: OptionPredictor,
    latency: RttLookup,
    settings: SolverSettings,
) -> Reconciled | None:
    """The pass over ``joined``'s plan (``placements``, leaving ``unmet_rps`` booked req/s per
    (workload, source) unmet); None when nothing is unmet or nothing could be offered."""
    short = unmet_by_workload(unmet_rps)
    if not short:
        return None
    placed = _placed(joined, placements)
    left_out = {
        w: "its spread caps capacity per domain"
        for w in short
        if joined.spread_limit_rps(w) is not None
    }
    left_out |= {
        w: "replicas.max reached"
        for w in short
        if len(placed[w]) >= joined.workloads[w].replicas_max and w not in left_out
    }
    members = tuple(w for w in sorted(short) if w not in left_out)
    if not members:
        return None
    throttled = {n for p in joined.pools if p.throttle_ratio > 0 for n in p.node_names}
    nodes, real = reduced_nodes(inputs.nodes, booked_gpus(joined, placements), throttled)
    named = {inputs.workloads[w].name for w in members}
    sub = PlannerInputs(
        nodes=nodes,
        workloads=[inputs.workloads[w] for w in members],
        catalog=inputs.catalog,
        headroom=inputs.headroom,
        warm=[(w, n) for w, n in inputs.warm if w in named],
    )
    compiled = compile_problem(sub, predictor, latency)
    demands = tuple(
        _remaining(compiled.workloads[i], short[w], placed[w], joined.workloads[w])
        for i, w in enumerate(members)
    )
    held = _domains(joined, placed, members)
    problem = dataclasses.replace(
        _real_pools(compiled, real, demands, held),
        node_gpu_counts={n.name: n.spec.gpu_count for n in inputs.nodes if n.name in real},
    )
    if not problem.options:
        return None
    share = dataclasses.replace(
        settings,
        time_limit_s=settings.time_limit_s * RECONCILE_SHARE,
        workers=1,
        ray_address=None,
    )
    solution = solve_problem(problem, share)
    found, _ = deaggregate(problem, solution.counts)
    return Reconciled(problem, solution, found, members, left_out)


def _placed(problem: Problem, placements: Sequence[Placement]) -> dict[int, list[Option]]:
    placed: dict[int, list[Option]] = defaultdict(list)
    for placement in placements:
        option = problem.options[placement.option]
        placed[option.workload].append(option)
    return placed


def _remaining(
    compiled: WorkloadDemand,
    unmet: Mapping[str, float],
    placed: Sequence[Option],
    original: WorkloadDemand,
) -> WorkloadDemand:
    """The demand the pass covers: the unmet booked req/s (as demand at the workload's booking)
    from its unmet sources, the replicas still allowed and still missing, no node-loss reserve."""
    booked = sum(unmet.values())
    return dataclasses.replace(
        compiled,
        demand_rps=booked / compiled.booking,
        sources=tuple((source, rps / booked) for source, rps in unmet.items()),
        replicas_min=max(0, original.replicas_min - len(placed)),
        replicas_max=original.replicas_max - len(placed),
        node_failures=0,
    )


def _domains(
    joined: Problem, placed: Mapping[int, Sequence[Option]], members: Sequence[int]
) -> dict[int, set[str]]:
    """Per workload of the pass (its index there), the spread domains it already holds."""
    held: dict[int, set[str]] = {}
    for position, w in enumerate(members):
        across = joined.workloads[w].spread_across
        if across is not None:
            held[position] = {d for o in placed[w] for d in joined.domains_of(o, across)}
    return held


def _real_pools(
    problem: Problem,
    real: Mapping[str, tuple[int, ...]],
    demands: tuple[WorkloadDemand, ...],
    held: Mapping[int, set[str]],
) -> Problem:
    """``problem`` with each pool split by the real GPU indices its nodes have free, each
    option copied to every part of its pool (pipelines, and options in a spread domain their
    workload holds, dropped), ``demands`` as its workloads."""
    pools: list[GpuPool] = []
    parts_of: dict[int, list[int]] = {}
    for pool in problem.pools:
        by_real: dict[tuple[int, ...], list[str]] = defaultdict(list)
        for name in pool.node_names:
            by_real[tuple(real[name][g] for g in pool.gpu_indices)].append(name)
        parts_of[pool.index] = []
        for indices, names in sorted(by_real.items()):
            parts_of[pool.index].append(len(pools))
            key = f"{pool.key} gpus {','.join(map(str, indices))}"
            pools.append(
                dataclasses.replace(
                    pool, index=len(pools), key=key, node_names=tuple(names), gpu_indices=indices
                )
            )
    options: list[Option] = []
    for option in problem.options:
        if option.stages:
            continue
        workload = demands[option.workload]
        for part in parts_of[option.pool]:
            across = workload.spread_across
            if across and failure_domain(pools[part], across) in held.get(option.workload, ()):
                continue
            options.append(dataclasses.replace(option, index=len(options), pool=part))
    return Problem(
        workloads=demands,
        pools=tuple(pools),
        options=tuple(options),
        rejections=(),
        node_gpu_counts=problem.node_gpu_counts,
        warm=problem.warm,
    )


__all__ = [
    "RECONCILE_SHARE",
    "Reconciled",
    "booked_gpus",
    "reconcile",
    "reduced_nodes",
    "unmet_by_workload",
]
