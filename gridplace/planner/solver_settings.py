"""What a solve is given and gives back: ``SolverSettings`` (CP-SAT parameters, time in
deterministic work), the ``Solution`` with a ``StageResult`` per objective, the CP-SAT solver they
configure and the model's variables a full hint covers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gridplace.planner.core import RATE_SCALE
from gridplace.planner.model import PlacementModel
from gridplace.planner.windows import Assignment
from gridplace.planner.work import limit


@dataclass(frozen=True)
class SolverSettings:
    """CP-SAT parameters; defaults suit a 2-core machine and give reproducible plans."""

    # Deterministic work, in reference seconds (``work.py``): the same plan on any machine load.
    time_limit_s: float = 10.0
    num_workers: int = 1
    random_seed: int = 0
    # Measured on this 2-core machine (bench/solver_scale.py prints the comparison): CP-SAT's
    # 2-worker portfolios stall far from the optimum of these covering models (1,000 x 100,
    # cost stage, 8 s: $93-99/h against the MILP's $45.65), while one worker searching with
    # the full LP relaxation (linearization level 2) reaches $47.25; on the example grid it
    # proves the optimum in 0.9 s. Subsolvers only apply with num_workers > 1.
    subsolvers: tuple[str, ...] = ()
    linearization_level: int = 2
    # CP-SAT's presolve as it comes, measured against switching it off and lighter probing
    # (bench/solver_scale.py prints the comparison): at 1,000 x 100, two stages to the proven
    # optimum took 1.8 / 3.9 s (moderate / high) with it, 1.3 / 5.5 s without presolve,
    # 1.7 / 8.4 s with probing level 0, and probing level 1 did not prove the high optimum in 10 s.
    presolve: bool = True
    probing_level: int = 2
    stages: int = 4  # how many objectives to optimize in order (1-4)
    # With a previous plan, the cost stage is fixed only to within this fraction of the best cost
    # found, so that a replan may keep replicas where they are for up to 5% more per hour.
    move_tolerance: float = 0.05
    # Models with at least this many options improve stages 2-4 by windows of this many
    # workloads first (windows.py): one worker on the whole 10,000 x 1,000 model (23,000
    # options) ended the cost stage 66-71% above its bound; with windows it ends within 1-2%.
    # 1,000 x 100 (5,000 options) solves to optimality without them. A model with failover
    # rows uses windows at any size (one worker stalls at its start: example grid, 10 s, cost
    # stage 6.5% above the MILP optimum without windows, 0.9% with windows of 2 workloads),
    # with windows of a quarter of its workloads (at least 2), at most
    # ``FAILOVER_WINDOW_WORKLOADS``.
    window_min_options: int = 10_000
    window_workloads: int = 100


@dataclass
class StageResult:
    name: str
    status: str
    objective: float
    bound: float
    wall_s: float
    windows: int = 0  # window solves (windows.py) that improved this stage first


@dataclass
class Solution:
    """Counts per option and what they serve; ``status`` is the worst stage's status."""

    status: str
    counts: dict[int, int] = field(default_factory=dict)
    unmet_rps: dict[tuple[int, str], float] = field(default_factory=dict)
    short: dict[int, int] = field(default_factory=dict)
    stages: list[StageResult] = field(default_factory=list)
    wall_s: float = 0.0
    work_s: float = 0.0  # deterministic work spent, reference seconds (``work.py``)
    first_solution_s: float | None = None  # from the start of solving (wall clock)

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in self.stages if s.name == name), None)


Progress = Callable[[str], None]


def make_solver(settings: SolverSettings, time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = settings.num_workers
    solver.parameters.random_seed = settings.random_seed
    limit(solver, time_limit_s)
    solver.parameters.linearization_level = settings.linearization_level
    solver.parameters.cp_model_presolve = settings.presolve
    solver.parameters.cp_model_probing_level = settings.probing_level
    if settings.num_workers > 1 and settings.subsolvers:
        solver.parameters.subsolvers.extend(settings.subsolvers)
    return solver


def all_variables(pm: PlacementModel) -> list[cp_model.IntVar]:
    return [
        *pm.x.values(),
        *pm.unmet.values(),
        *pm.short.values(),
        *pm.moved.values(),
        *pm.uncovered.values(),
        *pm.per_node.values(),
        *pm.worst_loss.values(),
    ]


def record(pm: PlacementModel, solver: cp_model.CpSolver | Assignment, solution: Solution) -> None:
    solution.counts = {i: v for i, var in pm.x.items() if (v := solver.value(var)) > 0}
    solution.unmet_rps = {key: solver.value(var) / RATE_SCALE for key, var in pm.unmet.items()}
    solution.short = {w: v for w, var in pm.short.items() if (v := solver.value(var)) > 0}
