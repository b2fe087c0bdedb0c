"""Issue 14, item 8: a plan's solver summary states a bound only when one was proved (a stored
plan said ``bound: 0.0, gap: 1.0`` where the CLI, for the same objective, printed 30.6 / 0.016)."""

from __future__ import annotations

import pytest

from gridplace.planner import planning
from gridplace.planner.solve import Solution, StageResult
from tests.planner.grids import node, run, workload


@pytest.mark.parametrize(
    ("stage_bound", "bound", "gap"),
    [(0.0, None, None), (-5.0, None, None), (300_000.0, 30.0, 0.0625)],
    ids=["none-proved", "negative", "proved"],
)
def test_the_summary_states_only_a_proved_bound(
    monkeypatch: pytest.MonkeyPatch, stage_bound: float, bound: float | None, gap: float | None
) -> None:
    real_solve = planning.solve_problem

    def solve_without_proving(*args: object, **kwargs: object) -> Solution:
        solution = real_solve(*args, **kwargs)  # type: ignore[arg-type]
        cost = StageResult("cost", "FEASIBLE", 320_000.0, stage_bound, 1.0)  # $32/h (x10,000)
        solution.stages = [cost if s.name == "cost" else s for s in solution.stages]
        return solution

    monkeypatch.setattr(planning, "solve_problem", solve_without_proving)
    result = run([node("a"), node("b")], [workload("w", rps=1.0)])
    assert result.plan.status is not None
    summary = result.plan.status.solver
    assert summary.objective == 32.0
    assert (summary.bound, summary.gap) == (bound, gap)
