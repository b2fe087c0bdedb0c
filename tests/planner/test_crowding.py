"""Candidate selection counts a pool's potential once across the workloads that keep it
(``candidates.PoolRoom``), in compile's fixed order (``compile.selection_order``)."""

from __future__ import annotations

from gridplace.planner.compile import PlannerInputs, compile_problem, selection_order
from gridplace.planner.core import SLOTS_PER_GPU
from gridplace.planner.problem import Problem
from gridplace.specs import builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload


def _compiled(nodes_n: int, workloads_n: int, rps: float) -> Problem:
    """One-GPU nodes, each its own pool (prices differ by a tenth of a cent), and workloads of
    one kind from one region."""
    nodes = [node(f"n{i:03d}", price=round(0.5 + 0.001 * i, 3)) for i in range(nodes_n)]
    workloads = [workload(f"w{i:03d}", rps=rps) for i in range(workloads_n)]
    latency = FakeLatency({n.name: n.spec.region for n in nodes})
    inputs = PlannerInputs(nodes, workloads, builtin_catalog())
    return compile_problem(inputs, fake_predictor, latency, None)


def _reach_rps(problem: Problem) -> float:
    """What the pools some workload keeps could serve together, each pool counted once (its
    best kept option filling it)."""
    best: dict[int, float] = {}
    for o in problem.options:
        pool = problem.pools[o.pool]
        fill = o.capacity_rps * pool.node_count * (pool.gpus_per_node * SLOTS_PER_GPU // o.slots)
        best[o.pool] = max(best.get(o.pool, 0.0), fill)
    return sum(best.values())


def test_workloads_of_one_kind_together_reach_pools_for_their_summed_demand() -> None:
    """100 alike workloads, 200 equal pools, each workload's booked demand most of one pool:
    each keeps its cheapest 60 options (6,000 / 100), which cover it 8x over. Counted whole for
    each of them, the same 60 pools were kept by all (reaching ~270 of 400 booked req/s);
    counted once, each takes its demand from the pools before the next one selects, so the
    kept pools reach past the summed demand, with no more options per workload."""
    problem = _compiled(200, 100, rps=2.0)
    booked = sum(w.booked_rps for w in problem.workloads)
    assert _reach_rps(problem) >= booked
    assert len({o.pool for o in problem.options}) >= 100
    assert max(len(problem.options_of(w.index)) for w in problem.workloads) <= 60


def test_selection_order_is_strictest_first_then_priority() -> None:
    """Groups by TTFT target (lowest first), ties in input order; within a group highest
    priority first, ties in input order."""
    workloads = [
        workload("lax-a", ttft_ms=5000, priority=100),
        workload("strict-low", ttft_ms=500, priority=50),
        workload("lax-b", ttft_ms=5000, priority=200),
        workload("strict-high", ttft_ms=500, priority=200),
        workload("other-model", model="phi-3-mini", ttft_ms=5000),
    ]
    inputs = PlannerInputs([node("n0")], workloads, builtin_catalog())
    assert selection_order(inputs) == [[3, 1], [2, 0], [4]]
