"""Paired allow/reject tests per constraint family: the reject names the family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gridplace.planner.compile import PlannerInputs
from gridplace.planner.planning import PlanResult
from gridplace.specs import InferenceWorkload, Node, builtin_catalog
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
        "vram",
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
    assert {"gpu-count", "gpu-sharing", "vram", "thermal-power", "demand-coverage"} <= families
    assert {"replica-bounds", "spread", "budget"} <= families
