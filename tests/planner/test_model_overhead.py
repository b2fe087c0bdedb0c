"""The planning process's own work around CP-SAT (objectives flattened once, rows read as arrays,
windows and trimming by arrays): the same models and the same answers as the term-by-term
construction they replace, which the tests here rebuild as their reference."""

from __future__ import annotations

import gc
import itertools
import random

import numpy as np
from ortools.sat.python import cp_model

from gridplace.planner import objectives
from gridplace.planner.baselines import _Grid
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import NodeSlots
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.rows import _read_since, model_rows, steps_within
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import all_variables
from gridplace.planner.window_state import WindowState, _shift
from gridplace.planner.windows import (
    VariableValues,
    drop_spare_replicas,
    evaluate,
    window_model,
)
from gridplace.specs import builtin_catalog
from gridplace.specs.workload import Redundancy
from tests.planner.fakes import fake_predictor
from tests.planner.test_compile_equivalence import _grid, _latency


def _model(n_plus_one: bool = True) -> PlacementModel:
    """A small model with failover rows on half the workloads, every family switched on."""
    nodes, workloads = _grid(40, 8, 11, rps_scale=3.0)
    if n_plus_one:
        redundancy = Redundancy(node_failures=1)
        workloads = [
            w.model_copy(update={"spec": w.spec.model_copy(update={"redundancy": redundancy})})
            if i % 2
            else w
            for i, w in enumerate(workloads)
        ]
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )
    pm = build_model(problem)
    for literal in pm.enforce.values():
        pm.model.add(literal == 1)
    return pm


def _solve(pm: PlacementModel, objective: cp_model.LinearExprT) -> dict[int, int]:
    pm.model.minimize(objective)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10
    assert solver.solve(pm.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    return {var.index: solver.value(var) for var in all_variables(pm)}


def _reference_window(
    pm: PlacementModel, free: set[int], incumbent: dict[int, int], objective: cp_model.LinearExpr
) -> cp_model.CpModel:
    """The window model built term by term from the proto, as windows.py built it before."""
    proto = pm.model.proto
    model = cp_model.CpModel()
    local = {}
    for ref, workload in pm.owners().items():
        if workload in free:
            domain = cp_model.Domain.from_flat_intervals(list(proto.variables[ref].domain))
            local[ref] = model.new_int_var_from_domain(domain, "")
    touched = sorted(
        index
        for index, constraint in enumerate(proto.constraints)
        if any(ref in local for ref in constraint.linear.vars)
    )
    for index in touched:
        linear = proto.constraints[index].linear
        fixed, terms = 0, []
        for ref, coeff in zip(linear.vars, linear.coeffs, strict=True):
            if ref in local:
                terms.append((local[ref], coeff))
            else:
                fixed += coeff * incumbent[ref]
        model.add_linear_expression_in_domain(
            cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms]),
            cp_model.Domain.from_flat_intervals([_shift(b, fixed) for b in linear.domain]),
        )
    scratch = cp_model.CpModel()
    scratch.minimize(objective)
    goal = scratch.proto.objective
    weights = [(local[r], c) for r, c in zip(goal.vars, goal.coeffs, strict=True) if r in local]
    model.minimize(
        cp_model.LinearExpr.weighted_sum([v for v, _ in weights], [c for _, c in weights])
    )
    for ref, var in local.items():
        model.add_hint(var, incumbent[ref])
    return model


def test_a_window_model_is_the_term_by_term_one_also_after_a_stage_row_is_added() -> None:
    pm = _model()
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    incumbent = _solve(pm, unmet)
    free = {1, 2, 5}
    model, local = window_model(pm, free, incumbent, cost)
    assert str(model.proto) == str(_reference_window(pm, free, incumbent, cost).proto)
    assert local == [ref for ref, w in pm.owners().items() if w in free]
    # A stage row over every option, appended after the rows were first read, joins the window.
    pm.model.add(unmet <= evaluate(unmet, VariableValues(incumbent)))
    model, _ = window_model(pm, free, incumbent, cost)
    assert str(model.proto) == str(_reference_window(pm, free, incumbent, cost).proto)
    assert len(model_rows(pm).domains) == len(pm.model.proto.constraints)


