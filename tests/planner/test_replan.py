"""Replanning from a previous plan: survivors stay, vanished nodes release, pinned stays."""

from __future__ import annotations

import dataclasses

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.hints import previous_counts, previous_then_greedy
from gridplace.planner.oracle import validate_plan
from gridplace.planner.output import build_plan
from gridplace.planner.planning import PlanResult, Strategy, make_plan
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings
from gridplace.specs import InferenceWorkload, Node, PlacementPlan, builtin_catalog
from gridplace.specs.plan import SolverSummary
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

SETTINGS = SolverSettings(time_limit_s=5, num_workers=1)


def plan(
    nodes: list[Node],
    workloads: list[InferenceWorkload],
    previous: PlacementPlan | None = None,
    settings: SolverSettings = SETTINGS,
) -> PlanResult:
    result = make_plan(
        PlannerInputs(nodes, workloads, builtin_catalog(), previous=previous, headroom=0.1),
        fake_predictor,
        FakeLatency({n.name: n.spec.region for n in nodes}),
        Strategy.CPSAT,
        settings,
    )
    assert validate_plan(result.problem, result.plan) == []
    return result


def homes(result: PlanResult) -> set[tuple[str, str, tuple[int, ...]]]:
    return {(a.workload, a.node, tuple(a.gpus)) for a in result.plan.spec.assignments}


GRID = [
    node(f"n{i:02d}", count=2, price=1.0 + (i % 3) * 0.1, provider=f"p{i % 5}") for i in range(20)
]
WORKLOADS = [
    workload("chat", rps=12),
    workload("code", model="qwen2.5-7b", rps=8, spread=("provider", 3)),
]


def test_a_replan_with_nothing_changed_moves_nothing() -> None:
    first = plan(GRID, WORKLOADS)
    again = plan(GRID, WORKLOADS, previous=first.plan)
    assert homes(again) == homes(first)
    assert again.plan.metadata.generation == 2


def test_vanished_nodes_release_their_replicas_and_the_rest_stay() -> None:
    first = plan(GRID, WORKLOADS)
    used = sorted({a.node for a in first.plan.spec.assignments})
    gone = used[0]
    survivors = [n for n in GRID if n.name != gone]
    second = plan(survivors, WORKLOADS, previous=first.plan)
    assert any(gone in reason for reason in second.problem.released)
    assert all(a.node != gone for a in second.plan.spec.assignments)
    kept = {h for h in homes(first) if h[1] != gone}
    moved = kept - homes(second)
    assert moved == set(), f"replicas that did not have to move moved: {moved}"
    assert second.plan.status is not None and second.plan.status.unplaced == []


def test_a_replan_short_of_capacity_serves_the_most_it_can_moving_the_fewest() -> None:
    # Every GPU is busy and demand is not fully covered; one node vanishes. The unmet stage alone
    # (stages=1) must reach the best unmet demand a fresh plan reaches, and among the plans that
    # do, move at most one replica (code -> chat, when the vanished node held two of chat's).
    grid = [node(f"n{i}", count=2, price=1.0 + i * 0.01, provider=f"p{i % 4}") for i in range(5)]
    workloads = [
        workload("chat", rps=18, priority=100),
        workload("code", model="qwen2.5-7b", rps=20, priority=50),
    ]
    first = plan(grid, workloads)
    gone = first.plan.spec.assignments[0].node
    survivors = [n for n in grid if n.name != gone]
    unmet_stage = dataclasses.replace(SETTINGS, stages=1)
    second = plan(survivors, workloads, previous=first.plan, settings=unmet_stage)
    fresh = plan(survivors, workloads, settings=unmet_stage)

    def unmet(result: PlanResult) -> dict[str, float]:
        assert result.plan.status is not None
        return {w.name: w.demand_rps * 1.1 - w.capacity_rps for w in result.plan.status.workloads}

    assert unmet(second) == unmet(fresh)
    assert min(unmet(second).values()) > 0  # short of capacity: the rows bind
    kept = {h for h in homes(first) if h[1] != gone}
    moved = kept - homes(second)
    assert len(moved) <= 1, f"replicas moved beyond the one that may have to: {moved}"
    assert all(workload == "code" for workload, _, _ in moved)


