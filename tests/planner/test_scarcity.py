"""Greedy by scarcity (``scarcity.py``): a pool two workloads want is priced up, the workload
that has another pool leaves it, and the start serves what greedy's leaves unmet."""

from __future__ import annotations

from gridplace.planner.baselines import greedy
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.hints import choose_start
from gridplace.planner.model import build_model
from gridplace.planner.problem import Problem
from gridplace.planner.scarcity import pool_prices, scarcity_greedy
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.planner.work import WorkClock
from gridplace.specs import builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload


def _contended() -> Problem:
    """One GPU near the traffic (cheap) and one far (dear), each holding one replica: ``a``
    (loose TTFT) may use either, ``b`` (tight TTFT) only the near one; each fills a replica."""
    nodes = [node("near", region="eu-west", price=0.3), node("far", region="us-east", price=0.6)]
    workloads = [workload("a", rps=3.5, ttft_ms=2000), workload("b", rps=3.5, ttft_ms=300)]
    latency = FakeLatency({n.name: n.spec.region for n in nodes}, default_ms=200)
    inputs = PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.1)
    return compile_problem(inputs, fake_predictor, latency)


def _served(problem: Problem, counts: dict[int, int]) -> dict[str, float]:
    served = {w.name: 0.0 for w in problem.workloads}
    for index, count in counts.items():
        option = problem.options[index]
        served[problem.workloads[option.workload].name] += count * option.capacity_rps
    return served


def test_the_contended_pool_is_priced_up_and_the_free_one_is_not() -> None:
    problem = _contended()
    near = next(p.index for p in problem.pools if p.region == "eu-west")
    far = next(p.index for p in problem.pools if p.region == "us-east")
    prices = pool_prices(problem)
    assert prices[near] > prices[far] == 1.0


def test_scarcity_serves_what_greedy_leaves_unmet() -> None:
    problem = _contended()
    booked = {w.name: w.booked_rps for w in problem.workloads}
    by_greedy = _served(problem, greedy(problem))
    assert by_greedy["b"] == 0.0  # greedy gave ``a`` the cheap near GPU, ``b``'s only one
    by_scarcity = _served(problem, scarcity_greedy(problem))
    assert all(by_scarcity[name] >= booked[name] for name in booked)


def test_the_solve_starts_from_the_scarcity_plan_when_it_is_better() -> None:
    problem = _contended()
    pm = build_model(problem)
    for literal in pm.enforce.values():  # every rule on, as ``solve.solve_whole`` does
        pm.model.add(literal == 1)
    counts, checked = choose_start(pm, SolverSettings(), WorkClock(), solve_problem)
    assert checked is not None and round(checked.objective_value) == 0  # nothing unmet
    assert _served(problem, counts)["b"] >= problem.workloads[1].booked_rps
