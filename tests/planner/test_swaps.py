"""The cost-aware repair of a stage's start (``swaps.cheaper_swaps``) and a large first plan's
cost stage, which starts from it (``cost_windows.small_cost_windows``)."""

from __future__ import annotations

from typing import Any

import pytest
from ortools.sat.python import cp_model

from gridplace.planner import cost_windows, stages
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.cost_windows import SMALL_WINDOW_S, small_cost_windows
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import all_variables
from gridplace.planner.swaps import cheaper_swaps
from gridplace.planner.windows import WINDOW_TIME_LIMIT_S, VariableValues, evaluate
from gridplace.planner.work import MIN_CHARGE_S, SMALL_WINDOW_CHARGE_S, WorkClock
from gridplace.specs import builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import node, workload
from tests.planner.test_compile_equivalence import _grid, _latency
from tests.planner.test_failover_start import _n_plus_one
from tests.planner.test_model_overhead import _solve as solved


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


def _small_windows_at(
    monkeypatch: pytest.MonkeyPatch, time_limit_s: float
) -> tuple[list[tuple[int, float, float]], int]:
    """Each window search of a large first plan on a small grid (workloads per window, least
    charge, window limit) and how many times the repair ran."""
    nodes, workloads = _grid(60, 12, 7)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    calls: list[tuple[int, float, float]] = []
    repaired: list[int] = []
    search, swaps = cost_windows.search_windows, cost_windows.cheaper_swaps

    def spy_search(pm: PlacementModel, *args: Any, **kwargs: Any) -> Any:
        goal = args[1]
        calls.append((kwargs["window_workloads"], goal.min_charge_s, goal.window_s))
        return search(pm, *args, **kwargs)

    def spy_swaps(pm: PlacementModel, start: VariableValues) -> VariableValues:
        repaired.append(1)
        return swaps(pm, start)

    monkeypatch.setattr(cost_windows, "search_windows", spy_search)
    monkeypatch.setattr(stages, "search_windows", spy_search)
    monkeypatch.setattr(cost_windows, "cheaper_swaps", spy_swaps)
    monkeypatch.setattr(cost_windows, "COST_WINDOW_WORKLOADS", 3)
    large = SolverSettings(time_limit_s=time_limit_s, window_min_options=0, window_workloads=8)
    assert solve_problem(problem, large).stage("cost") is not None
    return calls, len(repaired)


@pytest.mark.parametrize("time_limit_s", [2.0, 6.0])
def test_a_large_first_plans_cost_stage_is_small_windows_from_the_repair_at_any_length(
    monkeypatch: pytest.MonkeyPatch, time_limit_s: float
) -> None:
    # At 6 s the cost stage has ~5 s: before, more than 3 s skipped the small windows for the
    # settings' (a dearer plan at 8.5 reference s than at 7.5 at 10,000 x 1,000).
    calls, repairs = _small_windows_at(monkeypatch, time_limit_s)
    assert repairs == 1
    # The cost stage: small windows, each with a short limit, pass after pass until its
    # deadline; then the preference stage's windows (the settings').
    assert calls[0] == (3, SMALL_WINDOW_CHARGE_S, SMALL_WINDOW_S)
    assert calls[1:] == [(8, MIN_CHARGE_S, WINDOW_TIME_LIMIT_S)] * (len(calls) - 1)


def test_small_cost_windows_run_pass_after_pass_and_a_later_deadline_never_ends_dearer() -> None:
    nodes, workloads = _grid(60, 12, 7)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    pm = _model(problem)
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    start = VariableValues(solved(pm, unmet))
    pm.model.add(unmet <= evaluate(unmet, start))
    settings = SolverSettings(window_workloads=3)
    ends = []
    for deadline_s in (0.5, 1.0, 3.0):
        clock = WorkClock()
        ends.append(small_cost_windows(pm, settings, clock, cost, start, (deadline_s, 1)))
    windows = [end.windows for end in ends]
    assert windows == sorted(windows) and windows[-1] > len(problem.workloads) / 3  # > 1 pass
    objectives = [end.objective for end in ends]
    assert objectives == sorted(objectives, reverse=True)
    assert objectives[-1] == evaluate(cost, ends[-1].incumbent) <= evaluate(cost, start)