def test_unhealthy_node_is_released_like_a_vanished_one() -> None:
    first = plan(GRID, WORKLOADS)
    sick = first.plan.spec.assignments[0].node
    grid = [
        n if n.name != sick else node(n.name, count=2, healthy=False, provider=n.spec.provider)
        for n in GRID
    ]
    second = plan(grid, WORKLOADS, previous=first.plan)
    assert all(a.node != sick for a in second.plan.spec.assignments)


def test_pinned_replica_stays_where_it_is_even_when_dearer() -> None:
    cheap = node("cheap", price=0.2)
    dear = node("dear", price=3.0)
    first = plan([cheap, dear], [workload("w", rps=0.5, replicas=(1, 1))])
    assert [a.node for a in first.plan.spec.assignments] == ["cheap"]
    moved = first.plan.spec.assignments[0].model_copy(update={"node": "dear", "pinned": True})
    previous = first.plan.model_copy(
        update={"spec": first.plan.spec.model_copy(update={"assignments": [moved]})}
    )
    second = plan([cheap, dear], [workload("w", rps=0.5, replicas=(1, 1))], previous=previous)
    assert [(a.node, a.pinned) for a in second.plan.spec.assignments] == [("dear", True)]
    unpinned = previous.model_copy(
        update={
            "spec": previous.spec.model_copy(
                update={"assignments": [moved.model_copy(update={"pinned": False})]}
            )
        }
    )
    third = plan([cheap, dear], [workload("w", rps=0.5, replicas=(1, 1))], previous=unpinned)
    assert [a.node for a in third.plan.spec.assignments] == ["cheap"]  # cost outranks moves


def test_explanation_summarizes_nodes_with_numbers_and_a_hint() -> None:
    grid = [node(f"c{i}", gpu="rtx-3090") for i in range(3)] + [node("h", gpu="h100-sxm")]
    result = plan(grid, [workload("big", model="llama-3.1-70b", precisions=("bf16",))])
    assert result.plan.status is not None
    (unplaced,) = result.plan.status.unplaced
    summary = unplaced.reasons[0]
    assert summary.startswith("0/4 nodes can serve big: 4 too little VRAM [vram-per-gpu]")
    assert "GiB" in summary
    assert any("GiB per GPU" in hint and "allow int4" in hint for hint in unplaced.hints)


def test_a_pool_that_lost_power_budget_keeps_what_it_can_feed() -> None:
    # Four throttled one-GPU nodes sustain two whole-GPU replicas between them (half a GPU's
    # draw each); after one vanishes, three sustain one. The previous counts now break the
    # thermal-power row: the replan's start keeps one of the two where it is and serves the
    # rest elsewhere (a cooler, dearer pool).
    hot = [node(f"hot{i}", throttle=0.5, provider="p", price=0.2) for i in range(4)]
    cool = [node(f"cool{i}", provider="q", price=2.0) for i in range(2)]
    workloads = [workload("w", rps=3, replicas=(2, 4))]
    first = plan(hot + cool, workloads)
    on_hot = [a for a in first.plan.spec.assignments if a.node.startswith("hot")]
    assert len(on_hot) == 2
    spare = next(n for n in hot if n.name not in {a.node for a in on_hot})
    survivors = [n for n in hot + cool if n.name != spare.name]
    problem = compile_problem(
        PlannerInputs(survivors, workloads, builtin_catalog(), previous=first.plan, headroom=0.1),
        fake_predictor,
        FakeLatency({n.name: n.spec.region for n in survivors}),
    )
    kept = previous_counts(problem)
    assert any(v.startswith("thermal-power") for v in _violations(problem, kept))
    start = previous_then_greedy(problem)
    assert _violations(problem, start) == []
    assert (
        sum(n for o, n in start.items() if problem.pools[problem.options[o].pool].provider == "p")
        == 1
    )
    second = plan(survivors, workloads, previous=first.plan)
    assert second.plan.status is not None and second.plan.status.unplaced == []
    assert len({h for h in homes(first) if h[1] != spare.name} & homes(second)) >= 1


def _violations(problem: Problem, counts: dict[int, int]) -> list[str]:
    placements, failures = deaggregate(problem, counts)
    assert failures == []
    summary = SolverSummary(status="hint", wall_seconds=0.0, strategy="cpsat")
    return validate_plan(problem, build_plan(problem, placements, summary))
