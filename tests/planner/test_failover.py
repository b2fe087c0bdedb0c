"""The failover family (soft): capacity after losing the worst node that may fail."""

from __future__ import annotations

from typing import Any

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.model import build_model
from gridplace.planner.planning import PlanResult
from gridplace.specs import Node, builtin_catalog
from gridplace.specs.plan import WorkloadCoverage
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, run, workload


def coverage(result: PlanResult, name: str = "w") -> WorkloadCoverage:
    assert result.plan.status is not None
    return next(c for c in result.plan.status.workloads if c.name == name)


def nodes_of(result: PlanResult, name: str = "w") -> list[str]:
    return sorted(a.node for a in result.plan.spec.assignments if a.workload == name)


N_PLUS_1 = {"nodeFailures": 1}


def flaky(name: str, **kwargs: Any) -> Node:
    return node(name, reliability=0.95, **kwargs)


def test_failover_keeps_the_demand_after_losing_any_node() -> None:
    result = run([flaky("a"), flaky("b")], [workload("w", rps=1.0, redundancy=N_PLUS_1)])
    assert nodes_of(result) == ["a", "b"]
    covered = coverage(result)
    assert covered.capacity_after_node_loss_rps is not None
    assert covered.capacity_after_node_loss_rps >= 1.1  # demand x (1 + headroom 0.1)
    assert result.plan.status is not None and result.plan.status.warnings == []


def test_without_failover_one_replica_is_enough() -> None:
    # redundancy is off unless a workload asks for it
    result = run([flaky("a"), flaky("b")], [workload("w", rps=1.0)])
    assert len(nodes_of(result)) == 1
    assert coverage(result).capacity_after_node_loss_rps is None


def test_every_node_may_fail_unless_an_exemption_is_set() -> None:
    # Both nodes are 99.9% available: by default one of them may still fail (the old default
    # exemptReliability 0.99 exempted them, and one replica passed for N+1).
    steady = [node("a", reliability=0.999), node("b", reliability=0.999)]
    assert nodes_of(run(steady, [workload("w", rps=1.0, redundancy=N_PLUS_1)])) == ["a", "b"]
    exempting = {**N_PLUS_1, "exemptReliability": 0.99}
    assert len(nodes_of(run(steady, [workload("w", rps=1.0, redundancy=exempting)]))) == 1


def test_node_loss_counts_an_exempt_node_marks_it_and_warns() -> None:
    steady = [node("a", reliability=0.999), node("b", reliability=0.999)]
    exempting = {**N_PLUS_1, "exemptReliability": 0.99}
    result = run(steady, [workload("w", rps=1.0, redundancy=exempting)])
    [held] = nodes_of(result)
    covered = coverage(result)
    # The old figure was the full capacity: the exempt node's loss was not counted.
    assert covered.capacity_after_node_loss_rps == 0.0
    assert covered.worst_node == held and covered.worst_node_exempt is True
    assert result.plan.status is not None
    [warning] = result.plan.status.warnings
    assert warning.startswith(f"failover: w: N+1 holds only through exemptions: losing {held}")
    assert "exemptReliability 0.99" in warning


def test_a_grid_too_small_for_failover_still_serves_and_says_so() -> None:
    result = run([flaky("a")], [workload("w", rps=1.0, redundancy=N_PLUS_1)])
    assert result.plan.status is not None
    assert result.plan.status.unplaced == []
    assert nodes_of(result) == ["a"]
    assert coverage(result).worst_node == "a"
    assert coverage(result).worst_node_exempt is False
    assert coverage(result).capacity_after_node_loss_rps == 0.0
    [warning] = result.plan.status.warnings
    assert warning.startswith("failover: w: losing a leaves 0.00 of the 1.1 req/s it needs")


def test_replicas_of_one_workload_spread_over_identical_nodes() -> None:
    # Two identical 2-GPU nodes form one pool: packing would put both replicas on one node.
    nodes = [flaky("a", count=2, provider="x"), flaky("b", count=2, provider="x")]
    result = run(nodes, [workload("w", rps=1.0, replicas=(2, 2), redundancy=N_PLUS_1)])
    assert nodes_of(result) == ["a", "b"]


def test_the_model_counts_the_fullest_node_of_a_group() -> None:
    # Three replicas on a group of two nodes: one node holds two of them (ceil(3/2)).
    nodes = [flaky("a", count=2, provider="x"), flaky("b", count=2, provider="x")]
    latency = FakeLatency({n.name: n.spec.region for n in nodes})
    problem = compile_problem(
        PlannerInputs(nodes, [workload("w", redundancy=N_PLUS_1)], builtin_catalog(), headroom=0.1),
        fake_predictor,
        latency,
    )
    [option] = [o for o in problem.options if o.share == 1 and o.tensor_parallel == 1]
    placements, missing = deaggregate(problem, {option.index: 3})
    assert missing == []
    assert sorted(p.node for p in placements) == ["a", "a", "b"]
    pm = build_model(problem)
    names = {c.name.split("[")[0] for c in pm.model.proto.constraints}
    assert "failover" in names
