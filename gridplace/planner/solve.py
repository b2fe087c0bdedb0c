"""Solving the placement model in lexicographic stages, with settings measured for 2 cores.

Each stage minimizes one objective with the earlier stages' values fixed (``<=`` the value found)
and the previous stage's solution as a hint. On a large model (``window_min_options``) each
stage after the first first improves that hint window by window (``windows.py``) and only then
runs the full-model solve, which proves the stage's bound. A stage with nothing to minimize (moves
without a previous plan) is skipped. A replan's first stage breaks its ties by moves
(``_moves_tie_break``; its reported objective includes them), and the moves stage starts from
that stage's solution when it is within the cost tolerance. An infeasible first stage is
re-checked (a fresh solve with one worker) before anyone is told. The result is a ``Solution``
(counts per option, unmet demand) — never an exception for a problem that cannot be fully served.

Every time here (the limit, stage shares, window budgets, the time a skipped stage passes on) is
deterministic work in reference seconds, counted by a ``work.WorkClock`` from CP-SAT's
deterministic time: with one worker and a fixed seed the same problem gives the same plan on an
idle and on a loaded machine. Wall time is only measured and reported.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gridplace.planner.core import RATE_SCALE
from gridplace.planner.hints import (
    greedy_with_failover,
    previous_counts,
    previous_then_greedy,
    relaxed_and_repaired,
)
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.problem import Problem
from gridplace.planner.windows import (
    Assignment,
    Goal,
    drop_spare_replicas,
    evaluate,
    search_windows,
    solve_window,
    unsettled_workloads,
)
from gridplace.planner.work import WorkClock, limit

# Share of the time limit each stage gets (unmet demand, cost, moves, preference).
STAGE_SHARES = (0.25, 0.5, 0.1, 0.15)
# Windows of the moves stage get this long (at high utilization 1 s windows found nothing and
# left 499 moves where 3 s windows left 139), and its start from the previous plan this long
# (0.5-0.7 s when it succeeds; where it cannot, it ran into any limit given).
MOVES_WINDOW_TIME_LIMIT_S = 3.0
KEEP_PREVIOUS_LIMIT_S = 1.5
# The same for a replan of a large model: its windows need a pass over the moved workloads in
# the moves stage, and the cost stage only has to come within the move tolerance.
REPLAN_WINDOW_STAGE_SHARES = (0.25, 0.4, 0.25, 0.1)
# On a large model, the share of the cost stage's time spent improving its incumbent window by
# window (windows.py) before the full-model solve, which proves the bound and polishes. The
# full-model solve needs its time: on 10,000 x 1,000 its root LP takes 5-8 s to reach the bound.
# The stages after it spend all their time in windows (their bounds are not reported).
WINDOW_SHARE = 0.6
# A model with failover rows: its cost stage gives windows this share (its full-model solve
# never improved on them; it still proves a bound), in windows of at most this many workloads.
# Measured at 1,000 x 100, moderate, every workload N+1, 10 s (HiGHS optimum $74.62/h): windows
# of 25 with 0.6 ended at $84.19/h, of 5 at $81.78/h, of 5 with 0.85 at $75.14/h.
FAILOVER_WINDOW_SHARE = 0.85
FAILOVER_WINDOW_WORKLOADS = 5
# Share of the time limit the relaxed solve of the first hint (``hints``) may take, when some
# workload has failover rows; the stages share what is left.
RELAXED_SHARE = 0.3


@dataclass(frozen=True)
class SolverSettings:
    """CP-SAT parameters; defaults suit a 2-core machine and give reproducible plans."""

    # Deterministic work, in reference seconds (``work.py``): the same plan on any machine load.
    time_limit_s: float = 10.0
    num_workers: int = 1
    random_seed: int = 0
    # Measured on this 2-core machine (bench/solver_scale.py prints the comparison): CP-SAT's
    # 2-worker portfolios stall far from the optimum of these covering models (1,000 x 100,
    # cost stage, 8 s: $93-99/h against the MILP's $45.65), while one worker searching with
    # the full LP relaxation (linearization level 2) reaches $47.25; on the example grid it
    # proves the optimum in 0.9 s. Subsolvers only apply with num_workers > 1.
    subsolvers: tuple[str, ...] = ()
    linearization_level: int = 2
    # CP-SAT's presolve as it comes, measured against switching it off and lighter probing
    # (bench/solver_scale.py prints the comparison): at 1,000 x 100, two stages to the proven
    # optimum took 1.8 / 3.9 s (moderate / high) with it, 1.3 / 5.5 s without presolve,
    # 1.7 / 8.4 s with probing level 0, and probing level 1 did not prove the high optimum in 10 s.
    presolve: bool = True
    probing_level: int = 2
    stages: int = 4  # how many objectives to optimize in order (1-4)
    # With a previous plan, the cost stage is fixed only to within this fraction of the best cost
    # found, so that a replan may keep replicas where they are for up to 5% more per hour.
    move_tolerance: float = 0.05
    # Models with at least this many options improve stages 2-4 by windows of this many
    # workloads first (windows.py): one worker on the whole 10,000 x 1,000 model (23,000
    # options) ended the cost stage 66-71% above its bound; with windows it ends within 1-2%.
    # 1,000 x 100 (5,000 options) solves to optimality without them. A model with failover
    # rows uses windows at any size (one worker stalls at its start: example grid, 10 s, cost
    # stage 6.5% above the MILP optimum without windows, 0.9% with windows of 2 workloads),
    # with windows of a quarter of its workloads (at least 2), at most
    # ``FAILOVER_WINDOW_WORKLOADS``.
    window_min_options: int = 10_000
    window_workloads: int = 100


@dataclass
class StageResult:
    name: str
    status: str
    objective: float
    bound: float
    wall_s: float
    windows: int = 0  # window solves (windows.py) that improved this stage first


@dataclass
class Solution:
    """Counts per option and what they serve; ``status`` is the worst stage's status."""

    status: str
    counts: dict[int, int] = field(default_factory=dict)
    unmet_rps: dict[tuple[int, str], float] = field(default_factory=dict)
    short: dict[int, int] = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)
    wall_s: float = 0.0
    work_s: float = 0.0  # deterministic work spent, reference seconds (``work.py``)
    first_solution_s: float | None = None  # from the start of solving (wall clock)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)