def test_a_window_model_is_written_into_its_proto_without_cp_sat_builders(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A window's variables, rows, objective and hint go into its proto field by field: through
    CP-SAT's builders (an expression and a domain per row) a 30-workload window cost ~2.4x."""
    pm = _model()
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    incumbent = _solve(pm, unmet)
    free = {0, 3, 4}
    expected = str(_reference_window(pm, free, incumbent, cost).proto)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("a window model went through a CP-SAT builder")

    for name in ("new_int_var_from_domain", "add_linear_expression_in_domain", "minimize"):
        monkeypatch.setattr(cp_model.CpModel, name, refused)
    model, _ = window_model(pm, free, incumbent, cost)
    assert str(model.proto) == expected


def test_a_window_state_moved_by_windows_builds_the_windows_of_where_it_is() -> None:
    pm = _model()
    unmet, cost = pm.objectives[0][1], pm.objectives[1][1]
    start = _solve(pm, unmet)
    state = WindowState(pm, start)
    workloads = sorted(set(pm.owners().values()))
    rng, moved = random.Random(3), False
    for _ in range(4):
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solved = state.solve(set(rng.sample(workloads, 3)), solver, cost)
        assert solved is not None
        local, solution = solved
        moved |= any(state.values[ref] != value for ref, value in zip(local, solution, strict=True))
        state.accept(local, solution)
        # Row activities, moved in place, are those of a state built at the new values.
        assert state.activity.tolist() == WindowState(pm, state.values).activity.tolist()
        free = set(rng.sample(workloads, 3))
        model, _ = state.model(free, cost)
        assert str(model.proto) == str(_reference_window(pm, free, state.values, cost).proto)
    assert moved and state.values != start


def _reference_drop(pm: PlacementModel, values: dict[int, int]) -> dict[int, int]:
    """Trimming one replica at a time, every row checked at each step (the old loop)."""
    values = dict(values)
    rows = [list(c.linear.vars) for c in pm.model.proto.constraints]
    coeffs = [list(c.linear.coeffs) for c in pm.model.proto.constraints]
    # (the proto's repeated fields do not index from the end)
    domains = [list(c.linear.domain) for c in pm.model.proto.constraints]
    bounds = [(d[0], d[-1]) if d else (0, 0) for d in domains]
    for option in sorted(pm.problem.options, key=lambda o: (-o.cost_per_hour, o.index)):
        ref = pm.x[option.index].index
        low = pm.model.proto.variables[ref].domain[0]
        mine = [r for r, refs in enumerate(rows) if ref in refs]
        while values[ref] > low:
            values[ref] -= 1
            activity = {
                r: sum(c * values[v] for v, c in zip(rows[r], coeffs[r], strict=True)) for r in mine
            }
            if not all(bounds[r][0] <= a <= bounds[r][1] for r, a in activity.items()):
                values[ref] += 1
                break
    return values


def test_dropping_spare_replicas_is_the_one_at_a_time_loop() -> None:
    pm = _model()
    # A wasteful valid start: as many replicas as the rules allow.
    start = _solve(pm, -cp_model.LinearExpr.sum(list(pm.x.values())))
    trimmed = drop_spare_replicas(pm, VariableValues(start)).values
    assert trimmed == _reference_drop(pm, start)
    assert sum(trimmed.values()) < sum(start.values())


def test_steps_within_a_row_are_those_a_step_by_step_loop_takes() -> None:
    cases = list(itertools.product(range(-6, 7), range(-3, 4), range(-4, 3), range(-2, 5)))
    expected = []
    for activity, coeff, low, high in cases:
        steps = 0
        while steps < 20 and low <= activity - coeff * (steps + 1) <= high:
            steps += 1
        expected.append(steps)
    activity, coeff, low, high = (np.array(column, np.int64) for column in zip(*cases, strict=True))
    assert np.minimum(steps_within(activity, coeff, low, high), 20).tolist() == expected


def test_an_objective_is_flattened_once_and_set_as_minimize_sets_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pm = _model(n_plus_one=False)
    cost = pm.objectives[1][1]
    flattened = []
    original = objectives.cp_model_helper.FlatIntExpr

    def counting(expression: cp_model.LinearExpr) -> object:
        flattened.append(expression)
        return original(expression)

    monkeypatch.setattr(objectives.cp_model_helper, "FlatIntExpr", counting)
    values = VariableValues({var.index: 1 for var in all_variables(pm)})
    for _ in range(3):
        pm.model.minimize(cost)
        evaluate(cost, values)
    assert len(flattened) == 1
    plain = cp_model.CpModel()
    plain.proto.copy_from(pm.model.proto)
    plain.minimize(cost)  # CP-SAT's own
    assert str(plain.proto.objective) == str(pm.model.proto.objective)
    assert evaluate(cost, values) == sum(plain.proto.objective.coeffs)


def test_greedy_packing_by_node_state_is_the_scan_over_every_node() -> None:
    """``_Grid.take`` (one node per free-slot state) books what scanning every node booked:
    the fullest node that fits, ties by name, in any order of options."""
    problem = _model().problem
    grid = _Grid(problem)
    nodes = {key: NodeSlots(key[1], problem.pools[key[0]].gpu_indices) for key in grid.nodes}
    rng = random.Random(3)
    single = [o for o in problem.options if not o.stages]
    for option in rng.choices(single, k=600):
        pool = problem.pools[option.pool]
        fits = [
            (-node.used, name, gpus)
            for name in pool.node_names
            if (gpus := (node := nodes[(pool.index, name)]).find(option)) is not None
        ]
        assert grid.take(option) == bool(fits)
        if fits:
            _, name, gpus = min(fits)
            nodes[(pool.index, name)].take(option, gpus)
    assert {k: n.free for k, n in nodes.items()} == {k: n.free for k, n in grid.nodes.items()}
    assert any(n.used for n in nodes.values())


def test_rows_and_variables_read_in_bulk_are_those_read_one_by_one() -> None:
    pm = _model()
    pm.model.add_bool_or([pm.enforce["budget"]] if "budget" in pm.enforce else [])  # not linear
    bulk, bulk_domains = _read_since(pm.model, 3, 5, bulk_rows=0)
    one_by_one, domains = _read_since(pm.model, 3, 5, bulk_rows=10**9)
    assert bulk == one_by_one and bulk_domains == domains
    assert len(bulk) == len(pm.model.proto.constraints) - 3
    assert bulk[-1][1] is None and all(linear is not None for _, linear in bulk[:-1])
    proto = pm.model.proto
    assert domains == [tuple(proto.variables[i].domain) for i in range(5, len(proto.variables))]


def test_the_objects_of_a_solve_are_left_to_themselves_by_the_collector_until_it_ends() -> None:
    """A full collection during a solve walked the whole compiled problem (~1 CPU s at
    10,000 x 1,000); the solve freezes what exists when it starts, nested solves included."""
    problem = _model().problem
    frozen_during: list[int] = []
    solve_problem(
        problem,
        SolverSettings(time_limit_s=2, stages=2),
        progress=lambda _: frozen_during.append(gc.get_freeze_count()),
    )
    assert frozen_during and min(frozen_during) > 0
    assert gc.get_freeze_count() == 0
    assert not objectives._FLAT  # no cached expression keeps the solve's models alive


def test_a_solve_keeps_a_freeze_it_did_not_make() -> None:
    """The API server freezes what it holds at start; a solve in that process (the solver not in
    a subprocess) must not release it when it ends."""
    problem = _model().problem
    gc.freeze()
    try:
        frozen_before = gc.get_freeze_count()
        solve_problem(problem, SolverSettings(time_limit_s=2, stages=2))
        assert gc.get_freeze_count() >= frozen_before > 0
    finally:
        gc.unfreeze()
