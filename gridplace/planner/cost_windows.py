"""A large first plan's cost stage: a cost-aware repair of the unmet stage's plan (``swaps``),
then small windows without presolve, each with a short limit, for the stage's window time.

Owns what that stage searches (the repair, the small windows' size, limit and solver, what one
costs the clock); it must not decide a stage's share of the time (``stages``). Why: the unmet
stage's plan, trimmed, costs ~6% above the optimum at 10,000 x 1,000, high utilization, and the
unmet stage leaves the cost stage ~2 reference s at a 7.5-second limit, where 100-workload
windows solve a few windows only; the repair and many small windows come within ~1% in that
time, and a longer stage only adds windows to the same sequence (docs/solver-tuning.md).
"""

from __future__ import annotations

from ortools.sat.python import cp_model

from gridplace.planner.model import PlacementModel
from gridplace.planner.solver_settings import SolverSettings, all_variables, make_solver
from gridplace.planner.swaps import cheaper_swaps
from gridplace.planner.windows import (
    Goal,
    VariableValues,
    WindowSearch,
    drop_spare_replicas,
    search_windows,
)
from gridplace.planner.work import SMALL_WINDOW_CHARGE_S, WorkClock

# Windows of this many workloads, solved without presolve. From the unmet optimum at high
# utilization, 1.5 reference s of 100-workload windows ended 4.8% above the HiGHS optimum, of 30
# workloads 1.1%, and 0.9% without presolve, which costs a small window more than its search
# (docs/solver-tuning.md).
COST_WINDOW_WORKLOADS = 30
# Each small window's limit (reference seconds). Most end optimal after 0.005-0.02 s; a few ran
# on for 0.17-0.83 s proving their optimum and took most of a 2-second stage at high utilization:
# at 7.5 reference s, window seeds 0-4, one pass of 1-second windows then 100-workload windows
# (before) ended +0.92-1.42% above the HiGHS optimum, small windows throughout at 0.1 s
# +0.82-1.02%, at 0.05 s +0.70-0.99% (docs/solver-tuning.md).
SMALL_WINDOW_S = 0.05


def small_cost_windows(
    pm: PlacementModel,
    settings: SolverSettings,
    clock: WorkClock,
    objective: cp_model.LinearExprT,
    start: VariableValues,
    until: tuple[float, int],
) -> WindowSearch:
    """From ``start`` (the unmet stage's plan, trimmed and ``repaired``), passes of small cost
    windows (at most ``settings.window_workloads`` each) until ``until``'s deadline (reference
    seconds on ``clock``), drawn with its random seed. A longer stage runs the same windows and
    then more, so it never ends dearer."""
    deadline, seed = until
    return search_windows(
        pm,
        all_variables(pm),
        Goal(objective, window_s=SMALL_WINDOW_S, min_charge_s=SMALL_WINDOW_CHARGE_S),
        start,
        deadline=deadline,
        clock=clock,
        window_workloads=min(settings.window_workloads, COST_WINDOW_WORKLOADS),
        random_seed=seed,
        make_solver=lambda limit_s: _window_solver(settings, limit_s),
    )


def repaired(pm: PlacementModel, start: VariableValues) -> VariableValues:
    """``start`` after the cost-aware repair (``swaps``), trimmed again: where the cost stage
    starts, whatever its length (at high utilization, 10 reference s, its usual windows ended at
    $1,127.70/h from the trimmed start and at $1,116.51/h from this; docs/solver-tuning.md)."""
    return drop_spare_replicas(pm, cheaper_swaps(pm, start))


def _window_solver(settings: SolverSettings, limit_s: float) -> cp_model.CpSolver:
    """A solver for a small cost window: without presolve, which costs it more than its search."""
    solver = make_solver(settings, limit_s)
    solver.parameters.cp_model_presolve = False
    return solver
