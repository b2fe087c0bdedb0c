"""Window search (windows.py): on a model switched into it, every stage after the first is
improved window by window; plans stay valid and never cost more than their starting point."""

from __future__ import annotations

import math

import pytest
from ortools.sat.python import cp_model

from gridplace.planner.baselines import greedy
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.model import build_model
from gridplace.planner.objectives import COST_SCALE
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import PlanResult, Strategy, make_plan, plan_problem
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import all_variables
from gridplace.planner.windows import VariableValues, evaluate, solve_window
from gridplace.specs import InferenceWorkload, Node, PlacementPlan, builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import node, workload
from tests.planner.test_compile_equivalence import _grid, _latency
from tests.planner.test_model_overhead import _model as binding_model

# window_min_options=0 switches every model into window search; 4 workloads per window.
WINDOWED = SolverSettings(time_limit_s=6, window_min_options=0, window_workloads=4)
PLAIN = SolverSettings(time_limit_s=6)


def _plan(
    nodes: list[Node],
    workloads: list[InferenceWorkload],
    settings: SolverSettings,
    previous: PlacementPlan | None = None,
) -> PlanResult:
    inputs = PlannerInputs(nodes, workloads, builtin_catalog(), previous=previous)
    result = make_plan(inputs, fake_predictor, _latency(nodes), Strategy.CPSAT, settings)
    assert validate_plan(result.problem, result.plan) == []
    return result


def test_windows_improve_the_cost_stage_and_the_plan_is_valid() -> None:
    nodes, workloads = _grid(60, 12, 7)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    windowed = solve_problem(problem, WINDOWED)
    plain = solve_problem(problem, PLAIN)
    cost, plain_cost = windowed.stage("cost"), plain.stage("cost")
    assert cost is not None and plain_cost is not None
    assert cost.windows > 0
    assert windowed.stages[0].objective == plain.stages[0].objective  # same unmet demand
    greedy_cost = sum(problem.options[o].cost_per_hour * n for o, n in greedy(problem).items())
    assert cost.objective / COST_SCALE <= greedy_cost + 1e-6
    # Never below the proven optimum of the whole model (the plain solve proves it here).
    assert plain_cost.status == "OPTIMAL"
    assert cost.objective >= plain_cost.objective
    assert cost.bound <= plain_cost.objective
    assert validate_plan(problem, plan_problem(problem, Strategy.CPSAT, WINDOWED)) == []


def test_a_windowed_replan_keeps_the_survivors_in_place() -> None:
    nodes, workloads = _grid(60, 12, 8)
    first = _plan(nodes, workloads, WINDOWED)
    used = sorted({a.node for a in first.plan.spec.assignments})
    survivors = [n for n in nodes if n.name != used[0]]
    second = _plan(survivors, workloads, WINDOWED, previous=first.plan)
    before = {(a.workload, a.node, tuple(a.gpus)) for a in first.plan.spec.assignments}
    after = {(a.workload, a.node, tuple(a.gpus)) for a in second.plan.spec.assignments}
    kept = {h for h in before if h[1] != used[0]}
    assert len(kept - after) <= len(kept) // 20, f"moved needlessly: {kept - after}"


def _first_and_replan() -> tuple[PlanResult, Problem]:
    """A windowed first plan and the problem of its replan after its first node vanished."""
    nodes, workloads = _grid(60, 12, 9)
    first = _plan(nodes, workloads, WINDOWED)
    survivors = [n for n in nodes if n.name != first.plan.spec.assignments[0].node]
    replan = compile_problem(
        PlannerInputs(survivors, workloads, builtin_catalog(), previous=first.plan),
        fake_predictor,
        _latency(survivors),
    )
    return first, replan


def test_a_windowed_replan_searches_the_moves_stage_by_windows() -> None:
    _, problem = _first_and_replan()
    solution = solve_problem(problem, WINDOWED)
    moves = solution.stage("moves")
    assert moves is not None and moves.windows > 0
    assert validate_plan(problem, plan_problem(problem, Strategy.CPSAT, WINDOWED)) == []


