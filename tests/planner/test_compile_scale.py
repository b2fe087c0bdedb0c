"""Compile's structure at scale: rejections built per workload only when read, answers shared by
workloads of one kind only (engine options are part of the kind), the cheapest rows found
without sorting them all, pool RTTs read as rows of topology's table."""

from __future__ import annotations

import pickle

import numpy as np

from gridplace.planner.candidates import _cheapest
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.network import NetworkLatency
from gridplace.planner.options import PoolGrid
from gridplace.planner.pools import build_pools
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Rejections
from gridplace.specs import InferenceWorkload, builtin_catalog
from gridplace.topology import Topology
from tests.planner.fakes import FakeLatency
from tests.planner.grids import node, workload

NODES = [
    node("a1", "rtx-4090", region="eu-west"),
    node("b1", "rtx-3060", region="eu-west", price=0.2),
    node("c1", "a100-sxm-80gb", count=4, region="us-east", price=6.0, interconnect="nvlink"),
]


def _compile(workloads: list[InferenceWorkload]) -> tuple[PlannerInputs, Rejections]:
    inputs = PlannerInputs(NODES, workloads, builtin_catalog(), headroom=0.1)
    latency = FakeLatency({n.name: n.spec.region for n in NODES}, default_ms=120)
    problem = compile_problem(inputs, make_predictor(), latency, cache=None)
    assert isinstance(problem.rejections, Rejections)
    return inputs, problem.rejections


def test_rejections_are_built_per_workload_when_read() -> None:
    big = workload("big", model="llama-3.1-70b", precisions=("bf16",), ttft_ms=400, itl_ms=20)
    small = workload("small", precisions=("bf16", "int4"), ttft_ms=600)
    _, rejections = _compile([big, small])
    assert rejections._built == {}  # nothing built by compile itself
    first = rejections.of(0)
    assert first and {r.workload for r in first} == {0}
    assert set(rejections._built) == {0}
    everything = tuple(rejections)
    assert everything[: len(first)] == first and len(everything) == len(rejections)
    assert rejections == everything and pickle.loads(pickle.dumps(rejections)) == everything


def test_engine_options_make_another_kind() -> None:
    plain = workload("plain")
    document = workload("odd").model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["engineOptions"] = {"generation": "no-such-release"}
    odd = InferenceWorkload.model_validate(document)
    inputs, rejections = _compile([plain, odd])
    problem = compile_problem(
        inputs, make_predictor(), FakeLatency({n.name: n.spec.region for n in NODES}), cache=None
    )
    assert problem.options_of(0)
    # The unknown release refuses every pool for the second workload, not the first's answers.
    assert not problem.options_of(1)
    assert all("engineOptions" in (r.reason.detail or "") for r in problem.rejections_of(1))
    assert rejections.of(1)


def test_the_cheapest_rows_are_the_full_sorts_first() -> None:
    rng = np.random.default_rng(3)
    for count in (10, 200, 5000):
        score = rng.integers(0, 20, count).astype(np.float64)  # many ties on both keys
        tie = rng.integers(0, 5, count)
        for limit in (1, 24, 100):
            want = np.lexsort((tie, score))[:limit]
            assert np.array_equal(_cheapest(score, tie, limit), want)


def test_pool_rtts_read_as_rows_match_the_per_node_lookup() -> None:
    nodes = [
        node("a1", "rtx-4090", region="eu-west"),
        node("a2", "rtx-4090", region="eu-west"),
        node("b1", "l40s", count=2, region="us-east", price=1.6),
        node("b2", "l40s", count=2, region="us-east", price=1.6),
        node("c1", "a100-sxm-80gb", count=4, region="ap-northeast", price=6.0),
    ]
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(["eu-west", "us-east"]))
    pools, gpus = build_pools(nodes, builtin_catalog())
    rows = PoolGrid(pools, gpus, latency.rtt_p99_ms, latency.rtt_p99_many)
    per_node = PoolGrid(pools, gpus, latency.rtt_p99_ms)
    for region in ("eu-west", "us-east", "sa-east"):  # the last one not in the table
        assert np.array_equal(rows.rtt_ms(region), per_node.rtt_ms(region))
