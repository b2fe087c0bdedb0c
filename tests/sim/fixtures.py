"""Builders for the simulator tests: fake step times, one-replica worlds, a tiny grid and plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gridplace.sim import (
    Arrivals,
    ReplicaLimits,
    ReplicaSetup,
    SpeedSchedule,
    WorkloadSetup,
    World,
)
from gridplace.specs import InferenceWorkload, Node, PlacementPlan


class FakeSteps:
    """Step times with known values: prefill = overhead + tokens x per_token, decode constant."""

    def __init__(
        self, overhead_ms: float = 0.0, per_token_ms: float = 1.0, decode_step_ms: float = 10.0
    ) -> None:
        self._overhead_ms = overhead_ms
        self.per_token_ms = per_token_ms
        self.decode_step_ms = decode_step_ms

    @property
    def overhead_ms(self) -> float:
        return self._overhead_ms

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        return self.decode_step_ms

    def prefill_ms(self, prompt_tokens: int) -> float:
        return self._overhead_ms + prompt_tokens * self.per_token_ms


def one_replica_world(
    steps: FakeSteps,
    limits: ReplicaLimits,
    ttft_slo_ms: float = 1e9,
    itl_slo_ms: float = 1e9,
    mean_prompt: int = 100,
    mean_output: int = 1,
    rtt_ms: float = 0.0,
) -> World:
    return World(
        workloads=(
            WorkloadSetup("w", ttft_slo_ms, itl_slo_ms, mean_prompt, mean_output, ("eu-west",)),
        ),
        replicas=(ReplicaSetup("r0", 0, "n0", SpeedSchedule(steps), limits, (rtt_ms,), (0.0,)),),
    )


def arrivals(
    times_s: Any, prompts: Any, outputs: Any, workload: int = 0, rtt_z: Any = None
) -> Arrivals:
    times = np.asarray(times_s, dtype=np.float64)
    count = len(times)
    return Arrivals(
        time_s=times,
        workload=np.full(count, workload, dtype=np.int64),
        region=np.zeros(count, dtype=np.int64),
        prompt_tokens=np.broadcast_to(np.asarray(prompts, dtype=np.int64), (count,)).copy(),
        output_tokens=np.broadcast_to(np.asarray(outputs, dtype=np.int64), (count,)).copy(),
        rtt_z=np.zeros(count) if rtt_z is None else np.asarray(rtt_z, dtype=np.float64),
    )


def node(
    name: str,
    gpu: str = "rtx-4090",
    count: int = 1,
    region: str = "eu-west",
    price: float = 0.5,
    throttle: float | None = 0.0,
    reliability: float | None = 0.99,
    healthy: bool = True,
) -> Node:
    doc: dict[str, Any] = {
        "metadata": {"name": name},
        "spec": {
            "region": region,
            "provider": f"p-{name}",
            "pricePerHour": price,
            "gpus": [{"model": gpu, "count": count}],
        },
        "status": {"healthy": healthy},
    }
    if reliability is not None:
        doc["spec"]["reliability"] = reliability
    if throttle is not None:
        doc["status"]["thermal"] = {"throttleRatio": throttle}
    return Node.model_validate(doc)


def workload(
    name: str = "chat",
    model: str = "llama-3.1-8b",
    rps: float = 2.0,
    ttft_ms: float = 1000,
    itl_ms: float = 60,
    prompt: int = 500,
    output: int = 100,
    sources: tuple[tuple[str, float], ...] = (("eu-west", 1.0),),
) -> InferenceWorkload:
    return InferenceWorkload.model_validate(
        {
            "metadata": {"name": name},
            "spec": {
                "model": model,
                "precisions": ["fp8"],
                "slo": {"ttftMs": ttft_ms, "itlMs": itl_ms},
                "traffic": {
                    "requestsPerSecond": rps,
                    "promptTokens": prompt,
                    "outputTokens": output,
                    "sources": [{"region": r, "share": s} for r, s in sources],
                },
            },
        }
    )


def plan(*assignments: dict[str, Any]) -> PlacementPlan:
    rows = [{"precision": "fp8", "tensorParallel": 1, **a} for a in assignments]
    return PlacementPlan.model_validate(
        {"metadata": {"name": "test-plan"}, "spec": {"assignments": rows}}
    )


def write_documents(path: Path, documents: list[Any]) -> Path:
    """Write pydantic documents as one multi-document YAML file."""
    path.write_text(
        yaml.safe_dump_all([d.to_yaml_dict() for d in documents], sort_keys=False),
        encoding="utf-8",
    )
    return path