def test_unsettled_workloads_are_those_holding_replicas_in_a_broken_row() -> None:
    from gridplace.planner.windows import VariableValues, evaluate, unsettled_workloads

    nodes = [node("a", count=1, price=1.0), node("b", count=1, price=1.0, provider="p-a")]
    demands = [workload("w0", rps=0.5), workload("w1", rps=0.5)]
    problem = compile_problem(
        PlannerInputs(nodes, demands, builtin_catalog(), headroom=0.0),
        fake_predictor,
        _latency(nodes),
    )
    pm = build_model(problem)
    whole = {o.workload: o.index for o in problem.options if o.share == 1}
    pool_gpus = sum(p.node_count * p.gpus_per_node for p in problem.pools)
    fitting = {whole[0]: 1}
    assert unsettled_workloads(pm, fitting) == {1}  # w1 has no replica: its demand is unmet
    assert unsettled_workloads(pm, {whole[0]: 1, whole[1]: 1}) == set()
    crowded = {whole[0]: pool_gpus, whole[1]: 1}  # more whole-GPU replicas than GPUs
    assert unsettled_workloads(pm, crowded) == {0, 1}
    values = {var.index: 0 for var in [*pm.x.values(), *pm.unmet.values(), *pm.short.values()]}
    values[pm.x[whole[0]].index] = 2
    cost = dict(pm.objectives)["cost"]
    assert evaluate(cost, VariableValues(values)) == 2 * math.ceil(
        problem.options[whole[0]].cost_per_hour * COST_SCALE
    )


def test_dropping_spare_replicas_keeps_every_row_and_never_costs_more() -> None:
    from ortools.sat.python import cp_model

    from gridplace.planner.windows import VariableValues, drop_spare_replicas, evaluate

    nodes, workloads = _grid(40, 6, 10)
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    pm = build_model(problem)
    for literal in pm.enforce.values():
        pm.model.add(literal == 1)
    variables = [*pm.x.values(), *pm.unmet.values(), *pm.short.values()]
    # A wasteful but valid start: every option at its largest count that still packs.
    pm.model.minimize(-cp_model.LinearExpr.sum(list(pm.x.values())))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 5
    assert solver.solve(pm.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    start = VariableValues({var.index: solver.value(var) for var in variables})
    trimmed = drop_spare_replicas(pm, start)
    cost = dict(pm.objectives)["cost"]
    assert evaluate(cost, trimmed) < evaluate(cost, start)
    check = pm.model.clone()
    for var in variables:
        check.add(check.get_int_var_from_proto_index(var.index) == trimmed.value(var))
    assert cp_model.CpSolver().solve(check) in (cp_model.OPTIMAL, cp_model.FEASIBLE)


def test_a_small_window_reaches_the_optimum_of_the_full_model_with_the_rest_fixed() -> None:
    # The same windows solved two ways: as a model of the free workloads alone (from a whole
    # incumbent) and as the full model with the other counts fixed (from counts only). With
    # failover rows on half the workloads, so every kind of variable and row is in play.
    pm = binding_model()  # demand that makes pools binding
    assert pm.uncovered and pm.worst_loss  # failover rows are in the model
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    pm.model.minimize(unmet)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(pm.model) == cp_model.OPTIMAL
    pm.model.add(unmet <= round(solver.objective_value))
    pm.model.minimize(cost)
    variables = all_variables(pm)
    incumbent = {var.index: solver.value(var) for var in variables}
    counts = {option: solver.value(var) for option, var in pm.x.items()}
    checked = 0
    for free in ({0, 1}, {2, 3, 4}, {5}, {6, 7}):
        small = solve_window(pm, variables, counts, free, incumbent, _window_solver())
        full = solve_window(
            pm,
            variables,
            counts,
            free,
            {pm.x[o].index: n for o, n in counts.items()},
            _window_solver(),
        )
        assert small is not None and full is not None
        assert evaluate(cost, small) == evaluate(cost, full)
        assert evaluate(cost, small) <= evaluate(cost, VariableValues(incumbent))
        assert evaluate(unmet, small) <= round(solver.objective_value)
        checked += 1
    assert checked == 4


def _window_solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = 20
    return solver


def test_a_large_replans_windows_are_charged_their_build_and_a_first_plans_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridplace.planner import stages
    from gridplace.planner.work import WorkClock

    first, replan = _first_and_replan()
    build_s, added = 0.0123, []
    monkeypatch.setattr(stages, "REPLAN_WINDOW_BUILD_S", build_s)
    real_add = WorkClock.add

    def add(clock: WorkClock, spent_s: float) -> None:
        added.append(spent_s)
        real_add(clock, spent_s)

    monkeypatch.setattr(WorkClock, "add", add)
    solve_problem(first.problem, WINDOWED)
    assert build_s not in added  # a first plan's windows: their solves' work only
    solve_problem(replan, WINDOWED)
    assert added.count(build_s) > 0  # a replan's: each window's build too
