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

import time

from gridplace.planner.hints import choose_start
from gridplace.planner.model import build_model
from gridplace.planner.problem import Problem
from gridplace.planner.solver_settings import (
    Progress,
    Solution,
    SolverSettings,
    StageResult,
)
from gridplace.planner.stages import StageRunner
from gridplace.planner.work import WorkClock


def solve_problem(
    problem: Problem, settings: SolverSettings | None = None, progress: Progress | None = None
) -> Solution:
    """Solve ``problem`` stage by stage from the best valid start; see the module docstring."""
    settings = settings or SolverSettings()
    started = time.perf_counter()
    clock = WorkClock()
    pm = build_model(problem)
    for family, literal in sorted(pm.enforce.items()):
        pm.model.add(literal == 1).with_name(f"enforce[{family}]")
    start = choose_start(pm, settings, clock, solve_problem)
    return StageRunner(pm, settings, clock, start, started, progress).run()


__all__ = ["Progress", "Solution", "SolverSettings", "StageResult", "solve_problem"]
