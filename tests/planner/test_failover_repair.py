"""The repair of a large N+1 start (``failover_repair``): room for the workloads that fall short,
made by moving others' replicas, with every hard row kept; and what the stages after it charge
their windows."""

from __future__ import annotations

from typing import Any

import pytest

from gridplace.planner import failover_repair, hints, stages
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.failover_greedy import failover_greedy
from gridplace.planner.failover_repair import HardRows, repair_shortfalls
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import Solution
from gridplace.planner.windows import Goal
from gridplace.planner.work import MIN_CHARGE_S, SMALL_WINDOW_CHARGE_S, WorkClock
from gridplace.specs import builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import node, workload
from tests.planner.test_compile_equivalence import _latency
from tests.planner.test_failover_start import LARGE, SETTINGS, _first_objective, _model, _n_plus_one


@pytest.fixture(scope="module")
def problem() -> Problem:
    return _n_plus_one(24, 12, 7, 8.0)  # the shortfall greedy leaves pools full


def test_hard_rows_agree_with_the_model(problem: Problem) -> None:
    counts = failover_greedy(problem)
    pm = _model(problem)
    rows = HardRows(pm, counts)
    verdicts = set()
    for option in problem.options[:: max(1, len(problem.options) // 24)]:
        plus_one = {**counts, option.index: counts.get(option.index, 0) + 1}
        valid = hints._check_hint(pm, plus_one, SETTINGS, WorkClock()) is not None
        assert rows.room(option.index) == rows.fits([(option.index, 1)]) == valid
        verdicts.add(valid)
    assert verdicts == {True, False}  # some options fit one more replica, others not


def test_the_repair_moves_others_to_make_room(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = failover_greedy(problem)
    made: list[bool] = []
    make_room = failover_repair._make_room

    def spy(*args: object) -> object:
        found = make_room(*args)  # type: ignore[arg-type]
        made.append(found is not None)
        return found

    monkeypatch.setattr(failover_repair, "_make_room", spy)
    repaired = repair_shortfalls(_model(problem), counts)
    before, after = _first_objective(problem, counts), _first_objective(problem, repaired)
    assert after < before / 2  # (valid on the full model: ``_first_objective`` checks)
    assert any(made)  # room was made: some replica left a pool for a short workload
    assert any(repaired.get(i, 0) < n for i, n in counts.items())  # a replica left its option
    assert repair_shortfalls(_model(problem), counts) == repaired  # deterministic


def test_the_repair_never_raises_the_objective() -> None:
    for args in ((20, 12, 3, 10.0), (20, 10, 2, 6.0)):
        problem = _n_plus_one(*args)
        for counts in (hints.greedy_with_failover(problem), failover_greedy(problem)):
            repaired = repair_shortfalls(_model(problem), counts)
            assert _first_objective(problem, repaired) <= _first_objective(problem, counts)


def test_a_large_n_plus_one_start_is_repaired(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    repaired: list[int] = []

    def spy(pm: object, counts: dict[int, int]) -> dict[int, int]:
        repaired.append(len(counts))
        return counts

    monkeypatch.setattr(hints, "repair_shortfalls", spy)

    def relaxed_solve(relaxed: Problem, settings: SolverSettings) -> Solution:
        return Solution(status="FEASIBLE")

    hints.choose_start(_model(problem), LARGE, WorkClock(), relaxed_solve)
    assert len(repaired) == 1
    hints.choose_start(_model(problem), SolverSettings(time_limit_s=2), WorkClock(), relaxed_solve)
    assert len(repaired) == 1  # not large: the full-model solve does this work


def test_a_large_n_plus_one_cost_stage_charges_its_windows_what_building_one_costs(
    problem: Problem, monkeypatch: pytest.MonkeyPatch
) -> None:
    charged: list[float] = []
    search = stages.search_windows

    def spy(pm: object, variables: object, goal: Goal, *args: Any, **kwargs: Any) -> object:
        charged.append(goal.min_charge_s)
        return search(pm, variables, goal, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(stages, "search_windows", spy)
    solve_problem(problem, LARGE)
    assert charged and set(charged) == {SMALL_WINDOW_CHARGE_S}
    charged.clear()
    solve_problem(_n_plus_one(24, 12, 7, 8.0, node_failures=0), LARGE)
    assert charged and set(charged) == {MIN_CHARGE_S}  # without N+1: as before


PRICES = (("a-dear", 2.0), ("b-cheap", 0.2))


def test_of_bookings_that_gain_the_same_the_repair_takes_the_cheapest() -> None:
    # The same GPU at two prices (the dear pool first by option index): every replica the
    # repair books gains the same in either, and goes where it costs least.
    nodes = [node(f"{name}-{i}", price=price) for name, price in PRICES for i in range(4)]
    demand = workload("w0", rps=1.0, replicas=(1, 16), redundancy={"nodeFailures": 1})
    problem = compile_problem(
        PlannerInputs(nodes, [demand], builtin_catalog()), fake_predictor, _latency(nodes)
    )
    counts = repair_shortfalls(_model(problem), {})
    assert _first_objective(problem, counts) == 0  # N+1 holds
    assert counts
    booked = {problem.pools[problem.options[i].pool].node_names[0][0] for i in counts}
    assert booked == {"b"}  # the cheap pool's nodes only
