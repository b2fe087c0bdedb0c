"""``validate_plan``: a solver-free check that a plan obeys every hard rule of its problem.

Used on every solver and baseline result in the tests (STYLE.md rule 8). Returns the violations,
each prefixed with the family it breaks; an empty list means the plan is valid.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gridplace.planner.core import (
    RATE_SCALE,
    SLOTS_PER_GPU,
    failure_domain,
    power_budget_watts,
    power_draw_watts,
    slots_per_gpu,
)
from gridplace.planner.pipeline_predict import Stage, StageNode, stage_errors
from gridplace.planner.problem import GpuPool, Problem, WorkloadDemand
from gridplace.specs import Assignment, PlacementPlan


def validate_plan(problem: Problem, plan: PlacementPlan) -> list[str]:
    """Every hard rule the plan breaks, each prefixed with its family; [] when it is valid."""
    booked, violations = _book(problem, plan)
    return violations + _totals(problem, plan, booked)


@dataclass
class _Booked:
    """What a plan's assignments book, per node GPU, workload, domain and pool."""

    slots_used: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    replicas: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    capacity: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    on_node: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    # replicas that carry load, and milli-requests/s, per (workload, domain)
    per_domain: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    domain_milli: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    draw: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # pool -> watts
    cost: float = 0.0


def _book(problem: Problem, plan: PlacementPlan) -> tuple[_Booked, list[str]]:
    """Book each assignment on its option; the assignments that match no option or GPU."""
    violations: list[str] = []
    booked = _Booked()
    workloads = {w.name: w for w in problem.workloads}
    pools_of_node: dict[str, list[int]] = defaultdict(list)
    for pool in problem.pools:
        for node in pool.node_names:
            pools_of_node[node].append(pool.index)
    options = {
        (o.workload, o.pool, o.precision, o.tensor_parallel, o.share): o
        for o in problem.options
        if not o.stages
    }
    for a in plan.spec.assignments:
        where = f"{a.workload} on {a.node} gpus {a.gpus}"
        workload = workloads.get(a.workload)
        if workload is None:
            violations.append(f"reference: {where}: unknown workload")
            continue
        if a.node not in problem.node_gpu_counts:
            violations.append(f"gpu-count: {where}: node unknown or unhealthy")
            continue
        if a.stages:
            violations.extend(_book_pipeline(problem, a, workload, booked))
            continue
        pool_index = next(
            (p for p in pools_of_node[a.node] if a.gpus[0] in problem.pools[p].gpu_indices), None
        )
        if pool_index is None or any(
            g not in problem.pools[pool_index].gpu_indices for g in a.gpus
        ):
            violations.append(f"gpu-count: {where}: GPU index not on the node (or mixed models)")
            continue
        share = a.gpu_share
        option = options.get((workload.index, pool_index, a.precision, a.tensor_parallel, share))
        if option is None:
            violations.append(
                f"precision-support/vram/slo: {where}: {a.precision.value} tp{a.tensor_parallel} "
                f"1/{share} GPU is not an option that meets every compile-time rule"
            )
            continue
        for gpu in a.gpus:
            booked.slots_used[(a.node, gpu)] += slots_per_gpu(option.share)
        booked.replicas[a.workload] += 1
        booked.capacity[a.workload] += option.capacity_rps
        booked.on_node[(a.workload, a.node)] += option.capacity_rps  # every node may be lost
        pool = problem.pools[pool_index]
        if workload.spread_across:
            domain = failure_domain(pool, workload.spread_across)
            booked.per_domain[(a.workload, domain)] += problem.carries_load(option)
            booked.domain_milli[(a.workload, domain)] += int(option.capacity_rps * RATE_SCALE)
        booked.cost += option.cost_per_hour
        booked.draw[pool_index] += power_draw_watts(option.power_watts)
        if a.predicted and a.predicted.itl_ms > workload.itl_slo_ms + 1e-6:
            violations.append(f"slo-itl: {where}: predicted ITL {a.predicted.itl_ms} ms")
    return booked, violations


