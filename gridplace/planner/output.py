"""Turning a solution (option counts + concrete placements) into a ``PlacementPlan`` document."""

from __future__ import annotations

from collections import defaultdict

from gridplace.planner.deaggregate import Placement
from gridplace.planner.explain import explain_workload
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
    cost: dict[int, float] = defaultdict(float)
    pinned = {(r.node, r.gpus) for r in problem.previous if r.pinned}
    for placement in placements:
        option = problem.options[placement.option]
        workload = problem.workloads[option.workload]
        served = [option.ttft_ms[r] for r in option.servable_sources]
        capacity[option.workload] += option.capacity_rps
        replicas[option.workload] += 1
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
                ),
                pinned=(placement.node, placement.gpus) in pinned,
            )
        )
    assignments.sort(key=lambda a: (a.workload, a.node, a.gpus))
    coverage = []
    unplaced = []
    uncovered = [
        w for w in problem.workloads
        if capacity[w.index] + COVERAGE_TOLERANCE < w.demand_rps * (1 + problem.headroom)
        or replicas[w.index] < w.replicas_min
    ]  # fmt: skip
    diagnosed = {w.index for w in sorted(uncovered, key=lambda w: -w.priority)[:MAX_DIAGNOSES]}
    for workload in problem.workloads:
        covered = (
            capacity[workload.index] + COVERAGE_TOLERANCE
            >= workload.demand_rps * (1 + problem.headroom)
            and replicas[workload.index] >= workload.replicas_min
        )
        coverage.append(
            WorkloadCoverage(
                name=workload.name,
                demand_rps=workload.demand_rps,
                capacity_rps=round(capacity[workload.index], 3),
                slo_met=covered,
                replicas=replicas[workload.index],
                cost_per_hour=round(cost[workload.index], 4),
            )
        )
        if not covered:
            missing = max(
                0.0, workload.demand_rps * (1 + problem.headroom) - capacity[workload.index]
            )
            if explain:
                short = max(0, workload.replicas_min - replicas[workload.index])
                why = explain_workload(
                    problem, workload.index, missing, short, workload.index in diagnosed
                )
                reasons, hints = why.reasons, why.hints
            else:
                reasons = [f"{missing:.2f} req/s of demand (with headroom) not covered"]
                hints = []
            if replicas[workload.index] < workload.replicas_min:
                reasons.append(
                    f"{replicas[workload.index]} replicas < replicas.min {workload.replicas_min}"
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
            cost_per_hour=round(sum(cost.values()), 4),
        ),
    )
