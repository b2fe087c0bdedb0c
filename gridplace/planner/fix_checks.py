"""Checking a fix: the search's state (predictor, network lookup, base plan, a budget of
deterministic work) and the two checks, on the reduced problem (``fix_reduced``: the workload
alone on what the base plan leaves it) and on the whole problem (every workload, the
unmet-demand stage, starting from the base plan's other replicas).

Owns what a check costs and decides; must not choose which changes to try (``fixes``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from gridplace.planner.compile import compile_problem
from gridplace.planner.fix_reduced import BasePlan, alone, base_for, others_plan, reduced_inputs
from gridplace.planner.planning import Strategy, plan_problem
from gridplace.planner.ports import OptionPredictor, PlannerInputs, RttLookup
from gridplace.planner.problem import Option, Problem
from gridplace.planner.solve import SolverSettings
from gridplace.planner.work import WorkClock
from gridplace.specs import Node, PlacementPlan

CHECK_TIME_LIMIT_S = 2.0  # CP-SAT work per check (reference seconds)
DEFAULT_BUDGET_S = 20.0  # all checks of one plan together, at most (validate: this)
MIN_BUDGET_S = 5.0  # a small grid plans in 0.1 s; a few checks need a few seconds
# The budget is counted in work, not on the clock, so that the fixes a plan lists are the same
# on an idle and on a loaded machine: a compile is charged this much, a plan check the
# deterministic CP-SAT work (reference seconds: ``planner.work``). The whole-problem check of a
# fix found runs even when the budget is spent: at most one per kind of change.
COMPILE_CHARGE_S = 0.05


@dataclass
class FixSearch:
    """What checking a fix needs besides the inputs: the predictor, the network lookup for a
    node list (added nodes need their own RTTs), a budget of work (reference seconds, charged
    per compile and per plan check: the same on any machine load) and the plan the fixes are
    for (``None``: none was made; each workload is then alone on the grid)."""

    predictor: OptionPredictor
    latency_for: Callable[[Sequence[Node]], RttLookup]
    budget_s: float
    base_plan: PlacementPlan | None = None
    work: WorkClock = field(default_factory=WorkClock)
    checks: int = 0
    whole_checks: int = 0  # of ``checks``, those of the whole problem
    _bases: dict[str, BasePlan] = field(default_factory=dict)

    def left_s(self) -> float:
        return self.budget_s - self.work.spent_s

    def plan(
        self, problem: Problem, stages: int = 4, limit_s: float | None = None
    ) -> PlacementPlan:
        """A plan check within what is left of the budget (or ``limit_s``), its work charged."""
        budget_s = min(CHECK_TIME_LIMIT_S, self.left_s()) if limit_s is None else limit_s
        settings = SolverSettings(time_limit_s=max(0.1, budget_s), stages=stages)
        return plan_problem(problem, Strategy.CPSAT, settings, explain=False, work=self.work)

    def base(self, workload: str) -> BasePlan:
        if workload not in self._bases:
            self._bases[workload] = base_for(self.base_plan, workload)
        return self._bases[workload]


def compile_charged(search: FixSearch, inputs: PlannerInputs, latency: RttLookup | None) -> Problem:
    search.work.add(COMPILE_CHARGE_S)
    return compile_problem(inputs, search.predictor, latency or search.latency_for(inputs.nodes))


def options_alone(search: FixSearch, inputs: PlannerInputs, workload: str,
           latency: RttLookup | None) -> list[Option]:  # fmt: skip
    """The options compile keeps for ``workload`` alone on ``inputs``' nodes."""
    return list(compile_charged(search, alone(inputs, workload), latency).options)


def check_reduced(
    search: FixSearch, inputs: PlannerInputs, workload: str, latency: RttLookup | None = None
) -> float | None:
    """The workload's planned capacity when it is fully placed on what the base plan leaves
    it of ``inputs`` (``fix_reduced``); None otherwise, or when the budget is spent.
    ``latency``: the lookup when the nodes are the original ones."""
    if search.left_s() <= 0:
        return None
    search.checks += 1
    reduced = reduced_inputs(inputs, search.base(workload), workload)
    problem = compile_charged(search, reduced, latency or search.latency_for(inputs.nodes))
    if not problem.options:
        return None
    return covered(search.plan(problem), workload)


def check_whole(
    search: FixSearch, inputs: PlannerInputs, workload: str, latency: RttLookup | None = None
) -> float | None:
    """The workload's capacity when a plan of all of ``inputs`` covers its demand: the
    unmet-demand stage (the later stages keep its optimum, so they cannot uncover it), with the
    full check's budget even when the search's is spent; None when it does not. The solve
    starts from the base plan's other replicas, as a replan would (not from a relaxed solve of
    its own: that took most of a check's time on the example grid)."""
    search.checks += 1
    search.whole_checks += 1
    if search.base_plan is not None:
        inputs = replace(inputs, previous=others_plan(search.base_plan, workload))
    problem = compile_charged(search, inputs, latency)
    if not problem.options_of(workload_index(problem, workload)):
        return None
    return covered(search.plan(problem, stages=1, limit_s=CHECK_TIME_LIMIT_S), workload)


def covered(plan: PlacementPlan, workload: str) -> float | None:
    assert plan.status is not None
    if any(u.workload == workload for u in plan.status.unplaced):
        return None
    return next(c.capacity_rps for c in plan.status.workloads if c.name == workload)


def workload_index(problem: Problem, workload: str) -> int:
    return next(w.index for w in problem.workloads if w.name == workload)


def fix_budget(settings: SolverSettings | None) -> float:
    """The work the checks get after a plan: the plan's own solver budget (so that explain
    takes about twice as long), at least MIN_BUDGET_S and at most DEFAULT_BUDGET_S."""
    planned_s = settings.time_limit_s if settings is not None else SolverSettings().time_limit_s
    return min(DEFAULT_BUDGET_S, max(MIN_BUDGET_S, planned_s))


def search_for(
    predictor: OptionPredictor,
    latency_for: Callable[[Sequence[Node]], RttLookup],
    budget_s: float = DEFAULT_BUDGET_S,
    base_plan: PlacementPlan | None = None,
) -> FixSearch:
    return FixSearch(predictor, latency_for, budget_s, base_plan)
