"""Builders for small grids and workloads used across planner tests."""

from __future__ import annotations

from typing import Any

from gridplace.specs import InferenceWorkload, Node


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
    return InferenceWorkload.model_validate({"metadata": {"name": name}, "spec": spec})
