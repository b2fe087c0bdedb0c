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
import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gridplace.planner.decompose import by_site, merge, part_settings, split
from gridplace.planner.hints import choose_start
from gridplace.planner.model import build_model
from gridplace.planner.parts import run_parts
from gridplace.planner.problem import Problem
from gridplace.planner.solver_settings import (
    Progress,
    Solution,
    SolverSettings,
    StageResult,
)
from gridplace.planner.stages import StageRunner
from gridplace.planner.work import WorkClock

# Share of the time limit the sites' parts get when ``SolverSettings.sites`` is set; the whole
# model's solve from their merged plan (the reconciliation across sites) gets what they leave.
SITE_SHARE = 0.5


def solve_problem(
    problem: Problem, settings: SolverSettings | None = None, progress: Progress | None = None
) -> Solution:
    """Solve ``problem`` stage by stage from the best valid start; see the module docstring.
    Independent parts (``decompose``) are solved apart (``parts``) and merged."""
    with _objects_so_far_left_alone():
        return _solve_problem(problem, settings or SolverSettings(), progress)


@contextmanager
def _objects_so_far_left_alone() -> Iterator[None]:
    """Python's collector leaves the objects that exist when the (outermost) solve starts to
    themselves until it ends: a compiled 10,000 x 1,000 problem is ~2.7 million objects, and
    each full collection that the solve's own allocations set off walked them all (~1.1 CPU s,
    several times per solve). Those that become garbage meanwhile are collected after it."""
    global _SOLVES
    with _SOLVES_LOCK:
        if _SOLVES == 0:
            gc.freeze()
        _SOLVES += 1
    try:
        yield
    finally:
        with _SOLVES_LOCK:
            _SOLVES -= 1
            if _SOLVES == 0:
                gc.unfreeze()


_SOLVES = 0  # solves under way in this process (a relaxed start nests one; threads may too)
_SOLVES_LOCK = threading.Lock()


def _solve_problem(
    problem: Problem, settings: SolverSettings, progress: Progress | None
) -> Solution:
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
    begin = choose_start(pm, settings, clock, solve_problem, start)
    return StageRunner(pm, settings, clock, begin, started, progress).run()


__all__ = ["Progress", "Solution", "SolverSettings", "StageResult", "solve_problem"]
