"""Engine generations and host time: an older engine release (vllm-2023) is eager, pays host time
per step and per sequence and a slower all-reduce; a slower host CPU stretches host time only;
the all-reduce's latency grows with the tensor-parallel degree, faster over PCIe than NVLink."""

from __future__ import annotations

import dataclasses

import pytest

from gridplace.planner.perfmodel import (
    GENERATIONS,
    EngineGeneration,
    InvalidQuery,
    Prediction,
    Predictor,
)
from gridplace.planner.perfmodel.generations import VLLM_2023
from gridplace.planner.perfmodel.hardware import gpu_link
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Interconnect, Precision
from tests.perfmodel.conftest import PredictorFactory

LEGACY = "vllm-2023"


def _point(predictor: Predictor, batch: int, prompt: int, context: int) -> Prediction:
    prediction = predictor.predict(batch, prompt, context)
    assert isinstance(prediction, Prediction)
    return prediction


@pytest.mark.parametrize("interconnect", [Interconnect.NVLINK, Interconnect.PCIE])
def test_allreduce_latency_grows_with_tensor_parallel_degree(interconnect: Interconnect) -> None:
    link = gpu_link(builtin_catalog().gpus["a100-sxm-80gb"], interconnect)
    small = 16 * 1024  # one decode token's hidden state: latency-bound
    times = [link.allreduce_ms(small, tp) for tp in (2, 4, 8)]
    assert times == sorted(times) and times[0] < times[-1]


def test_allreduce_latency_grows_faster_over_pcie_than_nvlink() -> None:
    gpu = builtin_catalog().gpus["a100-sxm-80gb"]
    nvlink, pcie = gpu_link(gpu, Interconnect.NVLINK), gpu_link(gpu, Interconnect.PCIE)
    small = 16 * 1024

    def growth(link_tp2: float, link_tp8: float) -> float:
        return link_tp8 - link_tp2

    nvlink_growth = growth(nvlink.allreduce_ms(small, 2), nvlink.allreduce_ms(small, 8))
    pcie_growth = growth(pcie.allreduce_ms(small, 2), pcie.allreduce_ms(small, 8))
    assert pcie_growth > 2 * nvlink_growth > 0


def test_no_generation_is_todays_engine(make_predictor: PredictorFactory) -> None:
    today = make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=8)
    same = make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=8, host_time_factor=1.0)
    assert _point(today, 8, 512, 576).itl_ms == _point(same, 8, 512, 576).itl_ms
    assert today.traits.sequence_overhead_us == 0.0


def test_generation_by_name_or_record_is_the_same(make_predictor: PredictorFactory) -> None:
    by_name = make_predictor(
        "llama-2-70b", "a100-sxm-80gb", Precision.FP16, tp=8, generation=LEGACY
    )
    by_record = make_predictor(
        "llama-2-70b", "a100-sxm-80gb", Precision.FP16, tp=8, generation=GENERATIONS[LEGACY]
    )
    assert _point(by_name, 4, 512, 576).itl_ms == _point(by_record, 4, 512, 576).itl_ms


def test_legacy_decode_is_host_bound_at_high_tp(make_predictor: PredictorFactory) -> None:
    """Splitwise: Llama-2-70B decode on DGX-H100 takes ~30 ms at tp 4 and tp 8 alike."""
    tp4, tp8 = (
        make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=tp, generation=LEGACY)
        for tp in (4, 8)
    )
    today = make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=8)
    itl4, itl8 = _point(tp4, 1, 512, 576).itl_ms, _point(tp8, 1, 512, 576).itl_ms
    assert itl8 == pytest.approx(itl4, rel=0.05)
    assert itl8 > 2 * _point(today, 1, 512, 576).itl_ms


def test_legacy_itl_grows_with_batch_by_the_sequence_overhead(
    make_predictor: PredictorFactory,
) -> None:
    legacy = make_predictor("llama-2-70b", "a100-sxm-80gb", Precision.FP16, tp=8, generation=LEGACY)
    today = make_predictor("llama-2-70b", "a100-sxm-80gb", Precision.FP16, tp=8)
    legacy_growth = _point(legacy, 64, 512, 576).itl_ms - _point(legacy, 1, 512, 576).itl_ms
    today_growth = _point(today, 64, 512, 576).itl_ms - _point(today, 1, 512, 576).itl_ms
    assert legacy_growth >= 63 * VLLM_2023.sequence_overhead_us * 1e-3 * 0.99
    assert legacy_growth > 2 * today_growth


