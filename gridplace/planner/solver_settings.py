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
from gridplace.planner.windows import VariableValues
from gridplace.planner.work import limit


@dataclass(frozen=True)
class SolverSettings:
    """CP-SAT parameters; the defaults give reproducible plans (one worker, fixed seed)."""

    # Deterministic work, in reference seconds (``work.py``): the same plan on any machine load.
    time_limit_s: float = 10.0
    num_workers: int = 1
    random_seed: int = 0
    # One worker with the full LP relaxation (linearization level 2): on these covering models
    # 2-worker portfolios stalled far from the optimum that it reaches (bench/solver_scale.py
    # prints the comparison against the MILP). Subsolvers only apply with num_workers > 1.
    subsolvers: tuple[str, ...] = ()
    linearization_level: int = 2
    # CP-SAT's presolve as it comes: switching it off or lighter probing proved the optimum of
    # high utilization later or not at all (bench/solver_scale.py prints the comparison).
    presolve: bool = True
    probing_level: int = 2
    stages: int = 4  # how many objectives to optimize in order (1-4)
    # With a previous plan, the cost stage is fixed only to within this fraction of the best cost
    # found, so that a replan may keep replicas where they are for up to 5% more per hour.
    move_tolerance: float = 0.05
    # Models with at least this many options improve stages 2-4 by windows of this many
    # workloads first (windows.py): one worker on a whole model that large ends the cost stage
    # far above its bound, and smaller models solve to optimality without them. A model with
    # failover rows uses windows at any size (one worker stalls at its start), of a quarter of
    # its workloads (at least 2), at most ``stages.FAILOVER_WINDOW_WORKLOADS``.
    window_min_options: int = 10_000
    window_workloads: int = 100
    # Independent parts (``decompose``) are solved apart and merged; where they run
    # (``parts``): on this many local processes, or on the Ray cluster at ``ray_address``.
    decompose: bool = True
    workers: int = 1
    ray_address: str | None = None
    # (region, site) pairs: when given, each workload is first placed in its home site's pools
    # only, site by site (``decompose.by_site``), and the whole model starts from that plan.
    sites: tuple[tuple[str, str], ...] = ()


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
        *pm.warm_starts.values(),
        *pm.uncovered.values(),
        *pm.per_node.values(),
        *pm.worst_loss.values(),
    ]


def record(
    pm: PlacementModel, solver: cp_model.CpSolver | VariableValues, solution: Solution
) -> None:
    solution.counts = {i: v for i, var in pm.x.items() if (v := solver.value(var)) > 0}
    solution.unmet_rps = {key: solver.value(var) / RATE_SCALE for key, var in pm.unmet.items()}
    solution.short = {w: v for w, var in pm.short.items() if (v := solver.value(var)) > 0}
