"""Paired allow/reject tests per rule of ``rules.RULES``: the reject names the rule. The table
holds the rules a plan's unplaced reasons name; pinned, failover (soft: a warning, not an unplaced
workload) and vram-pool (implied by the GPU slots on any compiled problem) have their pair below."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest
from ortools.sat.python import cp_model

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.model import build_model
from gridplace.planner.planning import PlanResult
from gridplace.planner.rules import BY_ID, RULES
from gridplace.specs import InferenceWorkload, Node, PlacementPlan, builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, run, workload


def reasons(result: PlanResult) -> str:
    assert result.plan.status is not None
    return " | ".join(r for u in result.plan.status.unplaced for r in [*u.reasons, *u.hints])


@dataclass
class Case:
    family: str
    allow: tuple[list[Node], list[InferenceWorkload], dict[str, Any]]
    reject: tuple[list[Node], list[InferenceWorkload], dict[str, Any]]


def _split(name: str) -> InferenceWorkload:
    """70B at 4-bit, a pipeline allowed: no 24 GB card holds it alone."""
    return workload(
        name, model="llama-3.1-70b", precisions=("int4",), rps=0.1, itl_ms=120,
        pipeline={"maxStages": 4},
    )  # fmt: skip


CASES = [
    Case(
        "gpu-count",
        ([node("a"), node("b")], [workload("w", replicas=(2, 4))], {}),
        ([node("a")], [workload("w", replicas=(2, 4))], {}),
    ),
    Case(
        "gpu-sharing",
        ([node("a", gpu="h100-sxm")], [workload("w", model="phi-3-mini", replicas=(4, 8))], {}),
        ([node("a", gpu="h100-sxm")], [workload("w", model="phi-3-mini", replicas=(5, 8))], {}),
    ),
    Case(
        "thermal-power",
        ([node("a", count=2, throttle=0.0)], [workload("w", replicas=(2, 2))], {}),
        ([node("a", count=2, throttle=0.5)], [workload("w", replicas=(2, 2))], {}),
    ),
    Case(
        "demand-coverage",
        ([node("a")], [workload("w", rps=0.5, replicas=(1, 4))], {}),
        ([node("a")], [workload("w", rps=50, replicas=(1, 4))], {}),
    ),
    Case(
        "replica-bounds",
        ([node("a"), node("b")], [workload("w", rps=6, replicas=(1, 2))], {}),
        ([node("a"), node("b")], [workload("w", rps=6, replicas=(1, 1))], {}),
    ),
    Case(
        "spread",
        (
            [node("a", provider="x"), node("b", provider="y")],
            [workload("w", replicas=(2, 2), spread=("provider", 1))],
            {},
        ),
        (
            [node("a", provider="x"), node("b", provider="x")],
            [workload("w", replicas=(2, 2), spread=("provider", 1))],
            {},
        ),
    ),
    Case(
        "budget",
        ([node("a", price=1.0)], [workload("w")], {"budget_per_hour": 1.0}),
        ([node("a", price=1.0)], [workload("w")], {"budget_per_hour": 0.5}),
    ),
    Case(
        "vram-per-gpu",
        ([node("a", count=2)], [workload("w", model="llama-3.1-70b", precisions=("int4",))], {}),
        ([node("a", count=2)], [workload("w", model="llama-3.1-70b", precisions=("bf16",))], {}),
    ),
    Case(
        "precision-support",
        ([node("a", gpu="rtx-4090")], [workload("w", precisions=("fp8",))], {}),
        ([node("a", gpu="rtx-3090")], [workload("w", precisions=("fp8",))], {}),
    ),
    Case(
        "slo-itl",
        (
            [node("a", gpu="h100-sxm")],
            [workload("w", model="qwen2.5-32b", precisions=("int4",), itl_ms=20)],
            {},
        ),
        (
            [node("a", gpu="rtx-a6000")],
            [workload("w", model="qwen2.5-32b", precisions=("int4",), itl_ms=20)],
            {},
        ),
    ),
    Case(
        "slo-ttft",
        ([node("a", region="eu-west")], [workload("w", ttft_ms=300)], {}),
        ([node("a", region="ap-southeast")], [workload("w", ttft_ms=300)], {}),
    ),
    Case(
        "pipeline-vram",
        ([node(f"n{i}") for i in range(2)], [_split("w")], {}),
        ([node("n0")], [_split("w")], {}),
    ),
    Case(
        "pipeline-itl",
        ([node(f"n{i}") for i in range(2)], [_split("w")], {}),
        ([node("n0"), node("n1", region="us-east")], [_split("w")], {}),
    ),
    Case(
        "trust",
        (
            [node("a", claims="benchmarked", reliability=0.99)],
            [workload("w", trust={"minClaims": "probed", "minReliability": 0.95})],
            {},
        ),
        (
            [node("a", claims="self-reported", reliability=0.99)],
            [workload("w", trust={"minClaims": "probed", "minReliability": 0.95})],
            {},
        ),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
def test_family_allows(case: Case) -> None:
    nodes, workloads, inputs = case.allow
    result = run(nodes, workloads, **inputs)
    assert result.plan.status is not None
    assert result.plan.status.unplaced == [], reasons(result)


@pytest.mark.parametrize("case", CASES, ids=[c.family for c in CASES])
def test_family_rejects_and_names_itself(case: Case) -> None:
    nodes, workloads, inputs = case.reject
    result = run(nodes, workloads, **inputs)
    assert result.plan.status is not None
    assert [u.workload for u in result.plan.status.unplaced] == ["w"]
    assert case.family in reasons(result)


def test_every_constraint_in_the_model_is_named() -> None:
    from gridplace.planner.model import build_model

    nodes = [node("a", count=2, throttle=0.3, provider="x"), node("b", gpu="h100-sxm", count=8)]
    workloads = [
        workload("w", spread=("provider", 1), replicas=(1, 3)),
        workload("v", model="llama-3.1-70b", precisions=("fp8", "int4")),
    ]
    latency = FakeLatency({n.name: n.spec.region for n in nodes})
    from gridplace.planner.compile import compile_problem

    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog(), budget_per_hour=100),
        fake_predictor,
        latency,
    )
    model = build_model(problem).model
    constraints = model.proto.constraints
    assert len(constraints) > 10
    unnamed = [c for c in constraints if not c.name]
    assert unnamed == []
    families = {c.name.split("[")[0] for c in constraints}
    assert {"gpu-count", "gpu-sharing", "vram-pool", "thermal-power", "demand-coverage"} <= families
    assert {"replica-bounds", "spread", "budget"} <= families


def pinned_previous(nodes: list[Node], pinned: bool) -> PlacementPlan:
    """A previous plan with v's replica on node a, pinned or not."""
    first = run(nodes, [workload("v", rps=0.5, replicas=(1, 1))])
    [replica] = first.plan.spec.assignments
    spec = first.plan.spec.model_copy(
        update={"assignments": [replica.model_copy(update={"pinned": pinned})]}
    )
    return first.plan.model_copy(update={"spec": spec})


