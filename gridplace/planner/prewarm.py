"""Speculative pre-warming: warm standbys chosen after the placement, under each workload's
``prewarm`` budget.

Owns: which nodes hold a workload's weights ready without serving (``PlacementPlan.spec.prewarm``),
at which level, and what that spends. Must not: change the assignments or call a solver.

For each workload with a budget (highest priority first), as many standbys as the worst single
node loss takes replicas from it (the failover need). A standby is a replica it could run: one of
its compiled options, on a node of that option's pool that holds none of its replicas, with the
option's GPUs free in the plan (not assigned, not another standby's), one per node.
Candidates are taken cheapest per request/s first (ties: the node's faster network, so a cold
download is shorter, then name). Each standby is held in VRAM (a start takes seconds) while the
workload's ``idleGpuBudgetPerHour`` pays for its GPUs, else on disk (a start skips the download)
while ``diskGiB`` holds its weights; past both, no more standbys.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from gridplace.planner.problem import GpuPool, Option, Problem
from gridplace.specs import Catalog, InferenceWorkload, Node, PlacementPlan
from gridplace.specs.plan import Prewarm, PrewarmLevel

GIB = 2**30


def _weights_gib(workload: InferenceWorkload, catalog: Catalog, option: Option) -> float:
    reference = workload.spec.model
    model = catalog.models[reference] if isinstance(reference, str) else reference
    return model.parameters_billion * 1e9 * option.precision.bytes_per_parameter / GIB


def _busy_gpus(plan: PlacementPlan) -> dict[str, set[int]]:
    busy: dict[str, set[int]] = defaultdict(set)
    for assignment in plan.spec.assignments:
        busy[assignment.node].update(assignment.gpus)
        for stage in assignment.stages or []:  # a pipeline's later stages hold GPUs too
            busy[stage.node].update(stage.gpus)
    return busy


def _candidates(
    problem: Problem, workload: int, nodes: dict[str, Node], serving: set[str]
) -> list[tuple[Option, GpuPool, str]]:
    found: list[tuple[Option, GpuPool, str]] = []
    for option in problem.options_of(workload):
        if option.stages:  # a standby is one node's replica; pipelines get none yet
            continue
        pool = problem.pools[option.pool]
        found.extend((option, pool, n) for n in pool.node_names if n not in serving)
    found.sort(
        key=lambda c: (c[0].cost_per_hour / c[0].capacity_rps, -nodes[c[2]].spec.network_gbps, c[2])
    )
    return found


def choose_prewarm(
    problem: Problem,
    plan: PlacementPlan,
    workloads: Sequence[InferenceWorkload],
    nodes: Sequence[Node],
    catalog: Catalog,
) -> list[Prewarm]:
    """The warm standbys (see the module docstring), in workload priority order."""
    by_name = {n.name: n for n in nodes}
    busy = _busy_gpus(plan)
    chosen: list[Prewarm] = []
    for demand in sorted(problem.workloads, key=lambda w: (-w.priority, w.index)):
        budget = workloads[demand.index].spec.prewarm
        placed = [a for a in plan.spec.assignments if a.workload == demand.name]
        if budget is None or not placed:
            continue
        per_node: dict[str, int] = defaultdict(int)
        for assignment in placed:
            per_node[assignment.node] += 1
        wanted = max(per_node.values())
        disk_left, idle_left = budget.disk_gib, budget.idle_gpu_budget_per_hour
        used_nodes = set(per_node)
        for option, pool, node in _candidates(problem, demand.index, by_name, set(per_node)):
            if wanted == 0:
                break
            free = [g for g in pool.gpu_indices if g not in busy[node]]
            if node in used_nodes or len(free) < option.tensor_parallel:
                continue
            weights = _weights_gib(workloads[demand.index], catalog, option)
            if option.cost_per_hour <= idle_left and weights <= disk_left:
                level, cost = PrewarmLevel.VRAM, option.cost_per_hour
            elif weights <= disk_left:
                level, cost = PrewarmLevel.DISK, 0.0
            else:
                continue
            gpus = free[: option.tensor_parallel]
            busy[node].update(gpus)  # a standby on disk needs its GPUs free when it starts
            idle_left -= cost
            disk_left -= weights
            used_nodes.add(node)
            wanted -= 1
            chosen.append(
                Prewarm(
                    workload=demand.name, node=node, gpus=gpus, precision=option.precision,
                    tensor_parallel=option.tensor_parallel, gpu_share=option.share,
                    level=level, weights_gib=round(weights, 3), cost_per_hour=round(cost, 4),
                )
            )  # fmt: skip
    return chosen
