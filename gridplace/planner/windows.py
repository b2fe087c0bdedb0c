"""Large neighbourhood search over windows of workloads, for models too large for one CP-SAT search.

Owns the improvement of one stage's incumbent on a large model; it must not change what a stage
means: every window is the full model (earlier stages' rows included), with the replica counts
of all workloads outside the window fixed at the incumbent's — built as a model of the window's
own variables, the others' values moved into the bounds of the rows they share. Workloads only
interact through shared pools and the rows fixed by earlier stages, so a window of ~100
workloads is a small model that CP-SAT usually solves to optimality in well under a second, and
the incumbent only ever gets better (a window's solution is accepted when it is at least as
good). Windows are
drawn from a seeded shuffle of the workloads, a new one for each pass, so every workload is
revisited once per pass.

Why: one CP-SAT worker on a whole 10,000-node x 1,000-workload model spends its time on the root
LP and ends the cost stage far above its bound, while one pass of 100-workload windows from the
unmet stage's solution comes within a few percent of the MILP optimum (the figures, and the
window sizes tried: ``docs/solver-tuning.md``).
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from gridplace.planner.model import PlacementModel
from gridplace.planner.objectives import flat_terms
from gridplace.planner.rows import drop_spare
from gridplace.planner.rules import MODEL_RULES
from gridplace.planner.window_state import WindowState, dense_terms
from gridplace.planner.work import MIN_CHARGE_S, WorkClock

# A window that does not finish in this time keeps the best it found (CP-SAT returns FEASIBLE).
# Times here are reference seconds of deterministic work (``work.py``), not wall time.
# 1 s lets a pass of cost windows finish in the cost stage's time on the largest grids (measured:
# docs/solver-tuning.md); moves windows need longer to find anything (Goal.window_s).
WINDOW_TIME_LIMIT_S = 1.0
MIN_WINDOW_TIME_S = 0.2  # below this, a window cannot even presolve: stop


@dataclass
class VariableValues:
    """A value for every variable of the model, by proto index (what a solver would return)."""

    values: dict[int, int]

    def value(self, var: cp_model.IntVar) -> int:
        return self.values[var.index]


@dataclass
class WindowSearch:
    """What the windows achieved: the incumbent, its objective value, windows solved."""

    incumbent: VariableValues
    objective: int
    windows: int
    improved: int


@dataclass(frozen=True)
class Goal:
    """What windows minimize: ``objective``, then ``tie_break`` among equal objectives (in one
    window as ``objective x tie_scale + tie_break``; ``tie_scale`` must exceed any value
    ``tie_break`` takes). ``focus(incumbent)`` names workloads that come first in every pass:
    those that carry the objective, when few do (the moves stage's moved workloads). A window
    costs the clock its solve's work (at least ``min_charge_s``) plus ``build_charge_s``: what
    building it costs where that is not small beside its solve (``work``)."""

    objective: cp_model.LinearExprT
    tie_break: cp_model.LinearExprT | None = None
    tie_scale: int = 1
    focus: Callable[[VariableValues], set[int]] | None = None
    window_s: float = WINDOW_TIME_LIMIT_S
    min_charge_s: float = MIN_CHARGE_S
    build_charge_s: float = 0.0


def search_windows(
    pm: PlacementModel,
    variables: Sequence[cp_model.IntVar],
    goal: Goal,
    start: VariableValues,
    deadline: float,
    clock: WorkClock,
    window_workloads: int,
    random_seed: int,
    make_solver: Callable[[float], cp_model.CpSolver],
) -> WindowSearch:
    """Improve ``start`` for ``goal`` (within the rows ``pm.model`` has now), window by window,
    until ``clock`` reaches ``deadline`` (reference seconds of work: the windows drawn, and the
    plan, do not depend on machine load).
    ``variables`` are all the model's variables (hinted in each window, so a window starts
    from the incumbent);
    ``make_solver(limit_s)`` gives a solver with the stage's parameters."""
    window_objective = goal.objective
    if goal.tie_break is not None:
        window_objective = cp_model.LinearExpr.weighted_sum(
            [goal.objective, goal.tie_break], [goal.tie_scale, 1]
        )

    def score(assignment: VariableValues) -> tuple[int, int]:
        tie = evaluate(goal.tie_break, assignment) if goal.tie_break is not None else 0
        return evaluate(goal.objective, assignment), tie

    incumbent, best = start, score(start)
    x_refs = [(option, var.index) for option, var in pm.x.items()]
    refs = [var.index for var in variables]
    # An incumbent that holds exactly the variables (a full hint) is searched window by window
    # as small models (``WindowState``) whose score is the change over the window's own
    # variables (``_Change``): building a ~25,000-entry hint and re-summing the objective per
    # window cost more CPU than a small window's solve.
    complete = _is_complete(pm, start, refs)
    state = WindowState(pm, start.values) if complete else None
    change = _Change(goal, len(pm.model.proto.variables)) if complete else None
    if state is not None:
        incumbent = VariableValues(state.values)  # (updated in place: ``WindowState.accept``)
    workloads = sorted(_options_by_workload(pm))
    rng = random.Random(random_seed)
    windows = improved = 0
    while True:
        order = list(workloads)
        rng.shuffle(order)
        if goal.focus is not None:
            focus = goal.focus(incumbent)
            order = [w for w in order if w in focus] + [w for w in order if w not in focus]
        for first in range(0, len(order), max(1, window_workloads)):
            left_s = deadline - clock.spent_s
            if left_s < MIN_WINDOW_TIME_S:
                return WindowSearch(incumbent, best[0], windows, improved)
            free = set(order[first : first + window_workloads])
            solver = make_solver(min(goal.window_s, left_s))
            solved, found, value = None, None, None
            if state is not None and change is not None:
                solved = state.solve(free, solver, window_objective)
                value = change(best, state, *solved) if solved is not None else None
            else:
                counts = {o: incumbent.values[ref] for o, ref in x_refs}
                hint = {ref: incumbent.values[ref] for ref in refs}
                found = solve_window(pm, variables, counts, free, hint, solver, window_objective)
                value = score(found) if found is not None else None
            clock.charge(solver, goal.min_charge_s)
            clock.add(goal.build_charge_s)
            windows += 1
            if value is None or value > best:
                continue
            improved += value < best
            best = value
            if state is not None and solved is not None:
                state.accept(*solved)
            elif found is not None:
                incumbent = found
        if len(order) <= window_workloads:
            # (One window holds every workload: it was the whole model, solved once is enough.)
            return WindowSearch(incumbent, best[0], windows, improved)


