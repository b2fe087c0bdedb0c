"""What a replan's stages do about moved replicas: the moves stage's start from the previous
plan (``keep_previous``), the first stage's tie-break by moves, when its solution may start the
moves stage, and what the moves stage's windows look at first.

The moves stage's objective (``objectives``): 2 per moved replica, less 1 per replica added on a
node that holds its weights (``Problem.warm``: the previous plan's standbys and what agents
report cached), so of two equal destinations the replan takes the warm one; de-aggregation
then puts the pool's new replicas on its warm nodes first.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from gridplace.planner.hints import previous_counts
from gridplace.planner.model import PlacementModel
from gridplace.planner.solver_settings import SolverSettings, all_variables, make_solver
from gridplace.planner.windows import (
    Goal,
    VariableValues,
    evaluate,
    solve_window,
    unsettled_workloads,
)
from gridplace.planner.work import WorkClock

# Windows of the moves stage get this long (at high utilization shorter ones found nothing), and
# its start from the previous plan this long (where it cannot succeed, it runs into any limit
# given); measured: docs/solver-tuning.md.
MOVES_WINDOW_TIME_LIMIT_S = 3.0
KEEP_PREVIOUS_LIMIT_S = 1.5


def keep_previous(
    pm: PlacementModel,
    incumbent: VariableValues,
    settings: SolverSettings,
    limit_s: float,
    clock: WorkClock,
) -> VariableValues:
    """Where the moves stage of a large model starts: the previous plan's replicas where they
    are, with only some workloads planned anew around them, within the rows of the earlier
    stages: those that cannot stay as they were (demand no longer covered, or replicas in a row
    that the smaller grid breaks), those the incumbent leaves demand unmet for, and those with
    previous replicas on the pools that could serve that demand (the unmet stage may give
    scarce capacity to a workload of higher priority). Windows drawn at random would need a
    pass or more to undo what the cost stage moved; this is one window. The incumbent stays if
    it moves fewer replicas.
    """
    problem = pm.problem
    counts = previous_counts(problem)
    free = unsettled_workloads(pm, counts)
    short = {(w, r) for (w, r), var in pm.unmet.items() if incumbent.value(var) > 0}
    free |= {w for w, _ in short}
    scarce = {
        o.pool
        for (w, region) in short
        for o in problem.options_of(w)
        if region in o.servable_sources
    }
    free |= {
        problem.options[o].workload
        for o, n in counts.items()
        if n and problem.options[o].pool in scarce
    }
    solver = make_solver(settings, limit_s)
    found = solve_window(
        pm,
        all_variables(pm),
        counts,
        free,
        {pm.x[option].index: count for option, count in counts.items()},
        solver,
    )
    clock.charge(solver)
    moves = dict(pm.objectives)["moves"]
    if found is None or evaluate(moves, found) >= evaluate(moves, incumbent):
        return incumbent
    return found


def moves_tie_break(pm: PlacementModel, objective: cp_model.LinearExprT) -> cp_model.LinearExprT:
    """What a replan's first stage minimizes: its objective plus one per moved replica. A move
    weighs as much as the smallest step of weighted unmet demand (half a milli-request/s at
    priority 1), so unmet demand still comes first to within the model's resolution, and of the
    plans that serve as much, the stage ends at one that moves few replicas. Demand left unmet
    after nodes vanish is often served by moving other replicas out of its way; without the
    tie-break the stage moved more replicas than the moves stage could take back in its time.
    (Scaling the objective above any number of moves instead, strictly lexicographic, left the
    stage above its optimum unmet demand in its time; figures: docs/solver-tuning.md.)"""
    if not pm.moved:
        return objective
    return cp_model.LinearExpr.sum([objective, *pm.moved.values()])


def fewer_moves_within_cost(
    pm: PlacementModel, candidate: VariableValues, incumbent: VariableValues
) -> bool:
    """Whether a replan's first-stage solution may start the moves stage instead: it keeps the
    rows of every stage so far (the cost row is the only one added after it) and moves fewer
    replicas than ``incumbent``."""
    objectives = dict(pm.objectives)
    cost_row = next(c for c in reversed(pm.model.proto.constraints) if c.name == "stage[cost]")
    high = list(cost_row.linear.domain)[-1]
    return evaluate(objectives["cost"], candidate) <= high and evaluate(
        objectives["moves"], candidate
    ) < evaluate(objectives["moves"], incumbent)


def goal(pm: PlacementModel, name: str, objective: cp_model.LinearExprT) -> Goal:
    """What a stage's windows minimize. With a previous plan, the moves stage draws the
    workloads that moved replicas first. (Breaking the cost stage's ties by moves, as cost x
    (moves + 1) + moves, made windows slower and the cost stage worse: docs/solver-tuning.md.)"""
    if name != "moves" or not pm.moved:
        return Goal(objective)

    def moved_workloads(incumbent: VariableValues) -> set[int]:
        return {
            pm.problem.options[option].workload
            for option, var in pm.moved.items()
            if incumbent.value(var) > 0
        }

    return Goal(objective, focus=moved_workloads, window_s=MOVES_WINDOW_TIME_LIMIT_S)
