"""Properties every prediction keeps: more batch or context never lowers ITL, more bandwidth never
raises a memory-bound ITL, a throttled GPU is never faster, TP over PCIe costs more than NVLink."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridplace.planner.perfmodel import InvalidQuery, Predictor, derate_factors
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Interconnect, Precision
from tests.perfmodel.conftest import PredictorFactory, supported

CATALOG = builtin_catalog()
MODELS = ["llama-3.1-8b", "qwen2.5-14b", "mixtral-8x7b", "gemma-2-9b", "qwen3-30b-a3b"]
GPUS = ["rtx-3090", "rtx-4090", "a100-sxm-80gb", "h100-sxm", "l40s", "t4", "mi300x"]
PRECISIONS = [Precision.FP16, Precision.BF16, Precision.FP8, Precision.INT8, Precision.INT4]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _predictor(model: str, gpu: str, precision: Precision, engine: Engine, tp: int) -> Predictor:
    return Predictor(CATALOG.models[model], CATALOG.gpus[gpu], precision, engine, tp)


configurations = st.tuples(
    st.sampled_from(MODELS),
    st.sampled_from(GPUS),
    st.sampled_from(PRECISIONS),
    st.sampled_from(list(Engine)),
    st.sampled_from([1, 2, 4]),
)


@SETTINGS
@given(configurations, st.integers(1, 512), st.integers(1, 512), st.integers(0, 32768))
def test_more_batch_never_lowers_itl(
    config: tuple[str, str, Precision, Engine, int], batch: int, extra: int, context: int
) -> None:
    predictor = _predictor(*config)
    if predictor.unsupported:
        return
    assert predictor.decode_ms(batch + extra, context) >= predictor.decode_ms(batch, context)


@SETTINGS
@given(configurations, st.integers(1, 256), st.integers(0, 32768), st.integers(1, 32768))
def test_more_context_never_lowers_itl(
    config: tuple[str, str, Precision, Engine, int], batch: int, context: int, extra: int
) -> None:
    predictor = _predictor(*config)
    if predictor.unsupported:
        return
    assert predictor.decode_ms(batch, context + extra) >= predictor.decode_ms(batch, context)


@SETTINGS
@given(configurations, st.integers(1, 64), st.integers(1, 8192), st.integers(1, 8192))
def test_longer_prompts_never_lower_ttft(
    config: tuple[str, str, Precision, Engine, int], batch: int, prompt: int, extra: int
) -> None:
    predictor = _predictor(*config)
    if predictor.unsupported:
        return
    assert predictor.prefill_ms(batch, prompt + extra) >= predictor.prefill_ms(batch, prompt)


@SETTINGS
@given(
    configurations,
    st.integers(1, 16),
    st.integers(0, 8192),
    st.floats(1.05, 4.0),
)
def test_more_bandwidth_never_raises_memory_bound_itl(
    config: tuple[str, str, Precision, Engine, int], batch: int, context: int, factor: float
) -> None:
    model, gpu_id, precision, engine, tp = config
    gpu = CATALOG.gpus[gpu_id]
    faster = gpu.model_copy(update={"memory_bandwidth_gbps": gpu.memory_bandwidth_gbps * factor})
    slow = Predictor(CATALOG.models[model], gpu, precision, engine, tp)
    fast = Predictor(CATALOG.models[model], faster, precision, engine, tp)
    if slow.unsupported:
        return
    step = slow.roofline.decode(batch, context)
    if step.bound != "memory":
        return
    assert fast.decode_ms(batch, context) <= slow.decode_ms(batch, context)
    assert (
        fast.decode_ms(batch, context) < slow.decode_ms(batch, context) or step.memory_side_ms == 0
    )


def test_batch_one_decode_is_memory_bound_on_every_gpu() -> None:
    for gpu in GPUS:
        step = _predictor("llama-3.1-8b", gpu, Precision.FP16, Engine.VLLM, 1).roofline.decode(
            1, 1024
        )
        assert step.bound == "memory", gpu


def test_long_prefill_is_compute_bound() -> None:
    step = _predictor("llama-3.1-8b", "h100-sxm", Precision.BF16, Engine.VLLM, 1).roofline
    assert step.prefill(1, 4096).bound == "compute"


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 1.0])
def test_thermal_derate_slows_ttft_and_itl(make_predictor: PredictorFactory, ratio: float) -> None:
    cool = supported(
        make_predictor("llama-3.1-8b", "rtx-4090", Precision.FP8).predict(4, 2048, 2048)
    )
    hot = supported(
        make_predictor("llama-3.1-8b", "rtx-4090", Precision.FP8, derate=ratio).predict(
            4, 2048, 2048
        )
    )
    assert hot.ttft_ms > cool.ttft_ms
    assert hot.itl_ms > cool.itl_ms
    compute, bandwidth = derate_factors(ratio)
    assert compute < 1 and bandwidth < 1
    # Never slower than the capped clocks alone explain (steps also carry host overhead).
    assert hot.ttft_ms <= cool.ttft_ms / compute + 1e-9


def test_no_derate_is_nameplate() -> None:
    assert derate_factors(0.0) == (1.0, 1.0)


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_derate_outside_0_1_is_rejected(make_predictor: PredictorFactory, ratio: float) -> None:
    with pytest.raises(InvalidQuery) as caught:
        make_predictor("llama-3.1-8b", "rtx-4090", Precision.FP16, derate=ratio)
    assert caught.value.field == "derate"


@pytest.mark.parametrize(
    ("gpu", "tp"), [("a100-sxm-80gb", 2), ("a100-sxm-80gb", 8), ("rtx-3090", 2)]
)
def test_tp_over_pcie_costs_more_than_nvlink(
    make_predictor: PredictorFactory, gpu: str, tp: int
) -> None:
    over_pcie = make_predictor("llama-3.1-70b", gpu, Precision.INT4, tp=tp,
                               interconnect=Interconnect.PCIE)  # fmt: skip
    over_nvlink = make_predictor("llama-3.1-70b", gpu, Precision.INT4, tp=tp,
                                 interconnect=Interconnect.NVLINK)  # fmt: skip
    for batch in (1, 32):
        pcie_step = over_pcie.roofline.decode(batch, 1024)
        nvlink_step = over_nvlink.roofline.decode(batch, 1024)
        assert pcie_step.communication_ms > nvlink_step.communication_ms > 0
        assert pcie_step.total_ms > nvlink_step.total_ms
    assert over_pcie.prefill_ms(1, 2048) > over_nvlink.prefill_ms(1, 2048)


def test_nvlink_on_a_gpu_without_a_peer_link_is_pcie(make_predictor: PredictorFactory) -> None:
    claimed = make_predictor("llama-3.1-8b", "rtx-4090", Precision.FP16, tp=2,
                             interconnect=Interconnect.NVLINK)  # fmt: skip
    assert claimed.roofline.link.kind is Interconnect.PCIE


def test_tensor_parallel_splits_weight_time(make_predictor: PredictorFactory) -> None:
    one = make_predictor("llama-3.1-70b", "h100-sxm", Precision.FP8, tp=1)
    four = make_predictor("llama-3.1-70b", "h100-sxm", Precision.FP8, tp=4)
    # Each GPU streams a quarter of the weights (kernel launch constants do not shrink).
    assert (
        four.roofline.decode(1, 512).memory_side_ms < one.roofline.decode(1, 512).memory_side_ms / 3
    )
    assert (
        four.roofline.decode(1, 512).communication_ms
        > 0
        == one.roofline.decode(1, 512).communication_ms
    )