Progress = Callable[[str], None]


def _solver(settings: SolverSettings, time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = settings.num_workers
    solver.parameters.random_seed = settings.random_seed
    limit(solver, time_limit_s)
    solver.parameters.linearization_level = settings.linearization_level
    solver.parameters.cp_model_presolve = settings.presolve
    solver.parameters.cp_model_probing_level = settings.probing_level
    if settings.num_workers > 1 and settings.subsolvers:
        solver.parameters.subsolvers.extend(settings.subsolvers)
    return solver


def solve_problem(
    problem: Problem, settings: SolverSettings | None = None, progress: Progress | None = None
) -> Solution:
    """Solve ``problem`` stage by stage; see the module docstring."""
    settings = settings or SolverSettings()
    started = time.perf_counter()
    clock = WorkClock()
    pm = build_model(problem)
    for family, literal in sorted(pm.enforce.items()):
        pm.model.add(literal == 1).with_name(f"enforce[{family}]")
    solution = Solution(status="UNKNOWN")
    skipped = False
    stages = pm.objectives[: max(1, min(settings.stages, len(pm.objectives)))]
    values, hinted = _start(pm, settings, clock)
    # A first plan's valid hint is hinted in full (slacks and failover counts too): CP-SAT then
    # starts from it instead of completing a partial hint its own way. A replan hints only the
    # previous counts: hinted in full, its first stage settled farther from the previous plan
    # (1,000 x 100 high: 33% of replicas moved needlessly against 1.7%, bench/solver_scale.py).
    full_hint: list[tuple[cp_model.IntVar, int]] = (
        [(var, hinted.value(var)) for var in _all_variables(pm)]
        if hinted is not None and not problem.previous
        else []
    )
    windows = len(problem.options) >= settings.window_min_options or bool(pm.uncovered)
    window_workloads = settings.window_workloads
    if pm.uncovered:
        quarter = max(2, len(problem.workloads) // 4)
        window_workloads = min(window_workloads, FAILOVER_WINDOW_WORKLOADS, quarter)
    shares = REPLAN_WINDOW_STAGE_SHARES if windows and pm.moved else STAGE_SHARES
    if not pm.moved:  # the moves stage is skipped: its share goes to the others
        shares = (shares[0], shares[1], 0.0, shares[3])
    # A replan's first-stage solution: the fewest moves the search found at that stage's optimum,
    # where the moves stage may start (``_fewer_moves_within_cost``).
    first_stage: Assignment | None = None
    for number, (name, objective) in enumerate(stages):
        if progress:
            progress(f"stage {number + 1}/{len(stages)}: minimizing {name}")
        if name == "moves" and not pm.moved:
            # No previous replica has an option: the objective is 0 whatever is placed.
            solution.stages.append(StageResult(name, "OPTIMAL", 0.0, 0.0, 0.0))
            continue
        if number == 0 and hinted is not None and round(hinted.objective_value) == 0:
            # The hint already serves all demand: nothing can beat zero, skip the search.
            solution.first_solution_s = time.perf_counter() - started
            solution.stages.append(StageResult(name, "OPTIMAL", 0.0, 0.0, 0.0))
            _record(pm, hinted, solution)
            full_hint = [(var, hinted.value(var)) for var in _all_variables(pm)]
            if pm.moved:
                first_stage = Assignment({var.index: value for var, value in full_hint})
            pm.model.add(objective <= 0).with_name(f"stage[{name}]")
            continue
        if name == "moves" and first_stage is not None and full_hint:
            incumbent = Assignment({var.index: value for var, value in full_hint})
            if _fewer_moves_within_cost(pm, first_stage, incumbent):
                full_hint = [(var, first_stage.value(var)) for var in _all_variables(pm)]
        # A replan's first stage breaks ties by moves (``_moves_tie_break``); the row it leaves
        # for later stages still holds only the stage's own objective.
        searched = _moves_tie_break(pm, objective) if number == 0 else objective
        pm.model.minimize(searched)
        pm.model.clear_hints()  # type: ignore[no-untyped-call]
        # Time a stage does not use passes on to the stages after it.
        left_s = settings.time_limit_s - clock.spent_s
        budget_s = left_s * shares[number] / sum(shares[number : len(stages)])
        stage_started = time.perf_counter()
        stage_work = clock.spent_s
        search = None
        if windows and full_hint and number > 0:
            # The first stage searches the full model from its (full) hint. Only a first plan's
            # cost stage proves its bound; later stages, and the cost stage
            # of a replan (it only sets what the move tolerance is measured from, and at high
            # utilization one pass of windows takes ~11 s), give windows all their time.
            share = 1.0  # a replan's cost stage, and the stages after the cost stage
            if name == "cost" and not pm.moved:
                share = FAILOVER_WINDOW_SHARE if pm.uncovered else WINDOW_SHARE
            deadline = stage_work + budget_s * share
            start = Assignment({var.index: value for var, value in full_hint})
            if name == "moves":
                limit_s = min(KEEP_PREVIOUS_LIMIT_S, (deadline - stage_work) / 2)
                start = _keep_previous(pm, start, settings, limit_s, clock)
            else:
                start = drop_spare_replicas(pm, start)
            search = search_windows(
                pm,
                _all_variables(pm),
                _goal(pm, name, objective),
                start,
                deadline=deadline,
                clock=clock,
                window_workloads=window_workloads,
                random_seed=settings.random_seed + number,
                make_solver=lambda limit_s: _solver(settings, limit_s),
            )
            full_hint = [(var, search.incumbent.value(var)) for var in _all_variables(pm)]
            if share >= 1.0:
                _record(pm, search.incumbent, solution)
                solution.stages.append(
                    StageResult(
                        name,
                        "FEASIBLE",
                        float(search.objective),
                        0.0,
                        time.perf_counter() - stage_started,
                        search.windows,
                    )
                )
                values = {index: search.incumbent.value(var) for index, var in pm.x.items()}
                pm.model.add(
                    objective <= _fixed_value(name, search.objective, problem, settings)
                ).with_name(f"stage[{name}]")
                continue
        if full_hint:
            # Every variable of the last stage's solution: it is feasible for this stage too.
            for var, value in full_hint:
                pm.model.add_hint(var, value)
        else:
            for index, var in pm.x.items():
                pm.model.add_hint(var, values.get(index, 0))
        solver = _solver(settings, budget_s - (clock.spent_s - stage_work))
        if number == 0:  # a callback slows the search: only the first stage times its start
            first = _FirstSolution(started)
            status = solver.solve(pm.model, first)
            solution.first_solution_s = first.at_s
        else:
            status = solver.solve(pm.model)
        clock.charge(solver)
        status_name = solver.status_name(status)
        found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        if search is not None and (not found or round(solver.objective_value) > search.objective):
            # The full-model solve found nothing better in its time: the windows' incumbent
            # stands, with the bound the solver proved (0 when it proved none).
            bound = min(float(search.objective), max(0.0, solver.best_objective_bound))
            if status == cp_model.INFEASIBLE:  # cannot be: the incumbent is feasible
                bound = 0.0
            proved = bound >= search.objective
            solution.stages.append(
                StageResult(
                    name,
                    "OPTIMAL" if proved else "FEASIBLE",
                    float(search.objective),
                    bound,
                    time.perf_counter() - stage_started,
                    search.windows,
                )
            )
            _record(pm, search.incumbent, solution)
            values = {index: search.incumbent.value(var) for index, var in pm.x.items()}
            pm.model.add(
                objective <= _fixed_value(name, search.objective, problem, settings)
            ).with_name(f"stage[{name}]")
            continue
        if not found or (
            number == 0
            and hinted is not None
            # (the hint is the previous plan in a replan: its tie-break adds no moves)
            and solver.objective_value > hinted.objective_value
        ):
            if number == 0 and status == cp_model.INFEASIBLE:
                status_name = _recheck_infeasible(pm, settings, clock)
            solution.status = status_name
            if number == 0 and hinted is not None:
                # Nothing of its own in time that beats the (valid) hint: the hint stands for
                # this stage, and the next stages improve on it.
                _record(pm, hinted, solution)
                solution.stages.append(
                    StageResult(name, "FEASIBLE", hinted.objective_value, 0.0, 0.0)
                )
                full_hint = [(var, hinted.value(var)) for var in _all_variables(pm)]
                if pm.moved:
                    first_stage = Assignment({var.index: value for var, value in full_hint})
                values = {index: hinted.value(var) for index, var in pm.x.items()}
                bound = round(hinted.objective_value)
                pm.model.add(objective <= bound).with_name(f"stage[{name}]")
                continue
            if number == 0:
                solution.wall_s = time.perf_counter() - started
                solution.work_s = clock.spent_s
                return solution
            skipped = True
            break  # keep the previous stage's solution
        value = round(solver.value(objective))
        solution.stages.append(
            StageResult(
                name=name,
                status=status_name,
                objective=solver.objective_value,
                bound=solver.best_objective_bound,
                wall_s=time.perf_counter() - stage_started,
                windows=search.windows if search is not None else 0,
            )
        )
        values = {index: solver.value(var) for index, var in pm.x.items()}
        full_hint = [(var, solver.value(var)) for var in _all_variables(pm)]
        if number == 0 and pm.moved:
            first_stage = drop_spare_replicas(
                pm, Assignment({var.index: value for var, value in full_hint})
            )
        _record(pm, solver, solution)
        # Fix this stage's optimum (as found) for the stages that follow.
        pm.model.add(objective <= _fixed_value(name, value, problem, settings)).with_name(
            f"stage[{name}]"
        )
    optimal = not skipped and all(s.status == "OPTIMAL" for s in solution.stages)
    solution.status = "OPTIMAL" if optimal else "FEASIBLE"
    solution.wall_s = time.perf_counter() - started
    solution.work_s = clock.spent_s
    return solution


def _keep_previous(
    pm: PlacementModel,
    incumbent: Assignment,
    settings: SolverSettings,
    limit_s: float,
    clock: WorkClock,
) -> Assignment:
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
    solver = _solver(settings, limit_s)
    found = solve_window(
        pm,
        _all_variables(pm),
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


def _moves_tie_break(pm: PlacementModel, objective: cp_model.LinearExprT) -> cp_model.LinearExprT:
    """What a replan's first stage minimizes: its objective plus one per moved replica. A move
    weighs as much as the smallest step of weighted unmet demand (half a milli-request/s at
    priority 1), so unmet demand still comes first to within the model's resolution, and of the
    plans that serve as much, the stage ends at one that moves few replicas. Demand left unmet
    after nodes vanish is often served by moving other replicas out of its way; without the
    tie-break the stage moved 1,055 of 1,649 replicas (10,000 x 1,000, high utilization), more
    than the moves stage could take back in its time (236 left); with it, 25. (Scaling the
    objective above any number of moves instead, strictly lexicographic, left the stage 5%
    above its optimum unmet demand in its time.)"""
    if not pm.moved:
        return objective
    return cp_model.LinearExpr.sum([objective, dict(pm.objectives)["moves"]])


def _fewer_moves_within_cost(
    pm: PlacementModel, candidate: Assignment, incumbent: Assignment
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


def _goal(pm: PlacementModel, name: str, objective: cp_model.LinearExprT) -> Goal:
    """What a stage's windows minimize. With a previous plan, the moves stage draws the
    workloads that moved replicas first. (Breaking the cost stage's ties by moves, as cost x
    (moves + 1) + moves, was measured: its windows ran 3x slower and the cost stage ended 45%
    above its bound on 10,000 x 1,000.)"""
    if name != "moves" or not pm.moved:
        return Goal(objective)

    def moved_workloads(incumbent: Assignment) -> set[int]:
        return {
            pm.problem.options[option].workload
            for option, var in pm.moved.items()
            if incumbent.value(var) > 0
        }

    return Goal(objective, focus=moved_workloads, window_s=MOVES_WINDOW_TIME_LIMIT_S)


def _fixed_value(name: str, value: int, problem: Problem, settings: SolverSettings) -> int:
    """What later stages must keep this stage's objective within: its value as found, and with
    a previous plan the cost only to within ``move_tolerance`` (moves are priced in it)."""
    if name == "cost" and problem.previous:
        return int(value * (1 + settings.move_tolerance))
    return value


def _all_variables(pm: PlacementModel) -> list[cp_model.IntVar]:
    return [
        *pm.x.values(),
        *pm.unmet.values(),
        *pm.short.values(),
        *pm.moved.values(),
        *pm.uncovered.values(),
        *pm.per_node.values(),
        *pm.worst_loss.values(),
    ]


def _solve_hint(
    pm: PlacementModel, counts: dict[int, int], settings: SolverSettings, clock: WorkClock
) -> cp_model.CpSolver | None:
    """Solve the first stage with every replica count fixed to the hint: a cheap check that the
    hint is valid, and its unmet demand. None when the hint breaks a rule (or time ran out)."""
    _, objective = pm.objectives[0]
    pm.model.minimize(objective)
    pm.model.clear_hints()  # type: ignore[no-untyped-call]
    for index, var in pm.x.items():
        pm.model.add_hint(var, counts.get(index, 0))
    solver = _solver(settings, min(2.0, settings.time_limit_s / 10))
    solver.parameters.fix_variables_to_their_hinted_value = True
    status = solver.solve(pm.model)
    clock.charge(solver)
    return solver if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None


class _FirstSolution(cp_model.CpSolverSolutionCallback):
    """Records when the first solution of a solve arrived."""

    def __init__(self, started: float) -> None:
        super().__init__()
        self.started = started
        self.at_s: float | None = None

    def on_solution_callback(self) -> None:
        if self.at_s is None:
            self.at_s = time.perf_counter() - self.started


def _start(
    pm: PlacementModel, settings: SolverSettings, clock: WorkClock
) -> tuple[dict[int, int], cp_model.CpSolver | None]:
    """Where the search starts (``hints``): the candidate whose first-stage objective, then
    cost, is lowest among those valid on the full model (the solver holds every variable's
    value); greedy's plan and no solver when none is valid."""
    problem = pm.problem
    if problem.previous:
        candidates = [previous_counts(problem), previous_then_greedy(problem)]
    else:
        candidates = [greedy_with_failover(problem)]
        relaxed_settings = dataclasses.replace(
            settings, time_limit_s=settings.time_limit_s * RELAXED_SHARE, stages=2
        )

        def solve_relaxed(relaxed: Problem) -> dict[int, int]:
            inner = solve_problem(relaxed, relaxed_settings)
            clock.add(inner.work_s)  # the stages share what the relaxed solve left
            return inner.counts

        repaired = relaxed_and_repaired(problem, solve_relaxed)
        if repaired is not None:
            candidates.append(repaired)
    best: tuple[tuple[int, float], dict[int, int], cp_model.CpSolver] | None = None
    for counts in candidates:
        hinted = _solve_hint(pm, counts, settings, clock)
        if hinted is None:
            continue
        cost = sum(problem.options[i].cost_per_hour * n for i, n in counts.items())
        key = (round(hinted.objective_value), cost)
        if best is None or key < best[0]:
            best = (key, counts, hinted)
    if best is None:
        return candidates[0], None
    return best[1], best[2]


def _record(pm: PlacementModel, solver: cp_model.CpSolver | Assignment, solution: Solution) -> None:
    solution.counts = {i: v for i, var in pm.x.items() if (v := solver.value(var)) > 0}
    solution.unmet_rps = {key: solver.value(var) / RATE_SCALE for key, var in pm.unmet.items()}
    solution.short = {w: v for w, var in pm.short.items() if (v := solver.value(var)) > 0}


def _recheck_infeasible(pm: PlacementModel, settings: SolverSettings, clock: WorkClock) -> str:
    """Solve again with one worker and no objective; only a confirmed INFEASIBLE is reported."""
    pm.model.clear_objective()  # type: ignore[no-untyped-call]
    solver = _solver(SolverSettings(num_workers=1, random_seed=settings.random_seed), 5.0)
    status = solver.solve(pm.model)
    clock.charge(solver)
    return solver.status_name(status)


def model_size(problem: Problem) -> dict[str, int]:
    """Variables and constraints of the full model (for progress messages and benchmarks)."""
    proto = build_model(problem).model.proto
    return {"variables": len(proto.variables), "constraints": len(proto.constraints)}
