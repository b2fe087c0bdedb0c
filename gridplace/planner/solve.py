"""Solving the placement model in lexicographic stages (``stages.StageRunner``) from the best
valid start (``hints``).

Every time here (the limit, stage shares, window budgets, the time a skipped stage passes on) is
deterministic work in reference seconds, counted by a ``work.WorkClock`` from CP-SAT's
deterministic time: with one worker and a fixed seed the same problem gives the same plan on an
idle and on a loaded machine. Wall time is only measured and reported. The result is a
``Solution`` (counts per option, unmet demand) — never an exception for a problem that cannot be
fully served.
"""

from __future__ import annotations

import dataclasses
import time

from ortools.sat.python import cp_model

from gridplace.planner.decompose import by_site, merge, part_settings, split
from gridplace.planner.hints import (
    greedy_with_failover,
    previous_counts,
    previous_then_greedy,
    relaxed_and_repaired,
)
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.parts import run_parts
from gridplace.planner.problem import Problem
from gridplace.planner.solver_settings import (
    Progress,
    Solution,
    SolverSettings,
    StageResult,
    make_solver,
)
from gridplace.planner.stages import StageRunner
from gridplace.planner.work import WorkClock

# Share of the time limit the relaxed solve of the first hint (``hints``) may take, when some
# workload has failover rows; the stages share what is left.
RELAXED_SHARE = 0.3
# Share of the time limit the sites' parts get when ``SolverSettings.sites`` is set; the whole
# model's solve from their merged plan (the reconciliation across sites) gets what they leave.
SITE_SHARE = 0.5


def solve_problem(
    problem: Problem, settings: SolverSettings | None = None, progress: Progress | None = None
) -> Solution:
    """Solve ``problem`` stage by stage from the best valid start; see the module docstring.
    Independent parts (``decompose``) are solved apart (``parts``) and merged."""
    settings = settings or SolverSettings()
    if settings.sites:
        return _solve_by_site(problem, settings, progress)
    parts = split(problem) if settings.decompose else []
    if len(parts) > 1:
        started = time.perf_counter()
        jobs = [(p.problem, part_settings(settings, p, len(problem.options))) for p in parts]
        solutions = run_parts(solve_whole, jobs, settings)
        return merge(parts, solutions, time.perf_counter() - started)
    return solve_whole(problem, settings, progress)


def _solve_by_site(
    problem: Problem, settings: SolverSettings, progress: Progress | None
) -> Solution:
    """Solve each site's part of the problem (``decompose.by_site``) apart, then the whole model
    from their merged plan, in what the parts left of the budget."""
    started = time.perf_counter()
    restricted = by_site(problem, dict(settings.sites))
    first = solve_problem(
        restricted.problem,
        dataclasses.replace(settings, sites=(), time_limit_s=settings.time_limit_s * SITE_SHARE),
    )
    start = {restricted.options[o]: n for o, n in first.counts.items()}
    rest = max(settings.time_limit_s * SITE_SHARE, settings.time_limit_s - first.work_s)
    whole = solve_whole(
        problem, dataclasses.replace(settings, sites=(), time_limit_s=rest), progress, start
    )
    whole.work_s += first.work_s
    whole.wall_s = time.perf_counter() - started
    return whole


def solve_whole(
    problem: Problem,
    settings: SolverSettings,
    progress: Progress | None = None,
    start: dict[int, int] | None = None,
) -> Solution:
    """Solve ``problem`` as one model (``solve_problem`` without decomposition), from ``start``
    (replicas per option) when it is given and valid, else from ``hints``' best."""
    started = time.perf_counter()
    clock = WorkClock()
    pm = build_model(problem)
    for family, literal in sorted(pm.enforce.items()):
        pm.model.add(literal == 1).with_name(f"enforce[{family}]")
    begin = _start(pm, settings, clock, start)
    return StageRunner(pm, settings, clock, begin, started, progress).run()


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
    solver = make_solver(settings, min(2.0, settings.time_limit_s / 10))
    solver.parameters.fix_variables_to_their_hinted_value = True
    status = solver.solve(pm.model)
    clock.charge(solver)
    return solver if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None


def _start(
    pm: PlacementModel,
    settings: SolverSettings,
    clock: WorkClock,
    given: dict[int, int] | None = None,
) -> tuple[dict[int, int], cp_model.CpSolver | None]:
    """Where the search starts (``hints``): the candidate whose first-stage objective, then
    cost, is lowest among those valid on the full model (the solver holds every variable's
    value); greedy's plan and no solver when none is valid. A ``given`` start competes with
    greedy's plan (with a previous plan's candidates on a replan)."""
    problem = pm.problem
    if given is not None:
        candidates = [given, greedy_with_failover(problem)]
        if problem.previous:
            candidates += [previous_counts(problem), previous_then_greedy(problem)]
    elif problem.previous:
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


__all__ = ["Progress", "Solution", "SolverSettings", "StageResult", "solve_problem"]
