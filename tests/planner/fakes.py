"""A small, transparent roofline predictor and a latency table, so planner tests do not depend on
the calibrated performance model's numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from gridplace.planner.compile import OptionPrediction, PredictionQuery
from gridplace.specs import Precision
from gridplace.specs.common import Architecture, Interconnect

GIB = 2**30
FP8_ARCHITECTURES = {
    Architecture.ADA,
    Architecture.HOPPER,
    Architecture.BLACKWELL,
    Architecture.CDNA3,
}


def fake_predictor(query: PredictionQuery) -> OptionPrediction:
    model, gpu, precision = query.model, query.gpu, query.precision
    share, tensor_parallel = query.share, query.tensor_parallel
    interconnect, throttle_ratio = query.interconnect, query.throttle_ratio
    ttft_budget_ms, itl_slo_ms = query.ttft_budget_ms, query.itl_slo_ms
    prompt_tokens, output_tokens = query.prompt_tokens, query.output_tokens
    available = gpu.memory_gib / share
    if precision is Precision.FP8 and gpu.architecture not in FP8_ARCHITECTURES:
        return OptionPrediction(
            False, f"no FP8 on {gpu.architecture.value}", False, 0, available, 0, 0, 0
        )
    weights = model.parameters_billion * 1e9 * precision.bytes_per_parameter / GIB / tensor_parallel
    per_gpu = weights + 1.0
    if per_gpu > available:
        return OptionPrediction(True, "", False, per_gpu, available, 0, 0, 0)
    speed = (1 - throttle_ratio) / share
    tp_penalty = (
        1.0 if tensor_parallel == 1 else (1.1 if interconnect is Interconnect.NVLINK else 1.5)
    )
    itl = weights * GIB / (gpu.memory_bandwidth_gbps * 1e9 * 0.8 * speed) * 1000 * tp_penalty + 2
    flops = (
        (gpu.tensor_tflops.bf16 or gpu.tensor_tflops.fp16 or 1.0)
        * 1e12
        * 0.6
        * speed
        * tensor_parallel
    )
    prefill = 2 * model.compute_parameters_billion * 1e9 * prompt_tokens / flops * 1000 + 5
    batch = max(0, min(64, int((available - per_gpu) * 4) + 1))
    step = itl * (1 + 0.02 * batch)
    while batch > 0 and step > itl_slo_ms:
        batch -= 1
        step = itl * (1 + 0.02 * batch)
    capacity = (
        0.0 if batch == 0 or prefill > ttft_budget_ms else batch / (output_tokens * step / 1000)
    )
    return OptionPrediction(True, "", True, per_gpu, available, prefill, itl, capacity)


@dataclass
class FakeLatency:
    """RTT by (region, node region) with a default; the planner asks per node."""

    node_region: dict[str, str]
    table: dict[tuple[str, str], float] = field(default_factory=dict)
    same_region_ms: float = 10.0
    default_ms: float = 120.0

    def rtt_p99_ms(self, region: str, node: str) -> float:
        where = self.node_region[node]
        if where == region:
            return self.same_region_ms
        return self.table.get((region, where), self.table.get((where, region), self.default_ms))