def test_legacy_prefill_is_one_step_and_pays_the_slower_allreduce(
    make_predictor: PredictorFactory,
) -> None:
    legacy = make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=8, generation=LEGACY)
    today = make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, tp=8)
    old, new = _point(legacy, 16, 1024, 0).prefill, _point(today, 16, 1024, 0).prefill
    # 16k tokens: today's engine chunks them (8192 per step), the 2023 engine runs one step.
    assert legacy.prefill_chunk_tokens > 16 * 1024 > today.prefill_chunk_tokens
    assert old.overhead_ms == pytest.approx(VLLM_2023.step_overhead_ms)
    assert old.communication_ms > 3 * new.communication_ms


@pytest.mark.parametrize("generation", [None, LEGACY])
def test_slower_host_never_speeds_up_and_leaves_gpu_time_alone(
    make_predictor: PredictorFactory, generation: str | None
) -> None:
    base, slow = (
        make_predictor(
            "llama-2-70b",
            "a100-sxm-80gb",
            Precision.FP16,
            tp=8,
            generation=generation,
            host_time_factor=factor,
        )
        for factor in (1.0, 1.5)
    )
    for batch in (1, 64):
        fast_step = _point(base, batch, 512, 576).decode
        slow_step = _point(slow, batch, 512, 576).decode
        assert slow_step.total_ms > fast_step.total_ms
        assert slow_step.weights_ms == fast_step.weights_ms
        assert slow_step.communication_ms == fast_step.communication_ms
    assert slow.step_overhead_ms == pytest.approx(1.5 * base.step_overhead_ms)


@pytest.mark.parametrize("batch", [1, 4, 16, 64])
def test_legacy_more_batch_never_lowers_itl_nor_longer_prompts_ttft(
    make_predictor: PredictorFactory, batch: int
) -> None:
    legacy = make_predictor("llama-2-70b", "a100-sxm-80gb", Precision.FP16, tp=4, generation=LEGACY)
    assert _point(legacy, batch + 1, 512, 576).itl_ms >= _point(legacy, batch, 512, 576).itl_ms
    assert _point(legacy, batch, 1024, 0).ttft_ms >= _point(legacy, batch, 512, 0).ttft_ms


def test_generation_of_another_engine_is_rejected(make_predictor: PredictorFactory) -> None:
    with pytest.raises(InvalidQuery, match="generation of vllm"):
        make_predictor(
            "llama-2-70b", "h100-sxm", Precision.FP16, engine=Engine.SGLANG, generation=LEGACY
        )


def test_unknown_generation_names_the_known_ones(make_predictor: PredictorFactory) -> None:
    with pytest.raises(InvalidQuery, match="vllm-2023"):
        make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, generation="vllm-1999")


@pytest.mark.parametrize("factor", [0.0, 50.0])
def test_host_time_factor_outside_its_range_is_rejected(
    make_predictor: PredictorFactory, factor: float
) -> None:
    with pytest.raises(InvalidQuery, match="host_time_factor"):
        make_predictor("llama-2-70b", "h100-sxm", Precision.FP16, host_time_factor=factor)


@pytest.mark.parametrize(
    "change", [{"allreduce_bandwidth_share": 0.0}, {"weight_bandwidth_share": 1.5}]
)
def test_generation_shares_must_be_within_0_1(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="share"):
        dataclasses.replace(VLLM_2023, **change)


def test_generation_record_is_public() -> None:
    assert isinstance(GENERATIONS[LEGACY], EngineGeneration)
    assert GENERATIONS[LEGACY].eager


def test_2024_engine_pays_the_host_bubble_that_grows_with_the_batch(
    make_predictor: PredictorFactory,
) -> None:
    """vLLM #6854: 5-13 ms of host time per V0 decode step (1 to 256 running sequences)."""
    args = ("llama-3.1-405b", "mi300x", Precision.FP8)
    v0 = make_predictor(*args, tp=8, generation="vllm-2024")
    today = make_predictor(*args, tp=8)
    extra = [
        _point(v0, batch, 128, 192).itl_ms - _point(today, batch, 128, 192).itl_ms
        for batch in (1, 256)
    ]
    assert extra[0] == pytest.approx(5.0 - today.traits.step_overhead_ms, abs=0.1)
    assert extra[1] == pytest.approx(13.0 - today.traits.step_overhead_ms, abs=0.1)
    assert not GENERATIONS["vllm-2024"].eager
