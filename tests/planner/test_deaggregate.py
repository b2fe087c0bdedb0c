"""De-aggregation: counts per option become nodes and GPUs by the documented rule."""

from __future__ import annotations

from gridplace.planner.core import power_budget_watts, power_draw_watts
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.problem import Problem
from tests.planner.grids import node, run, workload


def _one_whole_gpu_replica_each(problem: Problem) -> dict[int, int]:
    return {
        next(o.index for o in problem.options_of(w.index) if o.share == 1): 1
        for w in problem.workloads
    }


def test_replicas_stay_within_each_nodes_share_of_a_throttled_pools_power() -> None:
    # Two 2-GPU nodes throttled half the time: each may draw one GPU's TDP. Two workloads of
    # one whole-GPU replica each fit the pool's row; packing them onto one node (the rule for an
    # unthrottled pool) would put it at twice its budget.
    grid = [node(f"n{i}", count=2, throttle=0.5, provider="p") for i in range(2)]
    result = run(
        grid, [workload("a", rps=0.5, replicas=(1, 1)), workload("b", rps=0.5, replicas=(1, 1))]
    )
    problem = result.problem
    (pool,) = problem.pools
    budget = power_budget_watts(pool)
    assert budget is not None
    draw: dict[str, int] = {}
    placements, failures = deaggregate(problem, _one_whole_gpu_replica_each(problem))
    assert failures == []
    for p in placements:
        draw[p.node] = draw.get(p.node, 0) + power_draw_watts(problem.options[p.option].power_watts)
    assert sorted(draw) == ["n0", "n1"]
    assert max(draw.values()) <= budget / pool.node_count


def test_an_unthrottled_pool_is_packed_to_keep_whole_nodes_free() -> None:
    grid = [node(f"n{i}", count=2, provider="p") for i in range(2)]
    result = run(
        grid, [workload("a", rps=0.5, replicas=(1, 1)), workload("b", rps=0.5, replicas=(1, 1))]
    )
    problem = result.problem
    placements, _ = deaggregate(problem, _one_whole_gpu_replica_each(problem))
    assert len({p.node for p in placements}) == 1