def _is_complete(pm: PlacementModel, start: VariableValues, refs: list[int]) -> bool:
    """Whether ``start`` holds a value for exactly the variables ``refs``, and they are every
    variable of the model but its family literals (what ``solve_window`` solves small)."""
    return (
        len(refs) + len(pm.enforce) >= len(pm.model.proto.variables)
        and len(start.values) == len(refs)
        and all(ref in start.values for ref in refs)
    )


class _Change:
    """A goal's (objective, tie-break) at a window's solution from its value at the incumbent:
    the coefficients of both by proto index, summed over the window's own variables."""

    def __init__(self, goal: Goal, size: int) -> None:
        self.objective = dense_terms(goal.objective, size)
        self.tie = dense_terms(goal.tie_break, size) if goal.tie_break is not None else None

    def __call__(
        self, best: tuple[int, int], state: WindowState, local: list[int], solution: list[int]
    ) -> tuple[int, int]:
        tie = best[1] + state.change(self.tie, local, solution) if self.tie is not None else 0
        return best[0] + state.change(self.objective, local, solution), tie


def solve_window(
    pm: PlacementModel,
    variables: Sequence[cp_model.IntVar],
    counts: dict[int, int],
    free: set[int],
    hint: dict[int, int],
    solver: cp_model.CpSolver,
    objective: cp_model.LinearExprT | None = None,
) -> VariableValues | None:
    """The best the full model (rows as ``pm.model`` has them now; its objective unless
    ``objective`` is given) can do when every option of a workload outside ``free`` keeps its
    replica count from ``counts`` (by option index; 0 if absent); ``hint`` (by proto index) is
    where the search starts. None if that is infeasible or nothing was found in time.

    When ``hint`` is a whole feasible assignment (an incumbent; family literals switched on)
    with ``counts`` its replica counts, the window is solved as a small model of the free
    workloads' variables alone (``_small_window``); otherwise as the full model with the other
    counts fixed."""
    if len(hint) + len(pm.enforce) >= len(pm.model.proto.variables):
        return _small_window(pm, variables, free, hint, solver, objective)
    model = pm.model.clone()
    model.clear_hints()  # type: ignore[no-untyped-call]
    if objective is not None:
        model.minimize(objective)
    for workload, options in _options_by_workload(pm).items():
        if workload in free:
            continue
        for option in options:
            var = model.get_int_var_from_proto_index(pm.x[option].index)
            model.add(var == counts.get(option, 0))
    for index, value in hint.items():
        model.add_hint(model.get_int_var_from_proto_index(index), value)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return VariableValues({var.index: solver.value(var) for var in variables})


