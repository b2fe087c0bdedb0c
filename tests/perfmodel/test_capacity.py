"""Capacity inside an SLO: the largest batch meeting ITL and fitting KV, TTFT with queueing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gridplace.planner.perfmodel.capacity import SATURATION_HEADROOM, estimate_capacity
from gridplace.specs.common import Precision
from gridplace.specs.workload import ServiceLevel, Traffic, TrafficSource
from tests.perfmodel.conftest import PredictorFactory, supported


@dataclass(frozen=True)
class Slo:
    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class Sizes:
    prompt_tokens: int
    output_tokens: int


def test_accepts_the_workload_spec_types(make_predictor: PredictorFactory) -> None:
    prediction = supported(make_predictor("llama-3.1-8b", "rtx-4090", Precision.INT4).predict())
    slo = ServiceLevel(ttft_ms=800, itl_ms=60)
    traffic = Traffic(
        requests_per_second=12, prompt_tokens=1500, output_tokens=300,
        sources=[TrafficSource(region="eu-west", share=1.0)],
    )  # fmt: skip
    assert prediction.capacity_rps(slo, traffic) > 0


def test_looser_itl_target_never_lowers_capacity(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-8b", "a100-sxm-80gb", Precision.BF16)
    sizes = Sizes(1000, 200)
    capacities = [predictor.capacity(Slo(5000, itl), sizes).rps for itl in (15, 20, 30, 60, 120)]
    assert capacities == sorted(capacities)
    assert capacities[-1] > capacities[0]


def test_itl_target_below_batch_one_gives_zero(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-70b", "h100-sxm", Precision.FP8, tp=2)
    single = predictor.decode_ms(1, 1100)
    capacity = predictor.capacity(Slo(5000, single * 0.5), Sizes(1000, 200))
    assert capacity.rps == 0
    assert capacity.limited_by == "itl"
    assert "exceeds" in capacity.reason


def test_network_rtt_eats_the_ttft_budget(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-8b", "l40s", Precision.FP8)
    sizes, slo = Sizes(2000, 200), Slo(400, 80)
    near, far = predictor.capacity(slo, sizes, rtt_ms=10), predictor.capacity(slo, sizes, 150)
    assert far.rps < near.rps
    unreachable = predictor.capacity(slo, sizes, rtt_ms=1000)
    assert unreachable.rps == 0 and unreachable.limited_by == "ttft"


def test_kv_cache_caps_the_batch(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-70b", "a100-sxm-80gb", Precision.INT4)
    capacity = predictor.capacity(Slo(60_000, 10_000), Sizes(16_000, 4_000))
    assert capacity.max_batch == predictor.max_sequences(20_000)
    assert capacity.limited_by in ("kv-cache", "ttft")


def test_little_law_and_saturation(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("qwen2.5-7b", "h100-sxm", Precision.BF16)
    sizes = Sizes(800, 300)
    capacity = predictor.capacity(Slo(3000, 40), sizes)
    assert capacity.rps > 0
    assert capacity.itl_ms <= 40
    # Little's law: sequences in flight = rate x time in system.
    in_system_s = (capacity.ttft_ms + sizes.output_tokens * capacity.itl_ms) / 1e3
    assert capacity.concurrency == pytest.approx(capacity.rps * in_system_s)
    # Never above the booked share of saturation throughput at the chosen batch.
    prefill = predictor.prefill_ms(1, 800) - predictor.step_overhead_ms
    decode = predictor.decode_ms(capacity.max_batch, 800 + 150)
    saturation = capacity.max_batch / (capacity.max_batch * prefill + 300 * decode) * 1e3
    assert capacity.rps <= SATURATION_HEADROOM * saturation + 1e-9


def test_estimate_capacity_is_usable_on_its_own(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-8b", "rtx-3090", Precision.INT4)
    direct = estimate_capacity(predictor, Slo(1000, 50), Sizes(512, 128))
    assert direct == predictor.capacity(Slo(1000, 50), Sizes(512, 128))


def test_unsupported_configuration_has_no_capacity(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-8b", "a100-sxm-80gb", Precision.FP8)
    capacity = predictor.capacity(Slo(1000, 50), Sizes(512, 128))
    assert capacity.rps == 0 and "fp8" in capacity.reason
