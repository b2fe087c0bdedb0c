"""A large first plan's cost stage, before its usual windows: a cost-aware repair of the unmet
stage's plan (``swaps``), and when the stage is short one pass of small windows without presolve.

Owns what that start is (the repair, the pass's window size and solver, what a window costs the
clock); it must not decide a stage's share of the time (``stages``). Why: the unmet stage's
plan, trimmed, costs ~6% above the optimum at 10,000 x 1,000, high utilization, and the unmet
stage leaves the cost stage ~2 reference s at a 7-second limit, where 100-workload windows solve
a few windows only; the repair and many small windows come within ~1% in that time. With a
longer stage the usual windows from the repair come closer (docs/solver-tuning.md).
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
# The small pass runs only when the cost stage has less than this for its windows (reference
# seconds); the repair runs always. At moderate utilization the unmet stage ends after 2.62 s and
# leaves the cost stage ~3.6 s at a 7-second limit, where the usual windows ended cheaper than
# the small pass ($710.60/h against $713.57/h, both from before the repair ran always); high has
# ~1.9 s there (docs/solver-tuning.md).
FIRST_PASS_MAX_S = 3.0


def first_cost_pass(
    pm: PlacementModel,
    settings: SolverSettings,
    clock: WorkClock,
    objective: cp_model.LinearExprT,
    start: VariableValues,
    until: tuple[float, int],
) -> WindowSearch:
    """From ``start`` (the unmet stage's plan, trimmed and ``repaired``), one pass of small cost
    windows (at most ``settings.window_workloads`` each); ``until``: the stage's deadline
    (reference seconds on ``clock``) and the pass's random seed."""
    deadline, seed = until
    return search_windows(
        pm,
        all_variables(pm),
        Goal(objective, min_charge_s=SMALL_WINDOW_CHARGE_S),
        start,
        deadline=deadline,
        clock=clock,
        window_workloads=min(settings.window_workloads, COST_WINDOW_WORKLOADS),
        random_seed=seed,
        make_solver=lambda limit_s: _window_solver(settings, limit_s),
        max_passes=1,
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
