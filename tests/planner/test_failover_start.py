"""N+1 on a grid short of capacity: the greedy over every workload's shortfall
(``failover_greedy``), the relaxed start cut to its demand's replicas, and the first stage's
windows around the workloads that fall short (``failover_windows``)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import pytest

from gridplace.planner import failover_windows, hints, stages
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.core import SLOTS_PER_GPU
from gridplace.planner.failover_greedy import Shortfall, demand_replicas, failover_greedy
from gridplace.planner.failover_windows import shortfall_windows, shortfalls
from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import Solution, all_variables, make_solver
from gridplace.planner.windows import VariableValues, WindowSearch, evaluate
from gridplace.planner.work import WorkClock
from gridplace.specs import builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import workload
from tests.planner.test_compile_equivalence import MODELS, REGIONS, _grid, _latency

SETTINGS = SolverSettings(time_limit_s=100)
LARGE = SolverSettings(time_limit_s=3, window_min_options=0, window_workloads=4)


def _n_plus_one(
    nodes_n: int, workloads_n: int, seed: int, rps_scale: float, node_failures: int = 1
) -> Problem:
    """A generated grid (fleets of identical nodes) with N+1 on every workload (``node_failures``),
    its demand scaled past what the pools near its sources hold."""
    nodes, _ = _grid(nodes_n, 0, seed)
    rng = random.Random(seed)
    workloads = [
        workload(
            f"w{i}",
            model=rng.choice(MODELS[:4]),
            precisions=("bf16", "fp8", "int4"),
            rps=rng.uniform(0.3, 3) * rps_scale,
            ttft_ms=rng.choice([1200.0, 5000.0]),
            itl_ms=150.0,
            sources=tuple((r, 1 / k) for k in [rng.randint(1, 2)] for r in rng.sample(REGIONS, k)),
            priority=rng.choice([50, 100, 200]),
            replicas=(1, 64),
            redundancy={"nodeFailures": node_failures},
        )
        for i in range(workloads_n)
    ]
    inputs = PlannerInputs(nodes, workloads, builtin_catalog())
    return compile_problem(inputs, fake_predictor, _latency(nodes))


def _model(problem: Problem) -> PlacementModel:
    pm = build_model(problem)
    for literal in pm.enforce.values():  # every rule on, as ``solve.solve_whole`` does
        pm.model.add(literal == 1)
    return pm


def _first_objective(problem: Problem, counts: dict[int, int]) -> int:
    """The model's first objective with every replica count fixed to ``counts``."""
    checked = hints._check_hint(_model(problem), counts, SETTINGS, WorkClock())
    assert checked is not None, "the counts break a hard rule"
    return round(checked.objective_value)


def _shortfall_total(problem: Problem, counts: dict[int, int]) -> float:
    states = {w.index: Shortfall(problem, w) for w in problem.workloads}
    for index, count in counts.items():
        for _ in range(count):
            states[problem.options[index].workload].add(problem.options[index])
    return sum(state.value() for state in states.values())


@pytest.fixture(scope="module")
def problem() -> Problem:
    return _n_plus_one(20, 12, 3, 10.0)


def test_the_shortfall_is_the_first_objective_as_the_model_counts_it(problem: Problem) -> None:
    for counts in (hints.greedy_with_failover(problem), failover_greedy(problem)):
        model = _first_objective(problem, counts)
        assert model > 0  # the grid is short: something is unmet or uncovered
        # rps -> milli-rps; the model floors capacities and ceils demands to whole milli-rps
        assert _shortfall_total(problem, counts) * 1000 == pytest.approx(model, rel=1e-3)


def test_the_greedy_over_shortfalls_covers_what_the_other_starts_leave() -> None:
    problem = _n_plus_one(20, 10, 2, 6.0)  # room for N+1, if replicas go where it is
    assert _first_objective(problem, hints.scarce_with_failover(problem)) > 0
    assert _first_objective(problem, hints.greedy_with_failover(problem)) > 0
    assert _first_objective(problem, failover_greedy(problem)) == 0


