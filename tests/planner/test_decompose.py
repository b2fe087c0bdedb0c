"""Decomposition: a problem whose parts share no pool solves part by part to the whole model's
plan, however the parts are run (here, local processes, Ray's local mode)."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.decompose import by_site, split
from gridplace.planner.oracle import validate_plan
from gridplace.planner.output import build_plan
from gridplace.planner.parts import RayMissing
from gridplace.planner.planning import Strategy, plan_problem
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import PlacementPlan, builtin_catalog
from gridplace.specs.plan import SolverSummary
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

SETTINGS = SolverSettings(time_limit_s=5)


def two_continents(budget: float | None = None) -> Problem:
    """Europe and Asia, 400 ms apart: a 300 ms TTFT target keeps each workload at home."""
    nodes = [
        node("eu1", "rtx-4090", count=2, region="eu-west", price=0.7),
        node("eu2", "l40s", region="eu-west", price=0.9),
        node("eu3", "rtx-4090", region="eu-west", price=0.4),
        node("ap1", "rtx-4090", count=2, region="ap-east", price=0.8),
        node("ap2", "a100-sxm-80gb", count=2, region="ap-east", price=3.0),
    ]
    workloads = [
        workload("eu-chat", rps=6.0, ttft_ms=300, sources=(("eu-west", 1.0),)),
        workload("ap-chat", rps=5.0, ttft_ms=300, sources=(("ap-east", 1.0),)),
        workload("eu-code", model="qwen2.5-7b", rps=2.0, ttft_ms=300, priority=200),
        workload(
            "ap-safe", rps=2.0, ttft_ms=300, sources=(("ap-east", 1.0),),
            redundancy={"nodeFailures": 1},
        ),
    ]  # fmt: skip
    latency = FakeLatency({n.name: n.spec.region for n in nodes}, default_ms=400)
    inputs = PlannerInputs(
        nodes, workloads, builtin_catalog(), headroom=0.1, budget_per_hour=budget
    )
    return compile_problem(inputs, fake_predictor, latency)


def plan_text(problem: Problem, settings: SolverSettings) -> str:
    plan = plan_problem(problem, Strategy.CPSAT, settings)
    assert validate_plan(problem, plan) == []
    document = plan.model_dump(mode="json")
    document["status"]["solver"].pop("wall_seconds")  # measured, not planned
    return json.dumps(document, sort_keys=True)


def test_the_grid_splits_by_continent() -> None:
    parts = split(two_continents())
    assert [p.workloads for p in parts] == [(0, 2), (1, 3)]
    problem = two_continents()
    for part in parts:  # every option of a part is the whole problem's, renumbered
        for new, old in enumerate(part.options):
            assert part.problem.options[new].capacity_rps == problem.options[old].capacity_rps
            assert (
                part.workloads[part.problem.options[new].workload] == problem.options[old].workload
            )


def test_a_budget_keeps_the_problem_whole() -> None:
    assert len(split(two_continents(budget=100.0))) == 1


def test_parts_solve_to_the_whole_models_plan() -> None:
    problem = two_continents()
    whole = plan_text(problem, dataclasses.replace(SETTINGS, decompose=False))
    assert plan_text(problem, SETTINGS) == whole
    assert plan_text(problem, dataclasses.replace(SETTINGS, workers=2)) == whole


def test_parts_merge_their_figures() -> None:
    problem = two_continents()
    whole = solve_problem(problem, dataclasses.replace(SETTINGS, decompose=False))
    parts = solve_problem(problem, SETTINGS)
    assert parts.counts == whole.counts
    for name in ("unmet-demand", "cost", "preference"):
        a, b = parts.stage(name), whole.stage(name)
        assert a is not None and b is not None
        assert (a.status, a.objective) == (b.status, b.objective)


def test_ray_gives_the_same_plan() -> None:
    ray = pytest.importorskip("ray")
    problem = two_continents()
    whole = plan_text(problem, dataclasses.replace(SETTINGS, decompose=False))
    try:
        assert plan_text(problem, dataclasses.replace(SETTINGS, ray_address="local")) == whole
    finally:
        ray.shutdown()


def crossing() -> Problem:
    """Europe is short of GPUs for its demand; Asia has spare ones within a 1 s TTFT."""
    nodes = [
        node("eu1", "rtx-4090", region="eu-west", price=0.5),
        node("ap1", "rtx-4090", count=2, region="ap-east", price=0.6),
        node("ap2", "l40s", count=2, region="ap-east", price=1.8),
    ]
    workloads = [
        workload("eu-chat", rps=9.0, ttft_ms=1000, sources=(("eu-west", 0.7), ("ap-east", 0.3))),
        workload("ap-chat", rps=3.0, ttft_ms=1000, sources=(("ap-east", 1.0),)),
    ]
    latency = FakeLatency({n.name: n.spec.region for n in nodes}, default_ms=200)
    inputs = PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.1)
    return compile_problem(inputs, fake_predictor, latency)


def test_home_sites_keep_each_workloads_home_pools() -> None:
    problem = crossing()
    restricted = by_site(problem, {"eu-west": "eu", "ap-east": "ap"})
    home = {0: "eu-west", 1: "ap-east"}
    kept = [problem.options[i] for i in restricted.options]
    assert kept and all(problem.pools[o.pool].region == home[o.workload] for o in kept)
    assert len(kept) < len(problem.options)  # eu-chat's options in Asia are cut
    assert len(split(restricted.problem)) == 2


def test_the_whole_model_reconciles_what_crosses_sites() -> None:
    problem = crossing()
    sites = (("ap-east", "ap"), ("eu-west", "eu"))
    whole = solve_problem(problem, dataclasses.replace(SETTINGS, decompose=False))
    by_sites = solve_problem(problem, dataclasses.replace(SETTINGS, sites=sites))
    restricted = by_site(problem, dict(sites))
    at_home = solve_problem(restricted.problem, SETTINGS)
    home_unmet, unmet = at_home.stage("unmet-demand"), by_sites.stage("unmet-demand")
    assert home_unmet is not None and unmet is not None
    assert home_unmet.objective > 0  # Europe alone cannot serve eu-chat ...
    for name in ("unmet-demand", "cost"):  # ... the reconciled plan is the whole model's
        a, b = by_sites.stage(name), whole.stage(name)
        assert a is not None and b is not None and a.objective == b.objective
    assert validate_plan(problem, plan_from(problem, by_sites.counts)) == []


def plan_from(problem: Problem, counts: dict[int, int]) -> PlacementPlan:
    placements, failures = deaggregate(problem, counts)
    summary = SolverSummary(status="test", wall_seconds=0.0)
    return build_plan(problem, placements, summary, placement_failures=failures)


def test_ray_asked_for_without_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    settings = dataclasses.replace(SETTINGS, ray_address="head:6379")
    with pytest.raises(RayMissing, match=r"pip install 'gridplace\[scale\]'"):
        solve_problem(two_continents(), settings)