def test_pinned_allows_a_pinned_replica_that_leaves_room() -> None:
    nodes = [node("a"), node("b")]
    previous = pinned_previous([node("a")], pinned=True)
    both = [workload("v", rps=0.5, replicas=(1, 1)), workload("w", priority=1000)]
    result = run(nodes, both, previous=previous)
    assert result.plan.status is not None and result.plan.status.unplaced == [], reasons(result)


def test_pinned_rejects_and_names_itself() -> None:
    # One GPU, held by v's pinned replica: w of higher priority cannot take it.
    previous = pinned_previous([node("a")], pinned=True)
    both = [workload("v", rps=0.5, replicas=(1, 1)), workload("w", priority=1000)]
    result = run([node("a")], both, previous=previous)
    assert result.plan.status is not None
    assert [u.workload for u in result.plan.status.unplaced] == ["w"]
    assert "pinned" in reasons(result)


def test_failover_allows_two_nodes_and_warns_on_one() -> None:
    n_plus_1 = [workload("w", rps=1.0, redundancy={"nodeFailures": 1})]
    flaky = {"reliability": 0.95}
    allowed = run([node("a", **flaky), node("b", **flaky)], n_plus_1)
    assert allowed.plan.status is not None and allowed.plan.status.warnings == []
    rejected = run([node("a", **flaky)], n_plus_1)
    assert rejected.plan.status is not None
    [warning] = rejected.plan.status.warnings
    assert warning.startswith("failover: w:")


def test_vram_pool_allows_what_fits_and_rejects_what_does_not() -> None:
    nodes = [node("a")]
    problem = compile_problem(
        PlannerInputs(nodes, [workload("w")], builtin_catalog()),
        fake_predictor,
        FakeLatency({"a": nodes[0].spec.region}),
    )
    [option] = [o for o in problem.options if o.share == 1 and o.tensor_parallel == 1]
    memory = problem.pools[option.pool].memory_gib

    def feasible(vram_gib: float) -> bool:
        larger = dataclasses.replace(option, vram_gib=vram_gib)
        pm = build_model(dataclasses.replace(problem, options=(larger,)), families=("vram-pool",))
        pm.model.add(pm.x[option.index] >= 1)
        pm.model.add(pm.literal("vram-pool") == 1)  # the family on, as solve sets it
        return cp_model.CpSolver().solve(pm.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)

    assert feasible(memory)
    assert not feasible(memory + 1)


def test_every_rule_has_one_function_and_a_pair() -> None:
    # pipeline-nodes: tests/planner/test_pipeline_options.py
    paired = {c.family for c in CASES} | {"pinned", "failover", "vram-pool", "pipeline-nodes"}
    assert paired == set(BY_ID)
    assert len(BY_ID) == len(RULES)  # no id twice: a compile-time rule and a family never share
    assert all(callable(rule.function) for rule in RULES)