def _small_window(
    pm: PlacementModel,
    variables: Sequence[cp_model.IntVar],
    free: set[int],
    incumbent: dict[int, int],
    solver: cp_model.CpSolver,
    objective: cp_model.LinearExprT | None,
) -> VariableValues | None:
    """``solve_window`` from an incumbent, as a model of only the free workloads' variables
    (``window_model``)."""
    state = WindowState(pm, {var.index: incumbent[var.index] for var in variables})
    solved = state.solve(free, solver, objective)
    if solved is None:
        return None
    state.accept(*solved)
    return VariableValues(state.values)


def window_model(
    pm: PlacementModel,
    free: set[int],
    incumbent: dict[int, int],
    objective: cp_model.LinearExprT | None,
) -> tuple[cp_model.CpModel, list[int]]:
    """The model of only the free workloads' variables (their proto indices, in the order of
    the window model's variables, come with it): every row that holds one of them, with the
    other variables' ``incumbent`` values moved into its bounds, hinted at the incumbent. The
    same optimum as the full model with the other counts fixed, except that the other
    workloads' slacks and counters also stay at their incumbent values. Presolving the full
    model for every window costs what the whole model holds, whatever the window's size; this
    model costs what the window holds (many windows from one incumbent: ``WindowState``)."""
    return WindowState(pm, incumbent).model(free, objective)


def evaluate(expression: cp_model.LinearExprT, assignment: VariableValues) -> int:
    """The value of a linear expression of the model's variables at ``assignment``."""
    return flat_terms(expression).value(assignment.values)


def drop_spare_replicas(pm: PlacementModel, start: VariableValues) -> VariableValues:
    """``start`` with replicas removed, most expensive first, wherever every row of the model
    (as it is now, stage rows included, with every other variable as it is) still holds.

    The unmet stage has no reason to place few replicas, and its solution costs several times
    the optimum on large grids; windows that run out of time before a full pass leave that
    waste where they did not reach. Trimming first is cheap and leaves less to do.
    """
    return VariableValues(drop_spare(pm, start.values, _dearest_first(pm)))


_DEAREST_FIRST: dict[int, list[tuple[int, int]]] = {}  # by id() of a live PlacementModel


def _dearest_first(pm: PlacementModel) -> list[tuple[int, int]]:
    """The replica variables (proto index, lower bound), most expensive first, ties by option
    index; read once per model (a stage trims its start several times)."""
    listed = _DEAREST_FIRST.get(id(pm))
    if listed is None:
        variables = pm.model.proto.variables
        order = sorted(pm.problem.options, key=lambda o: (-o.cost_per_hour, o.index))
        refs = [pm.x[option.index].index for option in order]
        listed = _DEAREST_FIRST[id(pm)] = [(r, variables[r].domain[0]) for r in refs]
        weakref.finalize(pm, _DEAREST_FIRST.pop, id(pm), None)
    return listed


def unsettled_workloads(pm: PlacementModel, counts: dict[int, int]) -> set[int]:
    """Workloads that cannot keep ``counts`` (replicas per option index) as they are: those with
    replicas in a constraint family row that the counts break (with every slack at 0: demand
    not covered, replicas short of the minimum), or, for a broken row none of whose options has
    replicas, every workload in it. Rows of the stages (``stage[...]``) are not looked at."""
    families = {rule.id for rule in MODEL_RULES}
    workload_of = {pm.x[o.index].index: o.workload for o in pm.problem.options}
    value = {pm.x[o].index: n for o, n in counts.items()}
    unsettled: set[int] = set()
    for constraint in pm.model.proto.constraints:
        if not constraint.has_linear() or constraint.name.split("[")[0] not in families:
            continue
        linear = constraint.linear
        refs = [ref for ref in linear.vars if ref in workload_of]
        total = sum(
            coeff * value.get(ref, 0) for ref, coeff in zip(linear.vars, linear.coeffs, strict=True)
        )
        domain = list(linear.domain)  # (the proto's repeated field does not index from the end)
        low, high = domain[0], domain[-1]
        if low <= total <= high:
            continue
        holding = {workload_of[ref] for ref in refs if value.get(ref, 0) > 0}
        unsettled |= holding or {workload_of[ref] for ref in refs}
    return unsettled


def _options_by_workload(pm: PlacementModel) -> dict[int, list[int]]:
    by_workload: dict[int, list[int]] = {}
    for option in pm.problem.options:
        by_workload.setdefault(option.workload, []).append(option.index)
    return by_workload
