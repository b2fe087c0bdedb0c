"""Shards: a grid cut before compile into miniatures of itself, each compiled and solved apart
and joined."""

from __future__ import annotations

import dataclasses

import pytest

import gridplace.planner.candidates as candidates
import gridplace.planner.compile as compile_module
from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.oracle import validate_plan
from gridplace.planner.output import build_plan
from gridplace.planner.shards import Shard, shard_inputs, solve_shards
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import builtin_catalog
from gridplace.specs.plan import SolverSummary
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

SETTINGS = SolverSettings(time_limit_s=5)
REGIONS = ("eu-west", "ap-east")


def grid() -> PlannerInputs:
    """Two regions; in each, eight one-GPU providers (dearer in turn) and one of two GPUs; eight
    workloads at home in each, each about one GPU's worth."""
    nodes = [
        node(f"{r[:2]}{i}", "rtx-4090", region=r, price=0.3 + 0.05 * i)
        for r in REGIONS
        for i in range(8)
    ] + [node(f"{r[:2]}-big", "rtx-4090", count=2, region=r, price=1.4) for r in REGIONS]
    workloads = [
        workload(f"{r[:2]}-w{i}", rps=1.5, ttft_ms=1000, sources=((r, 1.0),))
        for r in REGIONS
        for i in range(8)
    ]
    return PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.0)


def latency(inputs: PlannerInputs) -> FakeLatency:
    return FakeLatency({n.name: n.spec.region for n in inputs.nodes}, default_ms=2000)


def test_every_node_and_workload_is_in_one_shard_and_each_shard_has_every_region() -> None:
    inputs = grid()
    shards = shard_inputs(inputs, 4)
    names = [n.name for sub, _ in shards for n in sub.nodes]
    assert sorted(names) == sorted(n.name for n in inputs.nodes)
    assert sorted(w for _, members in shards for w in members) == list(range(16))
    for sub, members in shards:
        assert [inputs.workloads[w] for w in members] == list(sub.workloads)
        assert {w.spec.traffic.sources[0].region for w in sub.workloads} == set(REGIONS)
    for region in REGIONS:  # each region's 10 GPUs dealt evenly, the 2-GPU fleet whole
        gpus = [
            sum(n.spec.gpu_count for n in s.nodes if n.spec.region == region) for s, _ in shards
        ]
        assert sorted(gpus) == [2, 2, 3, 3]
    big = [s for s, _ in shards if any(n.name == "eu-big" for n in s.nodes)]
    assert len(big) == 1
    assert shard_inputs(inputs, 4) == shards  # deterministic


def test_a_shard_keeps_only_its_own_warm_pairs() -> None:
    inputs = grid()
    pairs = [(w.name, n.name) for w in inputs.workloads for n in inputs.nodes]
    for sub, _ in shard_inputs(dataclasses.replace(inputs, warm=pairs), 4):
        names = {w.name for w in sub.workloads}
        nodes = {n.name for n in sub.nodes}
        assert sorted(sub.warm) == sorted((w, n) for w, n in pairs if w in names and n in nodes)


def test_a_budget_is_planned_whole() -> None:
    with pytest.raises(ValueError, match="plan the grid whole"):
        shard_inputs(dataclasses.replace(grid(), budget_per_hour=10.0), 2)


def test_one_shard_is_the_whole_grids_solve() -> None:
    inputs = grid()
    whole = compile_problem(inputs, fake_predictor, latency(inputs))
    solved = solve_problem(whole, SETTINGS)
    shard = Shard(inputs, tuple(range(16)), latency(inputs), fake_predictor)
    problem, solution, results = solve_shards([shard], SETTINGS)
    assert problem.options == whole.options and problem.workloads == whole.workloads
    assert solution.counts == solved.counts
    assert results[0].compile_cpu_s > 0 and results[0].peak_rss_mib > 0


def test_shards_and_one_compile_both_reach_every_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each workload keeps its two cheapest options (as a large grid keeps its cheapest few). One
    # compile once kept the same two cheapest pools for all eight workloads of a region; each
    # now counts only what those selected before it left of a pool (``candidates.PoolRoom``),
    # so it reaches every pool, as the shards (each selecting among its own nodes) do.
    monkeypatch.setattr(compile_module, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(compile_module, "OPTION_BUDGET", 0)
    monkeypatch.setattr(candidates, "CANDIDATE_COVER", 0.5)
    inputs = grid()
    whole = compile_problem(inputs, fake_predictor, latency(inputs))
    whole_unmet = unmet(solve_problem(whole, SETTINGS).unmet_rps)
    shards = [
        Shard(sub, members, latency(sub), fake_predictor)
        for sub, members in shard_inputs(inputs, 4)
    ]
    problem, solution, _ = solve_shards(shards, SETTINGS)
    every_pool = set(range(len(whole.pools)))
    assert {o.pool for o in problem.options} == {o.pool for o in whole.options} == every_pool
    assert whole_unmet == 0 and unmet(solution.unmet_rps) == 0
    placements, failures = deaggregate(problem, solution.counts)
    plan = build_plan(problem, placements, SolverSummary(status="test", wall_seconds=0.0),
                      placement_failures=failures)  # fmt: skip
    assert validate_plan(problem, plan) == []
    assert {a.workload for a in plan.spec.assignments} == {w.name for w in inputs.workloads}


def unmet(by_source: dict[tuple[int, str], float]) -> float:
    return sum(by_source.values())
