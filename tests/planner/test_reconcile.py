"""Sharded plans: the pass over the shards' leftover capacity serves demand a shard could not,
on the real free GPUs only; a sharded plan where the shards do not interact costs what the
whole model's does; a previous plan is kept shard by shard; the runners give the same plan."""

from __future__ import annotations

import dataclasses

import pytest

from gridplace.planner.compile import PlannerInputs
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import make_plan
from gridplace.planner.ports import OptionPredictor
from gridplace.planner.predictor import make_predictor
from gridplace.planner.reconcile import reduced_nodes
from gridplace.planner.shard_plan import plan_shards
from gridplace.planner.shards import shard_count, shard_inputs
from gridplace.planner.solve import SolverSettings
from gridplace.specs import Node, builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

SETTINGS = SolverSettings(time_limit_s=4)


def lopsided() -> PlannerInputs:
    """Two 2-GPU providers, one per shard; "big" (dealt first: shard 0) wants about three
    GPUs, "small" (shard 1) one: shard 0 runs out, shard 1 has a GPU spare."""
    nodes = [node("a", count=2, price=1.0), node("b", count=2, price=1.2)]
    workloads = [workload("big", rps=12.0, ttft_ms=1000), workload("small", rps=3.0, ttft_ms=1000)]
    return PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.0)


def latency(inputs: PlannerInputs) -> FakeLatency:
    return FakeLatency({n.name: n.spec.region for n in inputs.nodes}, default_ms=2000)


def _fake() -> OptionPredictor:
    return fake_predictor


def test_the_pass_serves_demand_its_shard_could_not_on_the_other_shards_free_gpu() -> None:
    inputs = lopsided()
    shards = shard_inputs(inputs, 2)
    assert [[n.name for n in sub.nodes] for sub, _ in shards] == [["a"], ["b"]]
    assert [members for _, members in shards] == [(0,), (1,)]
    sharded = plan_shards(inputs, fake_predictor, latency(inputs), 2, SETTINGS)
    found = sharded.reconciled
    assert found is not None and found.replicas >= 1
    assert found.unmet_after_rps < found.unmet_before_rps
    names = {w.index: w.name for w in sharded.problem.workloads}
    on_b = [
        (names[sharded.problem.options[p.option].workload], p.gpus)
        for p in sharded.placements
        if p.node == "b"
    ]
    assert sorted(on_b) == [("big", (1,)), ("small", (0,))]  # the pass took the free GPU
    plan = make_plan(inputs, fake_predictor, latency(inputs), settings=SETTINGS, shards=2).plan
    assert validate_plan(sharded.problem, plan) == []
    assert plan.status is not None
    assert plan.status.solver is not None and "2 shards" in plan.status.solver.status
    assert any("replicas added" in n for n in plan.status.notes)


def test_without_the_pass_the_short_shard_leaves_that_demand_unmet() -> None:
    inputs = lopsided()
    sharded = plan_shards(inputs, fake_predictor, latency(inputs), 2, SETTINGS)
    assert sharded.reconciled is not None
    before, after = sharded.reconciled.unmet_before_rps, sharded.reconciled.unmet_after_rps
    assert before == pytest.approx(sum(s.unmet_rps for s in sharded.shards))
    assert before > 0.5 and after < before - 0.5


def test_a_node_keeps_its_free_gpus_at_their_real_indices_and_price_per_gpu() -> None:
    mixed = Node.model_validate(
        {
            "metadata": {"name": "m"},
            "spec": {
                "region": "eu-west", "provider": "p", "pricePerHour": 4.0,
                "gpus": [{"model": "rtx-4090", "count": 2}, {"model": "a100-80gb", "count": 2}],
            },
        }
    )  # fmt: skip
    full, hot = node("full", count=2), node("hot", count=4, throttle=0.3)
    kept, real = reduced_nodes(
        [mixed, full, hot], {"m": {0, 3}, "full": {0, 1}, "hot": {0}}, {"hot"}
    )
    assert [n.name for n in kept] == ["m"]  # none free, and a throttled node in use, left out
    groups = [(g.model, g.count) for g in kept[0].spec.gpus]
    assert groups == [("rtx-4090", 1), ("a100-80gb", 1)] and real["m"] == (1, 2)
    assert kept[0].spec.price_per_hour == pytest.approx(2.0)


def test_shards_that_do_not_interact_cost_what_the_whole_model_does() -> None:
    """One cheap GPU per workload in each shard: the whole model's plan is the shards' own."""
    nodes = [node(f"n{i}", price=0.4 + 0.01 * i) for i in range(4)]
    workloads = [workload(f"w{i}", rps=4.0, ttft_ms=1000) for i in range(4)]
    inputs = PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.0)
    whole = make_plan(inputs, fake_predictor, latency(inputs), settings=SETTINGS).plan
    sharded = make_plan(inputs, fake_predictor, latency(inputs), settings=SETTINGS, shards=2)
    assert whole.status is not None and sharded.plan.status is not None
    assert whole.status.unplaced == [] and sharded.plan.status.unplaced == []
    assert sharded.plan.status.cost_per_hour == whole.status.cost_per_hour
    assert len(sharded.plan.spec.assignments) == len(whole.spec.assignments)
    assert validate_plan(sharded.problem, sharded.plan) == []


def test_a_sharded_replan_of_an_unchanged_grid_keeps_every_replica() -> None:
    inputs = lopsided()
    first = make_plan(inputs, fake_predictor, latency(inputs), settings=SETTINGS, shards=2)
    again = make_plan(
        dataclasses.replace(inputs, previous=first.plan),
        fake_predictor,
        latency(inputs),
        settings=SETTINGS,
        shards=2,
    )
    assert again.plan.metadata.generation == 2
    kept = {(a.workload, a.node, tuple(a.gpus)) for a in again.plan.spec.assignments}
    assert {(a.workload, a.node, tuple(a.gpus)) for a in first.plan.spec.assignments} <= kept
    # every replica but the pass's is in its workload's shard: each shard keeps its own
    assert first.reconciled is not None and first.reconciled.replicas >= 1
    assert len(again.problem.previous) == len(first.plan.spec.assignments) - 1


def test_local_processes_give_the_same_sharded_plan() -> None:
    inputs = lopsided()
    alone = plan_shards(inputs, fake_predictor, latency(inputs), 2, SETTINGS, _fake)
    apart = plan_shards(
        inputs, fake_predictor, latency(inputs), 2, dataclasses.replace(SETTINGS, workers=2), _fake
    )
    assert apart.placements == alone.placements


def test_ray_gives_the_same_sharded_plan() -> None:
    """On a local Ray (its workers import gridplace, not the tests: the calibrated model)."""
    ray = pytest.importorskip("ray")
    inputs = lopsided()
    here = plan_shards(inputs, make_predictor(), latency(inputs), 2, SETTINGS, make_predictor)
    try:
        local = dataclasses.replace(SETTINGS, ray_address="local")
        apart = plan_shards(inputs, make_predictor(), latency(inputs), 2, local, make_predictor)
        assert apart.placements == here.placements and here.placements
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    ("requested", "nodes", "count"),
    [("auto", 14_999, 1), ("auto", 15_000, 2), ("auto", 100_000, 10), ("auto", 3, 1), (4, 2, 2)],
)
def test_shard_count(requested: int | str, nodes: int, count: int) -> None:
    assert shard_count(requested, nodes) == count  # type: ignore[arg-type]


def test_a_shard_count_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="1-64 or auto"):
        shard_count(0, 10)
