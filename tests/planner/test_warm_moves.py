"""A replan prefers warm nodes: a replica that must move goes to a node holding its weights (a
standby of the previous plan, or reported cached) over an equal cold one."""

from __future__ import annotations

import pytest

from gridplace.specs import PlacementPlan
from gridplace.specs.plan import Prewarm, PrewarmLevel
from tests.planner.grids import node, run, workload

SERVED = workload("w", rps=1.0, replicas=(1, 1))


def first_plan(providers: tuple[str, str]) -> tuple[PlacementPlan, list[str]]:
    """``w`` on node ``a`` (the cheapest); ``b`` and ``c`` equal to each other, on
    ``providers`` (distinct: two pools; the same: one pool of two nodes)."""
    grid = [
        node("a", price=0.4),
        node("b", price=0.5, provider=providers[0]),
        node("c", price=0.5, provider=providers[1]),
    ]
    plan = run(grid, [SERVED]).plan
    assert [x.node for x in plan.spec.assignments] == ["a"]
    return plan, ["b", "c"]


@pytest.mark.parametrize("providers", [("p1", "p2"), ("p1", "p1")], ids=["two pools", "one pool"])
@pytest.mark.parametrize("warm", ["b", "c"])
def test_a_moved_replica_goes_to_the_node_reported_warm(
    providers: tuple[str, str], warm: str
) -> None:
    previous, names = first_plan(providers)
    survivors = [node(n, price=0.5, provider=p) for n, p in zip(names, providers, strict=True)]
    again = run(survivors, [SERVED], previous=previous, warm=[("w", warm)])
    assert [x.node for x in again.plan.spec.assignments] == [warm]


@pytest.mark.parametrize("warm", ["b", "c"])
def test_a_moved_replica_goes_to_the_previous_plans_standby(warm: str) -> None:
    previous, names = first_plan(("p1", "p2"))
    standby = Prewarm(
        workload="w", node=warm, gpus=[0], precision="bf16", tensor_parallel=1, gpu_share=1,
        level=PrewarmLevel.DISK, weights_gib=15.0, cost_per_hour=0.0,
    )  # fmt: skip
    spec = previous.spec.model_copy(update={"prewarm": [standby]})
    previous = previous.model_copy(update={"spec": spec})
    survivors = [node(n, price=0.5, provider=p) for n, p in zip(names, ("p1", "p2"), strict=True)]
    again = run(survivors, [SERVED], previous=previous)
    assert [x.node for x in again.plan.spec.assignments] == [warm]
    assert again.problem.warm == frozenset({(0, warm)})


def test_warm_nodes_that_are_gone_or_unknown_workloads_are_ignored() -> None:
    previous, names = first_plan(("p1", "p2"))
    survivors = [node(n, price=0.5, provider=p) for n, p in zip(names, ("p1", "p2"), strict=True)]
    again = run(survivors, [SERVED], previous=previous, warm=[("w", "a"), ("other", "b")])
    assert again.problem.warm == frozenset()
