"""Decomposition: a problem whose parts share no pool solves part by part to the whole model's
plan, however the parts are run (here, local processes, Ray's local mode)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.decompose import split
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import Strategy, plan_problem
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import builtin_catalog
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