def test_demand_replicas_drops_what_no_demand_needs(problem: Problem) -> None:
    counts = failover_greedy(problem)
    padded = dict(counts)
    for option in problem.options[:: max(1, len(problem.options) // 5)]:
        padded[option.index] = padded.get(option.index, 0) + 2
    kept = demand_replicas(problem, padded)
    assert sum(kept.values()) < sum(counts.values()) + 2  # more went than was padded on
    assert _shortfall_total(problem, kept) == pytest.approx(_shortfall_total(problem, padded))

    def carrying(counts: dict[int, int], w: int) -> int:
        options = problem.options
        return sum(
            n
            for i, n in counts.items()
            if options[i].workload == w and problem.carries_load(options[i])
        )

    for w in problem.workloads:
        assert carrying(kept, w.index) >= min(w.replicas_min, carrying(padded, w.index))


def test_shortfall_windows_improve_a_start_and_keep_every_rule(problem: Problem) -> None:
    pm = _model(problem)
    counts = hints.greedy_with_failover(problem)
    checked = hints._check_hint(pm, counts, SETTINGS, WorkClock())
    assert checked is not None
    start = VariableValues({var.index: checked.value(var) for var in all_variables(pm)})
    assert shortfalls(pm, start)  # some workload falls short: there is something to improve
    clock = WorkClock()
    search = shortfall_windows(
        pm, start, 1.5, clock, 0, lambda limit_s: make_solver(SETTINGS, limit_s)
    )
    assert search.windows > 0 and clock.spent_s <= 1.5 + 0.5
    _, objective = pm.objectives[0]
    assert search.objective == evaluate(objective, search.incumbent) < checked.objective_value
    found = {o: search.incumbent.value(var) for o, var in pm.x.items()}
    assert _first_objective(problem, found) <= search.objective  # valid on the full model


def test_a_large_n_plus_one_model_starts_its_first_stage_with_shortfall_windows(
    monkeypatch: pytest.MonkeyPatch, problem: Problem
) -> None:
    full_solves: list[int] = []
    original = stages.StageRunner._solve_full

    def spy(runner: stages.StageRunner, number: int, *args: Any) -> bool:
        full_solves.append(number)
        return original(runner, number, *args)

    monkeypatch.setattr(stages.StageRunner, "_solve_full", spy)
    solution = solve_problem(problem, LARGE)
    assert solution.stages[0].windows > 0 and 0 not in full_solves
    full_solves.clear()
    solve_problem(problem, SolverSettings(time_limit_s=2))  # not large: the full-model solve
    assert 0 in full_solves


def test_a_large_n_plus_one_model_solves_only_the_relaxed_unmet_stage(problem: Problem) -> None:
    given: list[SolverSettings] = []

    def relaxed_solve(relaxed: Problem, settings: SolverSettings) -> Solution:
        given.append(settings)
        return Solution(status="FEASIBLE")

    hints.choose_start(_model(problem), LARGE, WorkClock(), relaxed_solve)
    hints.choose_start(_model(problem), SolverSettings(time_limit_s=2), WorkClock(), relaxed_solve)
    assert [s.stages for s in given] == [1, 2]


def test_shortfall_windows_draw_holders_that_can_move_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _n_plus_one(20, 10, 2, 6.0)  # a holder of the short workload's pools is stuck
    pm = _model(problem)
    checked = hints._check_hint(pm, hints.greedy_with_failover(problem), SETTINGS, WorkClock())
    assert checked is not None
    start = VariableValues({var.index: checked.value(var) for var in all_variables(pm)})
    by_pool: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for option in problem.options:
        by_pool[option.pool].append((option.workload, pm.x[option.index].index, option.slots))
    used: dict[int, int] = defaultdict(int)
    for option in problem.options:
        used[option.pool] += option.slots * start.value(pm.x[option.index])
    free = {
        p.index: p.node_count * p.gpus_per_node * SLOTS_PER_GPU - used[p.index]
        for p in problem.pools
    }
    monkeypatch.setattr(failover_windows, "SHORTFALL_WINDOW_WORKLOADS", 3)
    mixed = 0
    for seed in shortfalls(pm, start):
        pools = {o.pool for o in problem.options_of(seed)}
        holders = {
            w for p in pools for w, ref, _ in by_pool[p] if start.values[ref] > 0 and w != seed
        }
        movable = failover_windows._movable(pm, holders, pools, start, by_pool)
        assert movable == {
            w
            for w in holders
            if any(o.pool not in pools and free[o.pool] >= o.slots for o in problem.options_of(w))
        }
        for draw in range(8):
            window = failover_windows._window(pm, seed, start, by_pool, random.Random(draw))
            assert window - {seed} <= holders
            assert len(window - {seed} - movable) == max(0, len(window) - 1 - len(movable))
        mixed += 2 <= len(movable) < len(holders)
    assert mixed  # some window had to choose between holders that can move and others


def test_shortfall_windows_end_after_a_pass_that_gains_nothing(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    pm = _model(problem)
    checked = hints._check_hint(pm, failover_greedy(problem), SETTINGS, WorkClock())
    assert checked is not None
    start = VariableValues({var.index: checked.value(var) for var in all_variables(pm)})
    clock, deadline = WorkClock(), 60.0

    def search(start: VariableValues) -> WindowSearch:
        return shortfall_windows(
            pm, start, deadline, clock, 0, lambda limit_s: make_solver(SETTINGS, limit_s)
        )

    settled = search(start)
    short = shortfalls(pm, settled.incumbent)
    assert short  # some workload still falls short: the windows did not run out of seeds
    assert clock.spent_s < deadline / 4  # nor of time: the last pass gained nothing
    monkeypatch.setattr(failover_windows, "SHORTFALL_PATIENCE", 2)
    assert len(short) > 2 and search(settled.incumbent).windows == 2  # its first 2 gained nothing
