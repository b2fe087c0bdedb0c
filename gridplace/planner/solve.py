"""Solving the placement model in lexicographic stages, with settings measured for 2 cores.

Each stage minimizes one objective with the earlier stages' values fixed (``<=`` the value found)
and the previous stage's solution as a hint. An infeasible first stage is re-checked (a fresh
solve with one worker) before anyone is told. The result is a ``Solution`` (counts per option,
unmet demand) — never an exception for a problem that cannot be fully served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gridplace.planner.baselines import greedy
from gridplace.planner.model import RATE_SCALE, PlacementModel, build_model
from gridplace.planner.problem import Problem

# Share of the time limit each stage gets (unmet demand, cost, moves, preference).
STAGE_SHARES = (0.4, 0.4, 0.1, 0.1)


@dataclass(frozen=True)
class SolverSettings:
    """CP-SAT parameters; defaults suit a 2-core machine and give reproducible plans."""

    time_limit_s: float = 10.0
    num_workers: int = 2
    random_seed: int = 0
    stages: int = 4  # how many objectives to optimize in order (1-4)
    # With a previous plan, the cost stage is fixed only to within this fraction of the best cost
    # found, so that a replan may keep replicas where they are for up to 2% more per hour.
    move_tolerance: float = 0.02


@dataclass
class StageResult:
    name: str
    status: str
    objective: float
    bound: float
    wall_s: float


@dataclass
class Solution:
    """Counts per option and what they serve; ``status`` is the worst stage's status."""

    status: str
    counts: dict[int, int] = field(default_factory=dict)
    unmet_rps: dict[tuple[int, str], float] = field(default_factory=dict)
    short: dict[int, int] = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)
    wall_s: float = 0.0

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)


Progress = Callable[[str], None]


def _solver(settings: SolverSettings, time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = settings.num_workers
    solver.parameters.random_seed = settings.random_seed
    solver.parameters.max_time_in_seconds = max(0.05, time_limit_s)
    return solver


def solve_problem(
    problem: Problem, settings: SolverSettings | None = None, progress: Progress | None = None
) -> Solution:
    """Solve ``problem`` stage by stage; see the module docstring."""
    settings = settings or SolverSettings()
    started = time.perf_counter()
    pm = build_model(problem)
    for family, literal in sorted(pm.enforce.items()):
        pm.model.add(literal == 1).with_name(f"enforce[{family}]")
    solution = Solution(status="UNKNOWN")
    values = initial_counts(problem)
    stages = pm.objectives[: max(1, min(settings.stages, len(pm.objectives)))]
    for number, (name, objective) in enumerate(stages):
        if progress:
            progress(f"stage {number + 1}/{len(stages)}: minimizing {name}")
        pm.model.minimize(objective)
        pm.model.clear_hints()  # type: ignore[no-untyped-call]
        for index, var in pm.x.items():
            pm.model.add_hint(var, values.get(index, 0))
        # Time a stage does not use passes on to the stages after it.
        left_s = settings.time_limit_s - (time.perf_counter() - started)
        budget_s = left_s * STAGE_SHARES[number] / sum(STAGE_SHARES[number : len(stages)])
        solver = _solver(settings, budget_s)
        stage_started = time.perf_counter()
        status = solver.solve(pm.model)
        status_name = solver.status_name(status)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if number == 0 and status == cp_model.INFEASIBLE:
                status_name = _recheck_infeasible(pm, settings)
            solution.status = status_name
            if number == 0:
                solution.wall_s = time.perf_counter() - started
                return solution
            break  # keep the previous stage's solution
        value = round(solver.objective_value)
        solution.stages.append(
            StageResult(
                name=name,
                status=status_name,
                objective=solver.objective_value,
                bound=solver.best_objective_bound,
                wall_s=time.perf_counter() - stage_started,
            )
        )
        values = {index: solver.value(var) for index, var in pm.x.items()}
        _record(pm, solver, solution)
        # Fix this stage's optimum (as found) for the stages that follow.
        if name == "cost" and problem.previous:
            value = int(value * (1 + settings.move_tolerance))
        pm.model.add(objective <= value).with_name(f"stage[{name}]")
    solution.status = (
        "OPTIMAL" if all(s.status == "OPTIMAL" for s in solution.stages) else "FEASIBLE"
    )
    solution.wall_s = time.perf_counter() - started
    return solution


def initial_counts(problem: Problem) -> dict[int, int]:
    """The first hint: the previous plan's replicas where they still fit, else greedy's plan."""
    if problem.previous:
        counts: dict[int, int] = {}
        for replica in problem.previous:
            if replica.option is not None:
                counts[replica.option] = counts.get(replica.option, 0) + 1
        return counts
    return greedy(problem)


def _record(pm: PlacementModel, solver: cp_model.CpSolver, solution: Solution) -> None:
    solution.counts = {i: v for i, var in pm.x.items() if (v := solver.value(var)) > 0}
    solution.unmet_rps = {key: solver.value(var) / RATE_SCALE for key, var in pm.unmet.items()}
    solution.short = {w: v for w, var in pm.short.items() if (v := solver.value(var)) > 0}


def _recheck_infeasible(pm: PlacementModel, settings: SolverSettings) -> str:
    """Solve again with one worker and no objective; only a confirmed INFEASIBLE is reported."""
    pm.model.clear_objective()  # type: ignore[no-untyped-call]
    solver = _solver(SolverSettings(num_workers=1, random_seed=settings.random_seed), 5.0)
    return solver.status_name(solver.solve(pm.model))


def model_size(problem: Problem) -> dict[str, int]:
    """Variables and constraints of the full model (for progress messages and benchmarks)."""
    proto = build_model(problem).model.proto
    return {"variables": len(proto.variables), "constraints": len(proto.constraints)}
