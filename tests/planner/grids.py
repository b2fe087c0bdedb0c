"""Builders for small grids and workloads used across planner tests, and ``run`` to plan them
with the fake predictor (every result checked by the ``validate_plan`` oracle)."""

from __future__ import annotations

from typing import Any

from gridplace.planner.compile import PlannerInputs
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import PlanResult, Strategy, make_plan
from gridplace.planner.solve import SolverSettings
from gridplace.specs import InferenceWorkload, Node, builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor

SETTINGS = SolverSettings(time_limit_s=5, num_workers=1, random_seed=0)


def node(
    name: str,
    gpu: str = "rtx-4090",
    count: int = 1,
    region: str = "eu-west",
    provider: str | None = None,
    price: float = 0.5,
    throttle: float | None = None,
    healthy: bool = True,
    claims: str = "self-reported",
    reliability: float | None = None,
    interconnect: str = "pcie",
) -> Node:
    doc: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "region": region,
            "provider": provider or f"p-{name}",
            "pricePerHour": price,
            "gpus": [{"model": gpu, "count": count}],
            "interconnect": interconnect,
            "claims": claims,
        },
        "status": {"healthy": healthy},
    }
    if reliability is not None:
        doc["spec"]["reliability"] = reliability
    if throttle is not None:
        doc["status"]["thermal"] = {"throttleRatio": throttle}
    return Node.model_validate(doc)


def workload(
    name: str,
    model: str = "llama-3.1-8b",
    precisions: tuple[str, ...] = ("bf16",),
    rps: float = 1.0,
    ttft_ms: float = 2000,
    itl_ms: float = 80,
    sources: tuple[tuple[str, float], ...] = (("eu-west", 1.0),),
    replicas: tuple[int, int] = (1, 16),
    spread: tuple[str, int] | None = None,
    trust: dict[str, Any] | None = None,
    priority: int = 100,
    redundancy: dict[str, Any] | None = None,
    pipeline: dict[str, Any] | None = None,
) -> InferenceWorkload:
    spec: dict[str, Any] = {
        "model": model,
        "precisions": list(precisions),
        "slo": {"ttftMs": ttft_ms, "itlMs": itl_ms},
        "traffic": {
            "requestsPerSecond": rps,
            "promptTokens": 1000,
            "outputTokens": 200,
            "sources": [{"region": r, "share": s} for r, s in sources],
        },
        "replicas": {"min": replicas[0], "max": replicas[1]},
        "priority": priority,
    }
    if spread:
        spec["spread"] = {"across": spread[0], "maxPerDomain": spread[1]}
    if trust:
        spec["trust"] = trust
    if redundancy is not None:
        spec["redundancy"] = redundancy
    if pipeline is not None:
        spec["pipeline"] = pipeline
    return InferenceWorkload.model_validate({"metadata": {"name": name}, "spec": spec})


def run(nodes: list[Node], workloads: list[InferenceWorkload], **inputs: Any) -> PlanResult:
    """Plan with CP-SAT on the fake predictor at 10% headroom; the plan must pass the oracle."""
    latency = FakeLatency({n.name: n.spec.region for n in nodes}, default_ms=200)
    result = make_plan(
        PlannerInputs(nodes, workloads, builtin_catalog(), **{"headroom": 0.1, **inputs}),
        fake_predictor,
        latency,
        Strategy.CPSAT,
        SETTINGS,
    )
    assert validate_plan(result.problem, result.plan) == []
    return result
