"""Turning a solution (option counts + concrete placements) into a ``PlacementPlan`` document."""

from __future__ import annotations

from collections import defaultdict

from gridplace.planner.at_demand import latency_at
from gridplace.planner.core import worst_node_loss
from gridplace.planner.deaggregate import Placement
from gridplace.planner.explain import diagnosis_model, explain_workload
from gridplace.planner.model import PlacementModel
from gridplace.planner.problem import Problem
from gridplace.specs import Assignment, Metadata, PlacementPlan, Prediction
from gridplace.specs.plan import (
    PlacementPlanSpec,
    PlacementPlanStatus,
    SolverSummary,
    Unplaced,
    WorkloadCoverage,
)

COVERAGE_TOLERANCE = 1e-6
MAX_DIAGNOSES = 5  # assumption-core solves per plan (highest priority unplaced workloads first)


def build_plan(
    problem: Problem,
    placements: list[Placement],
    solver: SolverSummary,
    name: str = "plan",
    generation: int = 1,
    placement_failures: list[str] | None = None,
    explain: bool = True,
) -> PlacementPlan:
    """The plan document: assignments sorted by workload, node and GPUs; per-workload coverage."""
    assignments = []
    capacity: dict[int, float] = defaultdict(float)
    replicas: dict[int, int] = defaultdict(int)
    carrying: dict[int, int] = defaultdict(int)  # replicas that carry load (replicas.minShare)
    cost: dict[int, float] = defaultdict(float)
    on_node: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    pinned = {(r.node, r.gpus) for r in problem.previous if r.pinned}
    placed_rps: dict[int, float] = defaultdict(float)
    for placement in placements:
        option = problem.options[placement.option]
        placed_rps[option.workload] += option.capacity_rps
    for placement in placements:
        option = problem.options[placement.option]
        workload = problem.workloads[option.workload]
        served = [option.ttft_ms[r] for r in option.servable_sources]
        # The demand, routed in proportion to capacity, at most what the replica can take.
        load_rps = (
            workload.demand_rps * option.capacity_rps / max(placed_rps[option.workload], 1e-9)
        )
        capacity[option.workload] += option.capacity_rps
        on_node[option.workload][placement.node] += option.capacity_rps
        replicas[option.workload] += 1
        carrying[option.workload] += problem.carries_load(option)
        cost[option.workload] += option.cost_per_hour
        assignments.append(
            Assignment(
                workload=workload.name,
                node=placement.node,
                gpus=list(placement.gpus),
                precision=option.precision,
                tensor_parallel=option.tensor_parallel,
                gpu_share=option.share,
                predicted=Prediction(
                    ttft_ms=round(max(served), 1),
                    itl_ms=round(option.itl_ms, 2),
                    capacity_rps=round(option.capacity_rps, 3),
                    vram_gib=round(option.vram_gib, 2),
                    at_demand=latency_at(option, min(load_rps, option.capacity_rps)),
                ),
                pinned=(placement.node, placement.gpus) in pinned,
            )
        )
    assignments.sort(key=lambda a: (a.workload, a.node, a.gpus))
    coverage = []
    unplaced = []
    warnings = []
    target = {w.index: w.booked_rps for w in problem.workloads}
    is_covered = {
        w.index: capacity[w.index] + COVERAGE_TOLERANCE >= target[w.index]
        and carrying[w.index] >= w.replicas_min
        for w in problem.workloads
    }
    uncovered = [w for w in problem.workloads if not is_covered[w.index]]
    diagnosed = {w.index for w in sorted(uncovered, key=lambda w: -w.priority)[:MAX_DIAGNOSES]}
    base: PlacementModel | None = None  # the diagnoses' model, built for the first one
    reliability = {node: pool.reliability for pool in problem.pools for node in pool.node_names}
    for workload in problem.workloads:
        left_rps, worst_node, worst_exempt = None, None, None
        if workload.node_failures > 0 and replicas[workload.index] > 0:
            left_rps, worst_node = worst_node_loss(
                capacity[workload.index], on_node[workload.index]
            )
            if worst_node is not None:
                worst_exempt = not workload.may_fail(reliability[worst_node])
        covered = is_covered[workload.index]
        coverage.append(
            WorkloadCoverage(
                name=workload.name,
                demand_rps=workload.demand_rps,
                capacity_rps=round(capacity[workload.index], 3),
                slo_met=covered,
                replicas=replicas[workload.index],
                cost_per_hour=round(cost[workload.index], 4),
                capacity_after_node_loss_rps=left_rps,
                worst_node=worst_node,
                worst_node_exempt=worst_exempt,
            )
        )
        target_rps = target[workload.index]
        if covered and left_rps is not None and left_rps + COVERAGE_TOLERANCE < target_rps:
            warnings.append(
                _failover_warning(problem, workload.index, left_rps, worst_node, reliability)
            )
        if not covered:
            missing = max(0.0, target_rps - capacity[workload.index])
            if explain:
                short = max(0, workload.replicas_min - carrying[workload.index])
                if base is None and workload.index in diagnosed:
                    base = diagnosis_model(problem)
                why = explain_workload(
                    problem, workload.index, missing, short, workload.index in diagnosed, base
                )
                reasons, hints = why.reasons, why.hints
            else:
                reasons = [f"{missing:.2f} req/s of demand (with headroom) not covered"]
                hints = []
            if carrying[workload.index] < workload.replicas_min:
                reasons.append(
                    f"{carrying[workload.index]} replicas carry load (>= "
                    f"{problem.load_rps(workload.index):.2f} req/s each, replicas.minShare) < "
                    f"replicas.min {workload.replicas_min}"
                )
            unplaced.append(Unplaced(workload=workload.name, reasons=reasons, hints=hints))
    failures = placement_failures or []
    if failures:
        solver = solver.model_copy(update={"status": f"{solver.status} (placement failures)"})
    return PlacementPlan(
        metadata=Metadata(name=name, generation=generation),
        spec=PlacementPlanSpec(assignments=assignments),
        status=PlacementPlanStatus(
            solver=solver,
            workloads=coverage,
            unplaced=unplaced,
            warnings=warnings,
            cost_per_hour=round(sum(cost.values()), 4),
        ),
    )


def _failover_warning(
    problem: Problem,
    workload: int,
    left_rps: float,
    worst: str | None,
    reliability: dict[str, float],
) -> str:
    """What the plan says when the capacity left after the worst node loss falls short: which
    node, and whether the N+1 rule held only because that node is exempt."""
    demand = problem.workloads[workload]
    target_rps = demand.booked_rps
    loses = f"losing {worst} leaves {left_rps:.2f} of the {target_rps:g} req/s it needs"
    if worst is not None and not demand.may_fail(reliability[worst]):
        return (
            f"failover: {demand.name}: N+1 holds only through exemptions: {loses}, and {worst} "
            f"(reliability {reliability[worst]:g}) is exempt by redundancy.exemptReliability "
            f"{demand.exempt_reliability:g}; unset it to plan for that loss"
        )
    return (
        f"failover: {demand.name}: {loses}; add nodes that can serve it, or set "
        "redundancy.nodeFailures: 0"
    )
