"""The stage runner: each objective minimized in turn with the earlier stages' values fixed
(``<=`` the value found) and the previous stage's solution as a hint. On a large model
(``window_min_options``) each stage after the first first improves that hint window by window
(``windows.py``; a first plan's cost stage from a cost-aware repair: ``cost_windows.py``) and
only then runs the full-model solve, which proves the stage's bound, when the stage's time
leaves it enough for its root LP (``FULL_SOLVE_MIN_S``). A stage with nothing to minimize
(moves without a previous plan) is skipped. A replan's first stage breaks its ties by moves
(``moves.moves_tie_break``; its reported objective includes them), and the moves stage starts
from that stage's solution when it is within the cost tolerance. An infeasible first stage is
re-checked (a fresh solve with one worker) before anyone is told.
"""

from __future__ import annotations

import dataclasses
import time

from ortools.sat.python import cp_model

from gridplace.planner.cost_windows import repaired, small_cost_windows
from gridplace.planner.failover_windows import shortfall_windows
from gridplace.planner.model import PlacementModel
from gridplace.planner.moves import (
    KEEP_PREVIOUS_LIMIT_S,
    fewer_moves_within_cost,
    goal,
    keep_previous,
    moves_tie_break,
)
from gridplace.planner.problem import Problem
from gridplace.planner.solver_settings import (
    Progress,
    Solution,
    SolverSettings,
    StageResult,
    all_variables,
    make_solver,
    record,
)
from gridplace.planner.windows import (
    VariableValues,
    WindowSearch,
    drop_spare_replicas,
    search_windows,
)
from gridplace.planner.work import REPLAN_WINDOW_BUILD_S, SMALL_WINDOW_CHARGE_S, WorkClock

# Share of the time limit each stage gets (unmet demand, cost, moves, preference).
STAGE_SHARES = (0.25, 0.5, 0.1, 0.15)
# The same for a first plan of a large model (``SolverSettings.window_min_options``): its unmet
# stage is one full-model solve that needs its presolve and root LP before it searches: at 0.25
# of 10 reference seconds it never left greedy's start, and at high utilization it proves the
# optimum after 4.76 s, which 0.7 of a 7-second limit covers (docs/solver-tuning.md); its
# preference stage gets little (a few windows). Time a stage does not use (an optimum proved
# early) passes on to the others.
LARGE_STAGE_SHARES = (0.7, 0.25, 0.1, 0.05)
# The same for a replan of a large model: its windows need a pass over the moved workloads in
# the moves stage, and the cost stage only has to come within the move tolerance: each cost
# window moves replicas that the moves stage must take back (at high utilization 0.4 / 0.25 moved
# 25.6% of the replicas needlessly, 0.25 / 0.4 3.7%, 0.15 / 0.5 1.1% at a dearer cost stage:
# docs/solver-tuning.md).
REPLAN_WINDOW_STAGE_SHARES = (0.25, 0.25, 0.4, 0.1)
# On a large model, the share of the cost stage's time spent improving its incumbent window by
# window (windows.py) before the full-model solve, which proves the bound and polishes. The
# full-model solve needs its time: on the largest grids its root LP alone takes seconds.
# The stages after it spend all their time in windows (their bounds are not reported).
WINDOW_SHARE = 0.6
# A model with failover rows: its cost stage gives windows this share (its full-model solve
# never improved on them; it still proves a bound), in windows of at most this many workloads:
# smaller windows with more of the time came closest to the optimum (docs/solver-tuning.md).
FAILOVER_WINDOW_SHARE = 0.85
FAILOVER_WINDOW_WORKLOADS = 5
# A large model's cost stage runs its full-model solve only when that solve gets at least this
# much (reference seconds): with less, its root LP does not finish, so it neither improves on the
# windows nor proves a bound, and windows get the stage's whole budget.
FULL_SOLVE_MIN_S = 5.0


Hint = list[tuple[cp_model.IntVar, int]]