def _book_pipeline(
    problem: Problem, a: Assignment, workload: WorkloadDemand, booked: _Booked
) -> list[str]:
    """Book a pipeline replica: every stage's whole GPUs, power and node loss; its stages
    checked by ``pipeline_predict.stage_errors`` (contiguous, every layer once, VRAM per stage,
    nodes distinct) against the nodes' pools."""
    stages = a.stages or []
    where = f"{a.workload} pipeline over {', '.join(s.node for s in stages)}"
    layout = tuple((s.node, *s.layers) for s in stages)
    alike = [o for o in problem.options_of(workload.index) if o.stages and o.load is not None]
    alike = [o for o in alike if o.precision == a.precision]
    if not alike:
        return [f"pipeline-vram/pipeline-itl: {where}: no pipeline of it meets the rules"]
    option = next(
        (o for o in alike if tuple((s.node, s.first, s.last) for s in o.stages) == layout), None
    )
    # Its own operating point's load; for a layout no option has, the smallest (batch) one.
    load = (option or min(alike, key=lambda o: o.load.kv_cache_gib if o.load else 0.0)).load
    assert load is not None
    violations: list[str] = []
    nodes: dict[str, StageNode] = {}
    for stage in stages:
        pool = _pool_of(problem, stage.node, stage.gpus)
        if pool is None:
            violations.append(f"gpu-count: {where}: {stage.node} gpus {stage.gpus} not free GPUs")
            continue
        nodes[stage.node] = StageNode(
            stage.node, pool.region, len(stage.gpus), pool.memory_gib, 0, 0
        )
        for gpu in stage.gpus:
            booked.slots_used[(stage.node, gpu)] += SLOTS_PER_GPU
        booked.draw[pool.index] += power_draw_watts(pool.tdp_watts * len(stage.gpus))
    steps = [Stage(s.node, len(s.gpus), *s.layers) for s in stages]
    violations += [f"pipeline-vram: {where}: {e}" for e in stage_errors(load, steps, nodes)]
    if option is None:
        return [*violations, f"pipeline-itl: {where}: its layout is no compiled pipeline option"]
    for node in nodes:
        booked.on_node[(a.workload, node)] += option.capacity_rps
    booked.replicas[a.workload] += 1
    booked.capacity[a.workload] += option.capacity_rps
    booked.cost += option.cost_per_hour
    if workload.spread_across:
        for domain in problem.domains_of(option, workload.spread_across):
            booked.per_domain[(a.workload, domain)] += problem.carries_load(option)
            booked.domain_milli[(a.workload, domain)] += int(option.capacity_rps * RATE_SCALE)
    if a.predicted and a.predicted.itl_ms > workload.itl_slo_ms + 1e-6:
        violations.append(f"pipeline-itl: {where}: predicted ITL {a.predicted.itl_ms} ms")
    return violations


def _pool_of(problem: Problem, node: str, gpus: list[int]) -> GpuPool | None:
    """The pool that holds every one of ``gpus`` on ``node`` (None: unknown node or GPUs)."""
    for pool in problem.pools:
        if node in pool.node_names and all(g in pool.gpu_indices for g in gpus):
            return pool
    return None


def _totals(problem: Problem, plan: PlacementPlan, booked: _Booked) -> list[str]:
    """The rules on totals: slots per GPU, power per pool, replicas, spread, budget and what the
    plan's status claims."""
    violations: list[str] = []
    workloads = {w.name: w for w in problem.workloads}
    replicas, capacity, on_node = booked.replicas, booked.capacity, booked.on_node
    per_domain, domain_milli, cost = booked.per_domain, booked.domain_milli, booked.cost
    for (node, gpu), used in sorted(booked.slots_used.items()):
        if used > SLOTS_PER_GPU:
            violations.append(f"gpu-sharing: {node} GPU {gpu} booked {used}/{SLOTS_PER_GPU} slots")
    for pool_index, watts in sorted(booked.draw.items()):
        budget = power_budget_watts(problem.pools[pool_index])
        if budget is not None and watts > budget:
            violations.append(
                f"thermal-power: {problem.pools[pool_index].key} draws {watts} W > {budget} W"
            )
    for name, workload in workloads.items():
        if replicas[name] > workload.replicas_max:
            violations.append(f"replica-bounds: {name} has {replicas[name]} > max")
        if workload.spread_max_per_domain is not None:
            for (w, domain), count in per_domain.items():
                if w == name and count > workload.spread_max_per_domain:
                    violations.append(
                        f"spread: {name} has {count} replicas that carry load in {domain}"
                    )
        limit_rps = problem.spread_limit_rps(workload.index)
        for (w, domain), milli in domain_milli.items():
            if w == name and limit_rps is not None and milli > int(limit_rps * RATE_SCALE):
                violations.append(
                    f"spread: {name} has {milli / RATE_SCALE:.3f} req/s of capacity in {domain}"
                    f" > {limit_rps:.3f}"
                )
    if problem.budget_per_hour is not None and cost > problem.budget_per_hour + 1e-6:
        violations.append(f"budget: {cost:.2f} USD/h > {problem.budget_per_hour:.2f}")
    if plan.status is not None:
        for coverage in plan.status.workloads:
            if coverage.slo_met and capacity[coverage.name] + 1e-6 < coverage.demand_rps:
                violations.append(f"demand-coverage: {coverage.name} claims coverage it lacks")
            held = max((c for (w, _), c in on_node.items() if w == coverage.name), default=0.0)
            left = coverage.capacity_after_node_loss_rps
            if left is not None and abs(left - (capacity[coverage.name] - held)) > 1e-3:
                violations.append(
                    f"failover: {coverage.name} claims {left} req/s after the worst node loss, "
                    f"the placement leaves {capacity[coverage.name] - held:.3f}"
                )
    return violations
