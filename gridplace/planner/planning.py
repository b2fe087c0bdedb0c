"""The planner's front door: specs in, a ``PlacementPlan`` out, by one of three strategies.

``cpsat`` (the model in ``model.py``), ``greedy`` and ``capacity-only`` (``baselines.py``) share
compile, de-aggregation and output, so every figure can compare them on equal terms. A cpsat
plan asked for in more than one shard is planned by ``shard_plan`` and built here the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
from gridplace.planner.shard_plan import ReconcileReport, Sharded, ShardReport, plan_shards
from gridplace.planner.solve import Progress, SolverSettings, solve_problem
from gridplace.planner.solver_settings import Solution
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
    shards: tuple[ShardReport, ...] = ()  # a sharded plan's shards (none: planned whole)
    reconciled: ReconcileReport | None = None  # and its pass over their leftover capacity


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
    shards: int = 1,
    make_predictor: Callable[[], OptionPredictor] | None = None,
) -> PlanResult:
    """Compile, solve (or run a baseline), de-aggregate and build the plan document; a cpsat
    plan in ``shards`` > 1 shards through ``shard_plan`` (``make_predictor``: the predictor
    where a shard runs in another process)."""
    generation = (inputs.previous.metadata.generation or 0) + 1 if inputs.previous else 1
    started = time.perf_counter()
    if shards > 1:
        if strategy is not Strategy.CPSAT:
            raise ValueError(f"shards are solved by cpsat, not {strategy.value}")
        if progress:
            progress(f"planning {len(inputs.nodes)} nodes in {shards} shards")
        sharded = plan_shards(
            inputs, predictor, latency, shards, settings or SolverSettings(), make_predictor
        )
        plan = sharded_plan(sharded, name, generation)
        return PlanResult(
            _with_prewarm(plan, sharded.problem, inputs),
            sharded.problem,
            sum(r.compile_cpu_s for r in sharded.shards),
            time.perf_counter() - started,
            sharded.shards,
            sharded.reconciled,
        )
    if progress:
        progress(f"compiling {len(inputs.workloads)} workloads x {len(inputs.nodes)} nodes")
    problem = compile_for(strategy, inputs, predictor, latency)
    compiled = time.perf_counter()
    if progress:
        progress(f"{len(problem.pools)} node classes, {len(problem.options)} options")
    plan = plan_problem(problem, strategy, settings, name, generation, progress)
    plan = _with_prewarm(plan, problem, inputs)
    done = time.perf_counter()
    return PlanResult(plan, problem, compiled - started, done - compiled)


def _with_prewarm(plan: PlacementPlan, problem: Problem, inputs: PlannerInputs) -> PlacementPlan:
    prewarm = choose_prewarm(problem, plan, inputs.workloads, inputs.nodes, inputs.catalog)
    if not prewarm:
        return plan
    return plan.model_copy(update={"spec": plan.spec.model_copy(update={"prewarm": prewarm})})


def sharded_plan(sharded: Sharded, name: str = "plan", generation: int = 1) -> PlacementPlan:
    """The plan document of a sharded plan: its status says so (the solver's status and a
    note); no bound (the shards' bounds hold for their own nodes only), and unplaced workloads
    get compile-time reasons (no diagnosis: one model of the whole grid is what sharding
    avoids)."""
    summary = solver_summary(sharded.solution, Strategy.CPSAT)
    status = f"{summary.status} ({len(sharded.shards)} shards)"
    summary = summary.model_copy(update={"status": status, "bound": None, "gap": None})
    plan = build_plan(
        sharded.problem,
        sharded.placements,
        summary,
        name=name,
        generation=generation,
        placement_failures=sharded.failures,
        explain=explain_unplaced(sharded.problem, diagnoses=0),
    )
    assert plan.status is not None
    notes = [*plan.status.notes, _shard_note(sharded)]
    return plan.model_copy(update={"status": plan.status.model_copy(update={"notes": notes})})


def _shard_note(sharded: Sharded) -> str:
    nodes = sorted(s.nodes for s in sharded.shards)
    note = (
        f"planned in {len(sharded.shards)} shards of {nodes[0]}-{nodes[-1]} nodes: each "
        "workload placed on its shard's nodes"
    )
    found = sharded.reconciled
    if found is None:
        unmet = sum(s.unmet_rps for s in sharded.shards)
        return note + (
            f"; the {unmet:.1f} booked req/s they left unmet found no leftover capacity to use"
            if unmet > 0
            else "; none left demand unmet"
        )
    return note + (
        f", then {found.short_workloads} short of demand given the other shards' leftover "
        f"capacity: {found.replicas} replicas added, unmet {found.unmet_before_rps:.1f} -> "
        f"{found.unmet_after_rps:.1f} booked req/s"
    )


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
        summary = solver_summary(solution, strategy)
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


def solver_summary(solution: Solution, strategy: Strategy) -> SolverSummary:
    """The plan's solver figures: the cost stage's objective and proved bound, the status (the
    unmet stage's when that one did not prove its optimum)."""
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
    return summary


def explain_unplaced(problem: Problem, diagnoses: int = MAX_DIAGNOSES) -> Explain:
    """Why each workload short of its target is: compile-time reasons for all of them, and the
    assumption-core diagnosis (one small solve each, on one model built for the first) for the
    ``diagnoses`` of highest priority."""

    def explain(shortfalls: list[Shortfall]) -> dict[int, Explanation]:
        by_priority = sorted(shortfalls, key=lambda s: -problem.workloads[s.workload].priority)
        diagnosed = {s.workload for s in by_priority[:diagnoses]}
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
