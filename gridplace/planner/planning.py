"""The planner's front door: specs in, a ``PlacementPlan`` out, by one of three strategies.

``cpsat`` (the model in ``model.py``), ``greedy`` and ``capacity-only`` (``baselines.py``) share
compile, de-aggregation and output, so every figure can compare them on equal terms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum

from gridplace.planner.baselines import capacity_only, greedy
from gridplace.planner.compile import compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.explain import Explanation, diagnosis_model, explain_workload
from gridplace.planner.output import Explain, Shortfall, build_plan
from gridplace.planner.ports import (
    OptionPrediction,
    OptionPredictor,
    PlannerInputs,
    PredictionQuery,
    RttLookup,
)
from gridplace.planner.prewarm import choose_prewarm
from gridplace.planner.problem import Problem
from gridplace.planner.solve import Progress, SolverSettings, solve_problem
from gridplace.planner.work import WorkClock
from gridplace.specs import PlacementPlan
from gridplace.specs.plan import SolverSummary

MAX_DIAGNOSES = 5  # assumption-core solves per plan (highest priority unplaced workloads first)


class Strategy(StrEnum):
    CPSAT = "cpsat"
    GREEDY = "greedy"
    CAPACITY_ONLY = "capacity-only"


@dataclass(frozen=True)
class PlanResult:
    plan: PlacementPlan
    problem: Problem
    compile_s: float
    solve_s: float


def _naive(predictor: OptionPredictor) -> OptionPredictor:
    """What a VRAM-only matcher believes: nameplate speed, no latency targets."""

    def predict(query: PredictionQuery) -> OptionPrediction:
        return predictor(replace(query, throttle_ratio=0.0, ttft_budget_ms=1e9, itl_slo_ms=1e9))

    return predict


class _NoNetwork:
    def rtt_p99_ms(self, region: str, node: str) -> float:
        return 0.0


def compile_for(
    strategy: Strategy, inputs: PlannerInputs, predictor: OptionPredictor, latency: RttLookup
) -> Problem:
    """The problem a strategy plans on: capacity-only sees what a VRAM-only matcher believes
    (nameplate speed, no latency targets, no network, no headroom); the others see it all."""
    if strategy is not Strategy.CAPACITY_ONLY:
        return compile_problem(inputs, predictor, latency)
    naive_workloads = [
        w.model_copy(
            update={
                "spec": w.spec.model_copy(
                    update={"slo": w.spec.slo.model_copy(update={"ttft_ms": 1e9, "itl_ms": 1e9})}
                )
            }
        )
        for w in inputs.workloads
    ]
    return compile_problem(
        replace(inputs, workloads=naive_workloads, headroom=0.0), _naive(predictor), _NoNetwork()
    )


def make_plan(
    inputs: PlannerInputs,
    predictor: OptionPredictor,
    latency: RttLookup,
    strategy: Strategy = Strategy.CPSAT,
    settings: SolverSettings | None = None,
    name: str = "plan",
    progress: Progress | None = None,
) -> PlanResult:
    """Compile, solve (or run a baseline), de-aggregate and build the plan document."""
    generation = (inputs.previous.metadata.generation or 0) + 1 if inputs.previous else 1
    started = time.perf_counter()
    if progress:
        progress(f"compiling {len(inputs.workloads)} workloads x {len(inputs.nodes)} nodes")
    problem = compile_for(strategy, inputs, predictor, latency)
    compiled = time.perf_counter()
    if progress:
        progress(f"{len(problem.pools)} node classes, {len(problem.options)} options")
    plan = plan_problem(problem, strategy, settings, name, generation, progress)
    prewarm = choose_prewarm(problem, plan, inputs.workloads, inputs.nodes, inputs.catalog)
    if prewarm:
        plan = plan.model_copy(update={"spec": plan.spec.model_copy(update={"prewarm": prewarm})})
    done = time.perf_counter()
    return PlanResult(plan, problem, compiled - started, done - compiled)


def plan_problem(
    problem: Problem,
    strategy: Strategy = Strategy.CPSAT,
    settings: SolverSettings | None = None,
    name: str = "plan",
    generation: int = 1,
    progress: Progress | None = None,
    explain: bool = True,
    work: WorkClock | None = None,
) -> PlacementPlan:
    """Solve (or run a baseline on) a problem ``compile_for(strategy, ...)`` made, de-aggregate
    and build the plan document; the solver's deterministic work is charged to ``work``."""
    started = time.perf_counter()
    if strategy is Strategy.CPSAT:
        solution = solve_problem(problem, settings or SolverSettings(), progress)
        if work is not None:
            work.add(solution.work_s)
        counts = solution.counts
        cost_stage = solution.stage("cost")
        bound = proved_bound(cost_stage.objective, cost_stage.bound) if cost_stage else None
        first = solution.stages[0] if solution.stages else None
        summary = SolverSummary(
            status=solution.status,
            wall_seconds=round(solution.wall_s, 3),
            objective=round(cost_stage.objective / 10_000, 4) if cost_stage else None,
            bound=round(bound / 10_000, 4) if bound is not None else None,
            gap=_gap(cost_stage.objective, bound) if cost_stage and bound is not None else None,
            strategy=strategy.value,
        )
        if first is not None and first.status != "OPTIMAL":
            summary = summary.model_copy(update={"status": f"{solution.status} (unmet stage)"})
    else:
        counts = greedy(problem) if strategy is Strategy.GREEDY else capacity_only(problem)
        summary = SolverSummary(
            status=strategy.value,
            wall_seconds=round(time.perf_counter() - started, 3),
            strategy=strategy.value,
        )
    placements, failures = deaggregate(problem, counts)
    return build_plan(
        problem,
        placements,
        summary,
        name=name,
        generation=generation,
        placement_failures=failures,
        explain=explain_unplaced(problem) if explain and strategy is Strategy.CPSAT else None,
    )


def explain_unplaced(problem: Problem) -> Explain:
    """Why each workload short of its target is: compile-time reasons for all of them, and the
    assumption-core diagnosis (one small solve each, on one model built for the first) for the
    ``MAX_DIAGNOSES`` of highest priority."""

    def explain(shortfalls: list[Shortfall]) -> dict[int, Explanation]:
        by_priority = sorted(shortfalls, key=lambda s: -problem.workloads[s.workload].priority)
        diagnosed = {s.workload for s in by_priority[:MAX_DIAGNOSES]}
        base = diagnosis_model(problem) if diagnosed else None
        return {
            s.workload: explain_workload(
                problem, s.workload, s.missing_rps, s.short_replicas, s.workload in diagnosed, base
            )
            for s in shortfalls
        }

    return explain


def proved_bound(objective: float, bound: float) -> float | None:
    """The stage's bound, or None when none was proved: a stage kept from windows or from a
    replan's hint records 0 (and CP-SAT may end with a bound <= 0) for "no bound", which read as
    ``bound: 0.0, gap: 1.0`` in a stored plan while the CLI, given time to prove one, printed it.
    """
    return bound if bound > 0 or objective <= 0 else None


def _gap(objective: float, bound: float) -> float:
    return round(abs(objective - bound) / max(1.0, abs(objective)), 6)
