"""The cost-aware repair of a stage's start (``swaps.cheaper_swaps``) and a large first plan's
cost stage, which starts from it (``cost_windows.first_cost_pass``)."""

from __future__ import annotations

from typing import Any

import pytest
from ortools.sat.python import cp_model

from gridplace.planner import cost_windows, stages
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import all_variables
from gridplace.planner.swaps import cheaper_swaps
from gridplace.planner.windows import VariableValues, evaluate
from gridplace.planner.work import MIN_CHARGE_S, SMALL_WINDOW_CHARGE_S
from gridplace.specs import builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import node, workload
from tests.planner.test_compile_equivalence import _grid, _latency


def _model(problem: Problem) -> PlacementModel:
    pm = build_model(problem)
    for literal in pm.enforce.values():
        pm.model.add(literal == 1)
    return pm


def _holds(pm: PlacementModel, assignment: VariableValues) -> bool:
    check = pm.model.clone()
    for var in all_variables(pm):
        check.add(check.get_int_var_from_proto_index(var.index) == assignment.value(var))
    return cp_model.CpSolver().solve(check) in (cp_model.OPTIMAL, cp_model.FEASIBLE)


def _dearest_start(pm: PlacementModel) -> VariableValues:
    """The unmet optimum at its dearest (every row holds, cost maximized second)."""
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    pm.model.minimize(unmet)
    assert solver.solve(pm.model) == cp_model.OPTIMAL
    pm.model.add(unmet <= round(solver.objective_value))
    pm.model.minimize(-cost)
    assert solver.solve(pm.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return VariableValues({var.index: solver.value(var) for var in all_variables(pm)})


def test_replicas_move_to_cheaper_options_where_every_row_holds() -> None:
    nodes, workloads = _grid(40, 6, 10)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    pm = _model(problem)
    start = _dearest_start(pm)
    repaired = cheaper_swaps(pm, start)
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    assert evaluate(cost, repaired) < evaluate(cost, start)
    assert evaluate(unmet, repaired) == evaluate(unmet, start)  # slacks are left as they were
    assert _holds(pm, repaired)
    # Each workload keeps its number of replicas: one for one.
    for w in range(len(problem.workloads)):
        refs = [pm.x[o.index].index for o in problem.options_of(w)]
        assert sum(repaired.values[r] for r in refs) == sum(start.values[r] for r in refs)


def test_no_replica_moves_into_a_full_pool() -> None:
    # One workload on a dear node; the cheap node of the same GPU is taken by another workload
    # (it has nowhere else to go): the dear replica must stay.
    nodes = [node("cheap", price=0.2, count=1), node("dear", price=2.0, count=1)]
    demands = [workload("w0", rps=0.5), workload("w1", rps=0.5)]
    problem = compile_problem(
        PlannerInputs(nodes, demands, builtin_catalog(), headroom=0.0),
        fake_predictor,
        _latency(nodes),
    )
    pm = _model(problem)
    whole = [o for o in problem.options if o.share == 1]
    cheap = problem.pools[min(whole, key=lambda o: o.cost_per_hour).pool]
    values = {var.index: 0 for var in all_variables(pm)}
    for o in whole:
        on_cheap = problem.pools[o.pool] is cheap
        if (o.workload == 0 and on_cheap) or (o.workload == 1 and not on_cheap):
            values[pm.x[o.index].index] = 1
    start = VariableValues(values)
    assert _holds(pm, start)
    assert cheaper_swaps(pm, start) is start  # w1 cannot move: the cheap pool is full


def test_a_large_first_plan_searches_cost_by_small_windows_from_the_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes, workloads = _grid(60, 12, 7)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    calls: list[tuple[int, float]] = []
    repaired: list[int] = []
    search, swaps = cost_windows.search_windows, cost_windows.cheaper_swaps

    def spy_search(pm: PlacementModel, *args: Any, **kwargs: Any) -> Any:
        calls.append((kwargs["window_workloads"], args[1].min_charge_s))
        return search(pm, *args, **kwargs)

    def spy_swaps(pm: PlacementModel, start: VariableValues) -> VariableValues:
        repaired.append(1)
        return swaps(pm, start)

    monkeypatch.setattr(cost_windows, "search_windows", spy_search)
    monkeypatch.setattr(stages, "search_windows", spy_search)
    monkeypatch.setattr(cost_windows, "cheaper_swaps", spy_swaps)
    monkeypatch.setattr(cost_windows, "COST_WINDOW_WORKLOADS", 3)
    monkeypatch.setattr(stages, "FIRST_PASS_MAX_S", 100.0)  # the cost stage here has ~5 s
    large = SolverSettings(time_limit_s=6, window_min_options=0, window_workloads=8)
    solution = solve_problem(problem, large)
    assert solution.stage("cost") is not None
    assert repaired == [1]
    # The cost stage: one pass of small windows, then the settings' windows (and the
    # preference stage's).
    assert calls[0] == (3, SMALL_WINDOW_CHARGE_S)
    assert calls[1:] == [(8, MIN_CHARGE_S)] * (len(calls) - 1)
    assert len(calls) >= 2


def test_a_cost_stage_with_time_for_the_usual_windows_starts_them_from_the_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A longer limit must not give a dearer plan: with more than FIRST_PASS_MAX_S the stage
    # skips the small pass, but its usual windows still start from the repair.
    nodes, workloads = _grid(60, 12, 7)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    repaired: list[VariableValues] = []
    sizes: list[int] = []
    swaps, search = cost_windows.cheaper_swaps, stages.search_windows

    def spy_swaps(pm: PlacementModel, start: VariableValues) -> VariableValues:
        repaired.append(swaps(pm, start))
        return repaired[-1]

    def spy_search(pm: PlacementModel, *args: Any, **kwargs: Any) -> Any:
        sizes.append(kwargs["window_workloads"])
        return search(pm, *args, **kwargs)

    monkeypatch.setattr(cost_windows, "cheaper_swaps", spy_swaps)
    monkeypatch.setattr(stages, "search_windows", spy_search)
    monkeypatch.setattr(cost_windows, "search_windows", spy_search)
    large = SolverSettings(time_limit_s=6, window_min_options=0, window_workloads=8)
    assert solve_problem(problem, large).stage("cost") is not None
    assert len(repaired) == 1  # ~5 reference s for the cost stage: more than FIRST_PASS_MAX_S
    assert sizes and set(sizes) == {8}  # no pass of small windows
