"""Small builders shared by the topology tests: Node and LatencyProbes documents in memory."""

from __future__ import annotations

from typing import Any

from gridplace.specs import LatencyProbes, Node

MEASURED_AT = "2026-11-26T12:00:00Z"


def node(name: str, region: str, network_gbps: float = 1.0) -> Node:
    return Node.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "region": region,
                "provider": "p",
                "pricePerHour": 1.0,
                "gpus": [{"model": "rtx-4090", "count": 1}],
                "networkGbps": network_gbps,
            },
        }
    )


def probes(*samples: dict[str, Any], measured_at: str | None = MEASURED_AT) -> LatencyProbes:
    spec: dict[str, Any] = {"samples": list(samples)}
    if measured_at is not None:
        spec["measuredAt"] = measured_at
    return LatencyProbes.model_validate({"metadata": {"name": "p"}, "spec": spec})


def sample(source: str, target: str, *rtt_ms: float, **extra: Any) -> dict[str, Any]:
    return {"source": source, "target": target, "rttMs": list(rtt_ms), **extra}
