"""How the staged solve shares its time on a large model (``stages.LARGE_STAGE_SHARES``,
``stages.FULL_SOLVE_MIN_S``, ``hints.LARGE_RELAXED_SHARE``): the unmet stage gets the larger
share, a cost stage too short for its full-model solve gives windows all of its time, and an N+1
model's relaxed start gets the larger share. ``window_min_options=0`` makes a small model count
as large."""

from __future__ import annotations

from typing import Any

import pytest

from gridplace.planner import hints, stages
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.hints import choose_start
from gridplace.planner.model import build_model
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.solver_settings import Solution
from gridplace.planner.work import WorkClock
from gridplace.specs import builtin_catalog
from tests.planner.fakes import fake_predictor
from tests.planner.grids import node, workload
from tests.planner.test_compile_equivalence import _grid, _latency

LARGE = SolverSettings(time_limit_s=6, window_min_options=0, window_workloads=4)


def _problem(nodes_n: int = 60, rps_scale: float = 1.0) -> Problem:
    nodes, workloads = _grid(nodes_n, 12, 7, rps_scale)
    return compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, _latency(nodes)
    )


def _unmet_limit(
    monkeypatch: pytest.MonkeyPatch, problem: Problem, settings: SolverSettings
) -> float:
    """The time limit (reference seconds) of the unmet stage's full-model solve."""
    limits: list[float] = []
    original = stages.StageRunner._solve_full

    def spy(runner: stages.StageRunner, number: int, *args: Any) -> bool:
        if number == 0:
            limits.append(args[2])  # (name, objective, budget_s, began, search)
        return original(runner, number, *args)

    monkeypatch.setattr(stages.StageRunner, "_solve_full", spy)
    solve_problem(problem, settings)
    assert len(limits) == 1, "the unmet stage did not search (its start met all demand?)"
    return limits[0]


def test_a_large_model_gives_the_unmet_stage_the_larger_share(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _problem(20, rps_scale=10)  # more demand than the grid holds: the stage searches
    large = _unmet_limit(monkeypatch, problem, LARGE)
    plain = _unmet_limit(monkeypatch, problem, SolverSettings(time_limit_s=6))
    # Without a previous plan the moves stage is skipped and its share goes to the others; the
    # start's check (hints) spent a little of the limit first.
    unmet, cost, _, preference = stages.LARGE_STAGE_SHARES
    assert large == pytest.approx(6 * unmet / (unmet + cost + preference), rel=0.02)
    unmet, cost, _, preference = stages.STAGE_SHARES
    assert plain == pytest.approx(6 * unmet / (unmet + cost + preference), rel=0.02)


def _cost_stage(problem: Problem) -> Any:
    stage = solve_problem(problem, LARGE).stage("cost")
    assert stage is not None
    return stage


def test_a_cost_stage_too_short_for_the_full_model_solve_is_all_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _problem()
    short = _cost_stage(problem)
    # Windows only: no full-model solve, so no bound is proved.
    assert short.windows > 0
    assert short.bound == 0.0
    monkeypatch.setattr(stages, "FULL_SOLVE_MIN_S", 0.0)
    full = _cost_stage(problem)
    # With the floor at 0 the full-model solve runs after the windows and proves a bound.
    assert full.windows > 0
    assert full.bound > 0.0
    assert full.objective <= short.objective or full.status == "OPTIMAL"


def _relaxed_limit(settings: SolverSettings) -> float:
    """The time limit ``hints.choose_start`` gives the relaxed solve of an N+1 problem."""
    nodes = [node(f"n{i}", reliability=0.95) for i in range(3)]
    problem = compile_problem(
        PlannerInputs(
            nodes, [workload("w", rps=1.0, redundancy={"nodeFailures": 1})], builtin_catalog()
        ),
        fake_predictor,
        _latency(nodes),
    )
    limits: list[float] = []

    def relaxed_solve(relaxed: Problem, given: SolverSettings) -> Solution:
        limits.append(given.time_limit_s)
        return Solution(status="FEASIBLE")

    choose_start(build_model(problem), settings, WorkClock(), relaxed_solve)
    assert len(limits) == 1
    return limits[0]


def test_a_large_model_gives_the_relaxed_start_the_larger_share() -> None:
    assert _relaxed_limit(SolverSettings(time_limit_s=10)) == pytest.approx(
        10 * hints.RELAXED_SHARE
    )
    assert _relaxed_limit(SolverSettings(time_limit_s=10, window_min_options=0)) == (
        pytest.approx(10 * hints.LARGE_RELAXED_SHARE)
    )


def _core_based(monkeypatch: pytest.MonkeyPatch, settings: SolverSettings) -> list[bool]:
    """Whether each solve the stages made (the unmet stage's full-model solve first) was
    core-based, read after the solve set its parameters."""
    solvers: list[Any] = []
    original = stages.make_solver

    def spy(*args: Any) -> Any:
        solvers.append(original(*args))
        return solvers[-1]

    monkeypatch.setattr(stages, "make_solver", spy)
    solve_problem(_problem(20, rps_scale=10), settings)
    return [s.parameters.optimize_with_core for s in solvers]


def test_a_large_model_solves_its_unmet_stage_core_based(monkeypatch: pytest.MonkeyPatch) -> None:
    large = _core_based(monkeypatch, LARGE)
    assert large[0] and not any(large[1:])  # the later stages and their windows are not
    assert not any(_core_based(monkeypatch, SolverSettings(time_limit_s=6)))
