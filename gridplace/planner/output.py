"""Turning a solution (option counts + concrete placements) into a ``PlacementPlan`` document.

Diagnosis is not done here: the caller passes an ``Explain`` (``planning.explain_unplaced``) that
words why the workloads short of their target are; without one they get their shortfall only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gridplace.planner.at_demand import latency_at
from gridplace.planner.core import worst_node_loss
from gridplace.planner.deaggregate import Placement
from gridplace.planner.explain import Explanation
from gridplace.planner.problem import Option, Problem
from gridplace.planner.rules import describe
from gridplace.specs import Assignment, Metadata, PlacementPlan, Prediction
from gridplace.specs.fixes import Refusal
from gridplace.specs.plan import (
    PipelineStage,
    PlacementPlanSpec,
    PlacementPlanStatus,
    SolverSummary,
    Unplaced,
    WorkloadCoverage,
)

COVERAGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Shortfall:
    """A workload short of its target: req/s missing, and replicas that carry load missing."""

    workload: int
    missing_rps: float
    short_replicas: int


Explain = Callable[[list[Shortfall]], dict[int, Explanation]]


@dataclass
class _Tally:
    """What the placements give each workload (by index)."""

    capacity: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    replicas: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    carrying: dict[int, int] = field(default_factory=lambda: defaultdict(int))  # minShare
    cost: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    on_node: dict[int, dict[str, float]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(float))
    )


def build_plan(
    problem: Problem,
    placements: list[Placement],
    solver: SolverSummary,
    name: str = "plan",
    generation: int = 1,
    placement_failures: list[str] | None = None,
    explain: Explain | None = None,
) -> PlacementPlan:
    """The plan document: assignments sorted by workload, node and GPUs; per-workload coverage;
    ``explain`` words the reasons of workloads short of their target."""
    tally = _Tally()
    assignments = _assignments(problem, placements, tally)
    coverage, unplaced, warnings = _coverage(problem, tally, explain)
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
            notes=pipeline_notes(problem, [problem.options[p.option] for p in placements]),
            cost_per_hour=round(sum(tally.cost.values()), 4),
        ),
    )


def _assignments(problem: Problem, placements: list[Placement], tally: _Tally) -> list[Assignment]:
    """One assignment per placement, sorted by workload, node and GPUs; ``tally`` counts them."""
    assignments = []
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
        tally.capacity[option.workload] += option.capacity_rps
        for node in [s.node for s in option.stages] or [placement.node]:  # any stage's loss
            tally.on_node[option.workload][node] += option.capacity_rps
        tally.replicas[option.workload] += 1
        tally.carrying[option.workload] += problem.carries_load(option)
        tally.cost[option.workload] += option.cost_per_hour
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
                stages=[
                    PipelineStage(node=s.node, gpus=list(s.gpus), layers=(s.first, s.last))
                    for s in option.stages
                ]
                or None,
            )
        )
    assignments.sort(key=lambda a: (a.workload, a.node, a.gpus))
    return assignments


def _coverage(
    problem: Problem, tally: _Tally, explain: Explain | None
) -> tuple[list[WorkloadCoverage], list[Unplaced], list[str]]:
    """Per-workload coverage, the workloads short of their target with reasons, and warnings."""
    capacity, replicas, carrying = tally.capacity, tally.replicas, tally.carrying
    coverage = []
    unplaced = []
    warnings = []
    target = {w.index: w.booked_rps for w in problem.workloads}
    is_covered = {
        w.index: capacity[w.index] + COVERAGE_TOLERANCE >= target[w.index]
        and carrying[w.index] >= w.replicas_min
        for w in problem.workloads
    }
    shortfalls = [
        Shortfall(
            w.index,
            max(0.0, target[w.index] - capacity[w.index]),
            max(0, w.replicas_min - carrying[w.index]),
        )
        for w in problem.workloads
        if not is_covered[w.index]
    ]
    explained = explain(shortfalls) if explain is not None and shortfalls else {}
    reliability = {node: pool.reliability for pool in problem.pools for node in pool.node_names}
    for workload in problem.workloads:
        left_rps, worst_node, worst_exempt = None, None, None
        if workload.node_failures > 0 and replicas[workload.index] > 0:
            left_rps, worst_node = worst_node_loss(
                capacity[workload.index], tally.on_node[workload.index]
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
                cost_per_hour=round(tally.cost[workload.index], 4),
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
            if workload.index in explained:
                why = explained[workload.index]
                reasons, hints = list(why.reasons), list(why.hints)
                refusals = list(why.refusals)
            else:
                reasons = [f"{missing:.2f} req/s of demand (with headroom) not covered"]
                hints = []
                refusals = [Refusal(family="coverage", unmet_rps=round(missing, 3))]
            # With no replica at all the reasons above say why; replicas.min is noise then.
            if 0 < carrying[workload.index] < workload.replicas_min:
                reasons.append(
                    f"{carrying[workload.index]} replicas carry load (>= "
                    f"{problem.load_rps(workload.index):.2f} req/s each, replicas.minShare) < "
                    f"replicas.min {workload.replicas_min}"
                )
                refusals.append(_carrying(problem, workload.index, carrying[workload.index]))
            unplaced.append(
                Unplaced(workload=workload.name, reasons=reasons, hints=hints, refusals=refusals)
            )
    return coverage, unplaced, warnings


def _carrying(problem: Problem, workload: int, carrying: int) -> Refusal:
    """Fewer replicas carry load than replicas.min asks for (as data)."""
    return Refusal(
        family="coverage",
        rule="replica-bounds",
        measure="carrying-replicas",
        needed=float(problem.workloads[workload].replicas_min),
        available=float(carrying),
        unit="replicas",
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


def pipeline_notes(problem: Problem, placed: Sequence[Option]) -> list[str]:
    """What a plan says of its pipeline replicas: per workload, why it was split (the closest
    single-node rejection, or cost), and per replica its stages, ITL with hand-offs and
    throughput."""
    notes: list[str] = []
    for workload in problem.workloads:
        mine = [o for o in placed if o.workload == workload.index and o.stages]
        if not mine:
            continue
        single = [o for o in problem.options_of(workload.index) if not o.stages]
        vram = [r for r in problem.rejections_of(workload.index) if r.family == "vram-per-gpu"]
        if single:
            why = "cheaper per req/s than any replica on one node"
        elif vram:
            closest = min(vram, key=lambda r: r.reason.distance)
            why = f"no node holds it ({describe(closest.reason)}) [vram-per-gpu]"
        else:
            why = "no replica on one node meets its rules"
        stages = sorted({len(o.stages) for o in mine})
        notes.append(
            f"{workload.name}: placed as {len(mine)} pipeline{'s' * (len(mine) > 1)} of "
            f"{'/'.join(map(str, stages))} stages: {why}"
        )
        for option in mine:
            layout = " > ".join(f"{s.node}[{s.first},{s.last})" for s in option.stages)
            notes.append(
                f"{workload.name} pipeline {layout}: ITL {option.itl_ms:.1f} ms incl. "
                f"{option.handoff_ms:.1f} ms of hand-offs, {option.capacity_rps:.3f} req/s "
                f"({option.tokens_per_s:.0f} tokens/s)"
            )
    return notes