class StageRunner:
    """Runs the stages of one solve; ``run`` returns the ``Solution``. ``hinted``: the solver
    that checked the start (``hints.choose_start``), holding every variable's value; ``values``: the
    replica counts to hint when no full hint exists."""

    def __init__(
        self,
        pm: PlacementModel,
        settings: SolverSettings,
        clock: WorkClock,
        start: tuple[dict[int, int], cp_model.CpSolver | None],
        started: float,
        progress: Progress | None = None,
    ) -> None:
        self.pm, self.problem, self.settings, self.clock = pm, pm.problem, settings, clock
        self.values, self.hinted = start
        self.started = started
        self.progress = progress
        self.solution = Solution(status="UNKNOWN")
        self.skipped = False
        # A first plan's valid hint is hinted in full (slacks and failover counts too): CP-SAT
        # then starts from it instead of completing a partial hint its own way. A replan hints
        # only the previous counts: hinted in full, its first stage settled farther from the
        # previous plan (bench/solver_scale.py measures the replicas moved).
        self.full_hint: Hint = (
            self._hint_of(self.hinted)
            if self.hinted is not None and not pm.problem.previous
            else []
        )
        self.windows = len(pm.problem.options) >= settings.window_min_options or bool(pm.uncovered)
        self.window_workloads = settings.window_workloads
        if pm.uncovered:
            quarter = max(2, len(pm.problem.workloads) // 4)
            self.window_workloads = min(self.window_workloads, FAILOVER_WINDOW_WORKLOADS, quarter)
        self.large = len(pm.problem.options) >= settings.window_min_options
        shares = STAGE_SHARES
        if self.windows and pm.moved:
            shares = REPLAN_WINDOW_STAGE_SHARES
        elif self.large:
            shares = LARGE_STAGE_SHARES
        if not pm.weighs_moves:  # the moves stage is skipped: its share goes to the others
            shares = (shares[0], shares[1], 0.0, shares[3])
        self.shares = shares
        self.stages = pm.objectives[: max(1, min(settings.stages, len(pm.objectives)))]
        # A replan's first-stage solution: the fewest moves the search found at that stage's
        # optimum, where the moves stage may start (``moves.fewer_moves_within_cost``).
        self.first_stage: VariableValues | None = None

    def run(self) -> Solution:
        for number, (name, objective) in enumerate(self.stages):
            if self.progress:
                self.progress(f"stage {number + 1}/{len(self.stages)}: minimizing {name}")
            if self._stage(number, name, objective):
                return self._timed()
            if self.skipped:
                break  # keep the previous stage's solution
        optimal = not self.skipped and all(s.status == "OPTIMAL" for s in self.solution.stages)
        self.solution.status = "OPTIMAL" if optimal else "FEASIBLE"
        return self._timed()

    def _timed(self) -> Solution:
        self.solution.wall_s = time.perf_counter() - self.started
        self.solution.work_s = self.clock.spent_s
        return self.solution

    def _hint_of(self, found: cp_model.CpSolver | VariableValues) -> Hint:
        return [(var, found.value(var)) for var in all_variables(self.pm)]

    def _fix(self, name: str, objective: cp_model.LinearExprT, value: int) -> None:
        """Fix this stage's optimum (as found) for the stages that follow."""
        bound = _fixed_value(name, value, self.problem, self.settings)
        self.pm.model.add(objective <= bound).with_name(f"stage[{name}]")

    def _stage(self, number: int, name: str, objective: cp_model.LinearExprT) -> bool:
        """Run one stage; True when the solve ends here (the first stage found nothing)."""
        pm, hinted = self.pm, self.hinted
        if name == "moves" and not pm.weighs_moves:
            # No previous replica has an option, no node is warm: the objective is 0.
            self.solution.stages.append(StageResult(name, "OPTIMAL", 0.0, 0.0, 0.0))
            return False
        if number == 0 and hinted is not None and round(hinted.objective_value) == 0:
            # The hint already serves all demand: nothing can beat zero, skip the search.
            self.solution.first_solution_s = time.perf_counter() - self.started
            self.solution.stages.append(StageResult(name, "OPTIMAL", 0.0, 0.0, 0.0))
            self._take_hint(name, objective, 0)
            return False
        if name == "moves" and self.first_stage is not None and self.full_hint:
            incumbent = VariableValues({var.index: value for var, value in self.full_hint})
            if fewer_moves_within_cost(pm, self.first_stage, incumbent):
                self.full_hint = self._hint_of(self.first_stage)
        # A replan's first stage breaks ties by moves (``moves_tie_break``); the row it leaves
        # for later stages still holds only the stage's own objective.
        pm.model.minimize(moves_tie_break(pm, objective) if number == 0 else objective)
        pm.model.clear_hints()  # type: ignore[no-untyped-call]
        # Time a stage does not use passes on to the stages after it.
        left_s = self.settings.time_limit_s - self.clock.spent_s
        budget_s = left_s * self.shares[number] / sum(self.shares[number : len(self.stages)])
        stage_started, stage_work = time.perf_counter(), self.clock.spent_s
        search = None
        if number == 0 and self.large and pm.uncovered and self.full_hint and not pm.moved:
            self._shortfall_windows(name, objective, budget_s, stage_started)
            return False
        if self.windows and self.full_hint and number > 0:
            search, share = self._windows(number, name, objective, budget_s, stage_work)
            if share >= 1.0:
                self._keep_windows(name, objective, search, "FEASIBLE", 0.0, stage_started)
                return False
        return self._solve_full(
            number, name, objective, budget_s, (stage_started, stage_work), search
        )

    def _shortfall_windows(
        self, name: str, objective: cp_model.LinearExprT, budget_s: float, stage_started: float
    ) -> None:
        """A large first plan with failover rows: the first stage is windows around the
        workloads that fall short (``failover_windows``), all of its time; its full-model solve
        found nothing better than the start (docs/solver-tuning.md) and proves no useful bound."""
        self.solution.first_solution_s = time.perf_counter() - self.started
        settings = self.settings
        search = shortfall_windows(
            self.pm,
            VariableValues({var.index: value for var, value in self.full_hint}),
            deadline=self.clock.spent_s + budget_s,
            clock=self.clock,
            random_seed=settings.random_seed,
            make_solver=lambda limit_s: make_solver(settings, limit_s),
        )
        self.full_hint = self._hint_of(search.incumbent)
        self._keep_windows(name, objective, search, "FEASIBLE", 0.0, stage_started)

    def _take_hint(self, name: str, objective: cp_model.LinearExprT, bound: int) -> None:
        """The checked start stands for this stage (its objective fixed at ``bound``)."""
        assert self.hinted is not None
        record(self.pm, self.hinted, self.solution)
        self.full_hint = self._hint_of(self.hinted)
        if self.pm.moved:
            self.first_stage = VariableValues({var.index: value for var, value in self.full_hint})
        self.values = {index: self.hinted.value(var) for index, var in self.pm.x.items()}
        self.pm.model.add(objective <= bound).with_name(f"stage[{name}]")

    def _windows(
        self,
        number: int,
        name: str,
        objective: cp_model.LinearExprT,
        budget_s: float,
        stage_work: float,
    ) -> tuple[WindowSearch, float]:
        """Improve the stage's start window by window; the search and the share of the stage's
        time it had. The first stage searches the full model from its (full) hint. Only a first
        plan's cost stage proves its bound; later stages, and the cost stage of a replan (it only
        sets what the move tolerance is measured from, and at high utilization one pass of
        windows takes longer than its share), give windows all their time."""
        pm = self.pm
        share = 1.0  # a replan's cost stage, and the stages after the cost stage
        if name == "cost" and not pm.moved:
            share = FAILOVER_WINDOW_SHARE if pm.uncovered else WINDOW_SHARE
            if self.large and budget_s * (1 - share) < FULL_SOLVE_MIN_S:
                share = 1.0
        deadline = stage_work + budget_s * share
        start = VariableValues({var.index: value for var, value in self.full_hint})
        if name == "moves":
            limit_s = min(KEEP_PREVIOUS_LIMIT_S, (deadline - stage_work) / 2)
            start = keep_previous(pm, start, self.settings, limit_s, self.clock)
        else:
            start = drop_spare_replicas(pm, start)
        settings, seed = self.settings, self.settings.random_seed + number
        if name == "cost" and self.large and not pm.moved:
            start = repaired(pm, start)  # (N+1 too: ``swaps`` moves the failover counters)
        if name == "cost" and self.large and not pm.moved and not pm.uncovered:
            until = (deadline, seed)
            search = small_cost_windows(pm, settings, self.clock, objective, start, until)
        else:
            window_goal = goal(pm, name, objective)
            if self.large and pm.uncovered and not pm.moved:
                # N+1's small windows, charged what building one costs (``work``): at 0.02 the
                # cost stage ran ~2 CPU s per reference s (docs/solver-tuning.md)
                window_goal = dataclasses.replace(window_goal, min_charge_s=SMALL_WINDOW_CHARGE_S)
            elif self.large and pm.moved:  # a replan's windows, charged what one costs (``work``)
                window_goal = dataclasses.replace(window_goal, build_charge_s=REPLAN_WINDOW_BUILD_S)
            search = search_windows(
                pm,
                all_variables(pm),
                window_goal,
                start,
                deadline=deadline,
                clock=self.clock,
                window_workloads=self.window_workloads,
                random_seed=seed,
                make_solver=lambda limit_s: make_solver(settings, limit_s),
            )
        self.full_hint = self._hint_of(search.incumbent)
        return search, share

    def _keep_windows(
        self,
        name: str,
        objective: cp_model.LinearExprT,
        search: WindowSearch,
        status: str,
        bound: float,
        stage_started: float,
    ) -> None:
        """The windows' incumbent is this stage's solution."""
        record(self.pm, search.incumbent, self.solution)
        self.solution.stages.append(
            StageResult(
                name,
                status,
                float(search.objective),
                bound,
                time.perf_counter() - stage_started,
                search.windows,
            )
        )
        self.values = {index: search.incumbent.value(var) for index, var in self.pm.x.items()}
        self._fix(name, objective, search.objective)

    def _solve_full(
        self,
        number: int,
        name: str,
        objective: cp_model.LinearExprT,
        budget_s: float,
        began: tuple[float, float],
        search: WindowSearch | None,
    ) -> bool:
        """The full-model solve of a stage, from the last solution; True when the solve ends.
        ``began``: when the stage started, wall clock and deterministic work."""
        pm = self.pm
        stage_started, stage_work = began
        if self.full_hint:
            # Every variable of the last stage's solution: it is feasible for this stage too.
            for var, value in self.full_hint:
                pm.model.add_hint(var, value)
        else:
            for index, var in pm.x.items():
                pm.model.add_hint(var, self.values.get(index, 0))
        solver = make_solver(self.settings, budget_s - (self.clock.spent_s - stage_work))
        # A large model's first stage (unmet demand) is solved core-based: its LP bound is close
        # to the optimum, but the LP-guided search left its incumbent at 2.6x the optimum after 5
        # reference s at high utilization, where the core-based search proves the optimum in 4.8
        # s (2.6 s at moderate), from greedy's start as from any other (docs/solver-tuning.md).
        solver.parameters.optimize_with_core = number == 0 and self.large
        if number == 0:  # a callback slows the search: only the first stage times its start
            first = _FirstSolution(self.started)
            status = solver.solve(pm.model, first)
            self.solution.first_solution_s = first.at_s
        else:
            status = solver.solve(pm.model)
        self.clock.charge(solver)
        found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        if search is not None and (not found or round(solver.objective_value) > search.objective):
            # The full-model solve found nothing better in its time: the windows' incumbent
            # stands, with the bound the solver proved (0 when it proved none).
            bound = min(float(search.objective), max(0.0, solver.best_objective_bound))
            if status == cp_model.INFEASIBLE:  # cannot be: the incumbent is feasible
                bound = 0.0
            proved = "OPTIMAL" if bound >= search.objective else "FEASIBLE"
            self._keep_windows(name, objective, search, proved, bound, stage_started)
            return False
        hinted = self.hinted
        if not found or (
            number == 0
            and hinted is not None
            # (the hint is the previous plan in a replan: its tie-break adds no moves)
            and solver.objective_value > hinted.objective_value
        ):
            return self._nothing_better(number, name, objective, solver, status)
        self._accept(number, name, objective, solver, status, (stage_started, search))
        return False

    def _nothing_better(
        self,
        number: int,
        name: str,
        objective: cp_model.LinearExprT,
        solver: cp_model.CpSolver,
        status: cp_model.CpSolverStatus,
    ) -> bool:
        """A stage that found nothing (better than the start, for the first stage)."""
        status_name = solver.status_name(status)
        if number == 0 and status == cp_model.INFEASIBLE:
            status_name = _recheck_infeasible(self.pm, self.settings, self.clock)
        self.solution.status = status_name
        if number == 0 and self.hinted is not None:
            # Nothing of its own in time that beats the (valid) hint: the hint stands for
            # this stage, and the next stages improve on it.
            hinted = self.hinted
            self.solution.stages.append(
                StageResult(name, "FEASIBLE", hinted.objective_value, 0.0, 0.0)
            )
            self._take_hint(name, objective, round(hinted.objective_value))
            return False
        if number == 0:
            return True
        self.skipped = True
        return False

    def _accept(
        self,
        number: int,
        name: str,
        objective: cp_model.LinearExprT,
        solver: cp_model.CpSolver,
        status: cp_model.CpSolverStatus,
        began: tuple[float, WindowSearch | None],
    ) -> None:
        """The full-model solve's solution is this stage's (``began``: when the stage started
        and its window search, if any)."""
        pm = self.pm
        stage_started, search = began
        value = round(solver.value(objective))
        self.solution.stages.append(
            StageResult(
                name=name,
                status=solver.status_name(status),
                objective=solver.objective_value,
                bound=solver.best_objective_bound,
                wall_s=time.perf_counter() - stage_started,
                windows=search.windows if search is not None else 0,
            )
        )
        self.values = {index: solver.value(var) for index, var in pm.x.items()}
        self.full_hint = self._hint_of(solver)
        if number == 0 and pm.moved:
            self.first_stage = drop_spare_replicas(
                pm, VariableValues({var.index: value for var, value in self.full_hint})
            )
        record(pm, solver, self.solution)
        self._fix(name, objective, value)


def _fixed_value(name: str, value: int, problem: Problem, settings: SolverSettings) -> int:
    """What later stages must keep this stage's objective within: its value as found, and with
    a previous plan the cost only to within ``move_tolerance`` (moves are priced in it)."""
    if name == "cost" and problem.previous:
        return int(value * (1 + settings.move_tolerance))
    return value


class _FirstSolution(cp_model.CpSolverSolutionCallback):
    """Records when the first solution of a solve arrived."""

    def __init__(self, started: float) -> None:
        super().__init__()
        self.started = started
        self.at_s: float | None = None

    def on_solution_callback(self) -> None:
        if self.at_s is None:
            self.at_s = time.perf_counter() - self.started


def _recheck_infeasible(pm: PlacementModel, settings: SolverSettings, clock: WorkClock) -> str:
    """Solve again with one worker and no objective; only a confirmed INFEASIBLE is reported."""
    pm.model.clear_objective()  # type: ignore[no-untyped-call]
    solver = make_solver(SolverSettings(num_workers=1, random_seed=settings.random_seed), 5.0)
    status = solver.solve(pm.model)
    clock.charge(solver)
    return solver.status_name(status)
