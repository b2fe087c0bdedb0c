"""VRAM: weights split by tensor parallel, KV cache per token, engine reserve, fit."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import predict
from gridplace.planner.perfmodel.engines import GIB
from gridplace.planner.perfmodel.shape import model_shape
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Interconnect, Precision
from tests.perfmodel.conftest import PredictorFactory, supported


def test_70b_bf16_does_not_fit_one_24_gib_card() -> None:
    prediction = supported(predict("llama-3.1-70b", "rtx-3090", Precision.BF16))
    assert not prediction.fits
    assert prediction.weights_gib > 120  # 70.55e9 parameters x 2 bytes
    assert prediction.vram_gib > prediction.memory_gib == 24


@pytest.mark.parametrize("engine", [Engine.VLLM, Engine.LLAMA_CPP])
def test_70b_int4_fits_two_24_gib_cards_with_tp2(engine: Engine) -> None:
    two = supported(
        predict(
            "llama-3.1-70b", "rtx-3090", Precision.INT4, engine, tp=2,
            prompt_tokens=1024, context_tokens=2048, interconnect=Interconnect.PCIE,
        )
    )  # fmt: skip
    assert two.fits
    assert two.vram_gib <= 24
    one = supported(predict("llama-3.1-70b", "rtx-3090", Precision.INT4, engine, tp=1))
    assert not one.fits  # ~35 GiB of 4-bit weights on one card
    assert two.weights_gib == pytest.approx(one.weights_gib / 2)


def test_vram_is_weights_plus_kv_plus_reserve(make_predictor: PredictorFactory) -> None:
    prediction = supported(
        make_predictor("llama-3.1-8b", "l40s", Precision.BF16).predict(8, 1024, 4096)
    )
    total = prediction.weights_gib + prediction.kv_cache_gib + prediction.reserve_gib
    assert prediction.vram_gib == pytest.approx(total)


def test_kv_cache_is_two_x_layers_x_kv_heads_x_head_dim_x_bytes(
    make_predictor: PredictorFactory,
) -> None:
    model = builtin_catalog().models["llama-3.1-8b"]
    per_token = 2 * model.layers * model.kv_heads * model.head_dim * 2  # fp16 KV
    prediction = supported(make_predictor("llama-3.1-8b", "h100-sxm", Precision.BF16).predict(
        4, 1000, 3000
    ))  # fmt: skip
    assert prediction.kv_cache_gib == pytest.approx(4 * 3000 * per_token / GIB)
    fp8 = supported(
        make_predictor("llama-3.1-8b", "h100-sxm", Precision.BF16, kv_cache_fp8=True).predict(
            4, 1000, 3000
        )
    )
    assert fp8.kv_cache_gib == pytest.approx(prediction.kv_cache_gib / 2)


def test_kv_heads_split_over_tp_and_replicate_beyond_their_count() -> None:
    shape = model_shape(builtin_catalog().models["llama-3.1-70b"])  # 8 KV heads
    assert shape.kv_elements_per_token(2) * 2 == shape.kv_elements_per_token(1)
    assert shape.kv_elements_per_token(16) == shape.kv_elements_per_token(8)


def test_max_batch_is_what_the_kv_budget_holds(make_predictor: PredictorFactory) -> None:
    predictor = make_predictor("llama-3.1-8b", "rtx-4090", Precision.INT4)
    prediction = supported(predictor.predict(1, 2048, 2048))
    at_max = supported(predictor.predict(prediction.max_batch, 2048, 2048))
    beyond = supported(predictor.predict(prediction.max_batch + 1, 2048, 2048))
    assert at_max.fits and not beyond.fits


def test_lower_precision_needs_less_memory() -> None:
    sizes = [
        supported(predict("qwen2.5-32b", "h100-sxm", p)).weights_gib
        for p in (Precision.BF16, Precision.FP8, Precision.INT4)
    ]
    assert sizes[0] > sizes[1] > sizes[2]
