"""Large neighbourhood search over windows of workloads, for models too large for one CP-SAT search.

Owns the improvement of one stage's incumbent on a large model; it must not change what a stage
means: every window is the full model (earlier stages' rows included), with the replica counts
of all workloads outside the window fixed at the incumbent's. Workloads only interact through
shared pools and the rows fixed by earlier stages, so a window of ~100 workloads is a small
model that CP-SAT usually solves to optimality in well under a second, and the incumbent only
ever gets better (a window's solution is accepted when it is at least as good). Windows are
drawn from a seeded shuffle of the workloads, a new one for each pass, so every workload is
revisited once per pass.

Why: one CP-SAT worker on the whole 10,000-node x 1,000-workload model (23,000 options) spends
its time on the root LP and ends the cost stage 70-95% above its bound; measured on this 2-core
machine, one pass of windows from the unmet stage's solution reaches 1.5% above the HiGHS MILP
optimum in about 5 s and 0.7% in 15 s (bench/solver_scale.py, moderate utilization).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from gridplace.planner.model import PlacementModel

# A window that does not finish in this time keeps the best it found (CP-SAT returns FEASIBLE).
WINDOW_TIME_LIMIT_S = 3.0
MIN_WINDOW_TIME_S = 0.2  # below this, a window cannot even presolve: stop


@dataclass
class Assignment:
    """A value for every variable of the model, by proto index (what a solver would return)."""

    values: dict[int, int]

    def value(self, var: cp_model.IntVar) -> int:
        return self.values[var.index]


@dataclass
class WindowSearch:
    """What the windows achieved: the incumbent, its objective value, windows solved."""

    incumbent: Assignment
    objective: int
    windows: int
    improved: int


def search_windows(
    pm: PlacementModel,
    variables: Sequence[cp_model.IntVar],
    start: Assignment,
    deadline: float,
    window_workloads: int,
    random_seed: int,
    make_solver: Callable[[float], cp_model.CpSolver],
) -> WindowSearch:
    """Improve ``start`` for the objective ``pm.model`` minimizes now, window by window, until
    ``deadline`` (a ``time.perf_counter()`` value). ``variables`` are all the model's variables
    (hinted in each window, so a window starts from the incumbent); ``make_solver(limit_s)``
    gives a solver with the stage's parameters."""
    incumbent = start
    objective = _objective_value(pm, incumbent)
    by_workload: dict[int, list[int]] = {}
    for option in pm.problem.options:
        by_workload.setdefault(option.workload, []).append(option.index)
    workloads = sorted(by_workload)
    rng = random.Random(random_seed)
    windows = improved = 0
    while True:
        order = list(workloads)
        rng.shuffle(order)
        for first in range(0, len(order), max(1, window_workloads)):
            left_s = deadline - time.perf_counter()
            if left_s < MIN_WINDOW_TIME_S:
                return WindowSearch(incumbent, objective, windows, improved)
            free = set(order[first : first + window_workloads])
            model = pm.model.clone()
            model.clear_hints()  # type: ignore[no-untyped-call]
            for workload, options in by_workload.items():
                if workload in free:
                    continue
                for option_index in options:
                    index = pm.x[option_index].index
                    var = model.get_int_var_from_proto_index(index)
                    model.add(var == incumbent.values[index])
            for var in variables:
                model.add_hint(model.get_int_var_from_proto_index(var.index), incumbent.value(var))
            solver = make_solver(min(WINDOW_TIME_LIMIT_S, left_s))
            status = solver.solve(model)
            windows += 1
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                continue
            value = round(solver.objective_value)
            if value <= objective:
                improved += value < objective
                objective = value
                incumbent = Assignment({var.index: solver.value(var) for var in variables})
        if len(order) <= window_workloads:
            # One window holds every workload: it was the whole model, solved once is enough.
            return WindowSearch(incumbent, objective, windows, improved)


def _objective_value(pm: PlacementModel, assignment: Assignment) -> int:
    """The value of the objective ``pm.model`` minimizes now, at ``assignment``."""
    proto = pm.model.proto.objective
    total = 0
    for ref, coeff in zip(proto.vars, proto.coeffs, strict=True):
        # A negative reference is the negation of a Boolean: value 1 - value(-ref - 1).
        total += coeff * (assignment.values[ref] if ref >= 0 else 1 - assignment.values[-ref - 1])
    return round(total + proto.offset)
