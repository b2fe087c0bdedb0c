"""Warm standbys: chosen under the workload's budget, on GPUs no replica uses, never on a node
that serves the workload; none without a budget."""

from __future__ import annotations

from typing import Any

import pytest

from gridplace.specs import InferenceWorkload
from gridplace.specs.plan import PrewarmLevel
from tests.planner.grids import node, run, workload

WEIGHTS_8B_BF16_GIB = 8.03e9 * 2 / 2**30  # llama-3.1-8b at bf16


def with_prewarm(
    base: InferenceWorkload, disk_gib: float, idle_per_hour: float
) -> InferenceWorkload:
    document: dict[str, Any] = base.model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["prewarm"] = {"diskGiB": disk_gib, "idleGpuBudgetPerHour": idle_per_hour}
    return InferenceWorkload.model_validate(document)


def plan_with(disk_gib: float, idle_per_hour: float, nodes: int = 6) -> Any:
    grid = [node(f"n{i}", count=2, price=1.0) for i in range(nodes)]
    served = workload("w", rps=1.0, replicas=(2, 4), spread=("provider", 1))
    return run(grid, [with_prewarm(served, disk_gib, idle_per_hour)])


@pytest.mark.parametrize(
    ("name", "disk_gib", "idle_per_hour", "levels"),
    [
        ("no budget: nothing", 0.0, 0.0, []),
        ("disk only", 100.0, 0.0, [PrewarmLevel.DISK]),
        ("an idle GPU paid for: vram", 100.0, 0.5, [PrewarmLevel.VRAM]),
        ("too little disk for the weights", 10.0, 5.0, []),
    ],
)
def test_levels_follow_the_budget(
    name: str, disk_gib: float, idle_per_hour: float, levels: list[PrewarmLevel]
) -> None:
    plan = plan_with(disk_gib, idle_per_hour).plan
    assert [p.level for p in plan.spec.prewarm] == levels, name
    for entry in plan.spec.prewarm:
        assert entry.weights_gib == pytest.approx(WEIGHTS_8B_BF16_GIB, rel=0.02)
        assert entry.weights_gib <= disk_gib
        assert entry.cost_per_hour <= idle_per_hour


def test_standbys_never_take_an_assigned_gpu_or_a_serving_node() -> None:
    result = plan_with(100.0, 0.5)
    plan = result.plan
    assert plan.spec.prewarm
    serving = {a.node for a in plan.spec.assignments if a.workload == "w"}
    used = {(a.node, g) for a in plan.spec.assignments for g in a.gpus}
    for entry in plan.spec.prewarm:
        assert entry.node not in serving
        assert not {(entry.node, g) for g in entry.gpus} & used
        used |= {(entry.node, g) for g in entry.gpus}  # nor one another's


def test_two_workloads_standbys_do_not_share_gpus() -> None:
    grid = [node(f"n{i}", count=1, price=1.0) for i in range(6)]
    served = [
        with_prewarm(workload(name, rps=1.0, replicas=(2, 2), spread=("provider", 1)), 100.0, 0.0)
        for name in ("a", "b")
    ]
    plan = run(grid, served).plan
    held = [(p.node, g) for p in plan.spec.prewarm for g in p.gpus]
    assert len(plan.spec.prewarm) == 2 and len(set(held)) == len(held)


def test_a_workload_without_a_budget_gets_no_standby() -> None:
    grid = [node(f"n{i}", count=2) for i in range(4)]
    assert run(grid, [workload("w", rps=1.0)]).plan.spec.prewarm == []


def test_a_standby_never_takes_a_pipeline_stage_and_a_pipeline_gets_none() -> None:
    grid = [node(f"n{i}", price=1.0) for i in range(3)]
    split = workload(
        "big", model="llama-3.1-70b", precisions=("int4",), rps=0.1, itl_ms=120,
        pipeline={"maxStages": 4},
    )  # fmt: skip
    small = workload("v", rps=0.2, replicas=(1, 1))
    plan = run(grid, [with_prewarm(split, 100.0, 5.0), with_prewarm(small, 100.0, 5.0)]).plan
    stages = {s.node for a in plan.spec.assignments for s in a.stages or []}
    assert len(stages) == 2
    assert [p.workload for p in plan.spec.prewarm] == []  # the one node left serves v
    assert not {p.node for p in plan.spec.prewarm} & stages