def test_on_an_n_plus_one_model_replicas_move_into_empty_options_with_their_counters() -> None:
    # With ``per_node`` and ``worst_loss`` held as the start has them, no replica could move
    # into an option the start left empty (its per-node row caps it at 0).
    problem = _n_plus_one(20, 10, 2, 6.0)  # room for N+1
    pm = _model(problem)
    assert pm.per_node and pm.worst_loss
    start = _tight_counters(pm, _dearest_start(pm))
    repaired = cheaper_swaps(pm, start)
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    assert evaluate(unmet, repaired) == evaluate(unmet, start)  # N+1 kept as it was
    assert evaluate(cost, repaired) < evaluate(cost, start)
    assert _holds(pm, repaired)  # every failover row too, with the counters the moves set
    refs = [pm.x[option].index for option in pm.per_node]  # options that can fail over
    assert any(start.values[r] == 0 < repaired.values[r] for r in refs)


def _tight_counters(pm: PlacementModel, start: VariableValues) -> VariableValues:
    """``start`` with its replica counts and slacks, and the least counters they need."""
    model = pm.model.clone()
    counters = [*pm.per_node.values(), *pm.worst_loss.values()]
    held = {var.index for var in counters}
    for var in all_variables(pm):
        if var.index not in held:
            model.add(model.get_int_var_from_proto_index(var.index) == start.value(var))
    model.minimize(sum(model.get_int_var_from_proto_index(var.index) for var in counters))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(model) == cp_model.OPTIMAL
    values = dict(start.values)
    values.update({var.index: solver.value(var) for var in counters})
    return VariableValues(values)


def test_a_large_n_plus_one_cost_stage_starts_from_the_repair(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _n_plus_one(20, 10, 2, 6.0)
    found: list[tuple[int, int]] = []
    swaps = cost_windows.cheaper_swaps

    def spy(pm: PlacementModel, start: VariableValues) -> VariableValues:
        repaired = swaps(pm, start)
        cost = pm.objectives[1][1]
        found.append((evaluate(cost, start), evaluate(cost, repaired)))
        return repaired

    monkeypatch.setattr(cost_windows, "cheaper_swaps", spy)
    large = SolverSettings(time_limit_s=3, window_min_options=0, window_workloads=4)
    solution = solve_problem(problem, large)
    assert len(found) == 1  # once, for the cost stage
    before, after = found[0]
    assert after < before  # the failover rows left it cheaper moves
    cost = solution.stage("cost")
    assert cost is not None and cost.objective <= after


def test_on_an_n_plus_one_model_dear_replicas_give_way_to_more_cheaper_ones() -> None:
    # One for one keeps each workload's number of replicas; where two dear replicas cost more
    # than three cheaper ones that cover the same (N+1 included), the three replace them.
    problem = _n_plus_one(20, 10, 2, 6.0)
    pm = _model(problem)
    start = _tight_counters(pm, _dearest_start(pm))
    repaired = cheaper_swaps(pm, start)
    assert _holds(pm, repaired)
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    assert evaluate(unmet, repaired) == evaluate(unmet, start)
    assert evaluate(cost, repaired) < evaluate(cost, start)
    grew = []
    for w in range(len(problem.workloads)):
        refs = [pm.x[o.index].index for o in problem.options_of(w)]
        before = sum(start.values[r] for r in refs)
        after = sum(repaired.values[r] for r in refs)
        assert after >= before
        grew.append(after > before)
    assert any(grew)
    # The counters stay the least their replicas need (a move lowers the left option's first):
    # room for the moves after it.
    assert _tight_counters(pm, repaired).values == repaired.values
