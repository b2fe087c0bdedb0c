"""A handful of published end-to-end measurements the model must land within 15% of.

These figures were not used to fit the efficiency table (it is fitted on operator-level kernel
timings only); ``bench/perfmodel_accuracy.py`` judges the full public sets. Each point cites where
it was published.
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

import pytest

from gridplace.planner.perfmodel import Predictor
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Precision
from gridplace.specs.model_arch import ModelArchitectureSpec

TARGET = 0.15
TRTLLM_V05 = "TensorRT-LLM v0.5 performance docs (docs/source/performance.md), first-token latency"
FT_KIPPLY = (
    "kipply's FasterTransformer 13B timings, via cli99/llm-analysis examples/fastertransformer"
)
LLAMA_CPP_4812 = "ggml-org/llama.cpp PR #4812 (2024-01-07), RTX 3090 Ti, llama 7B Q4_0 3.56 GiB"

# The FasterTransformer example's GPT-13B: 40 layers, hidden 5120, 40 heads, 4x MLP (given as the
# gated-equivalent width 2/3 x 4 x hidden).
GPT_13B = ModelArchitectureSpec(
    parameters_billion=13.0, layers=40, hidden_size=5120, intermediate_size=13653,
    attention_heads=40, kv_heads=40, head_dim=128, vocab_size=50257, max_context_tokens=2048,
)  # fmt: skip


class Point(NamedTuple):
    source: str
    model: str | ModelArchitectureSpec
    gpu: str
    precision: Precision
    engine: Engine
    tp: int
    metric: str  # ttft: prefill of ``tokens`` at batch 1; itl: decode step at context ``tokens``
    tokens: int
    measured_ms: float
    weight_bits: float | None = None
    generation: str | None = None  # the engine release that measured it (None: today's)


POINTS = [
    Point(TRTLLM_V05, "llama-2-7b", "a100-sxm-80gb", Precision.FP16, Engine.TENSORRT_LLM, 1,
          "ttft", 2048, 133.0),
    Point(TRTLLM_V05, "llama-2-7b", "h100-sxm", Precision.FP8, Engine.TENSORRT_LLM, 1,
          "ttft", 2048, 36.0),
    Point(TRTLLM_V05, "llama-2-70b", "a100-sxm-80gb", Precision.FP16, Engine.TENSORRT_LLM, 4,
          "ttft", 2048, 377.0),
    Point(FT_KIPPLY, GPT_13B, "a100-sxm-40gb", Precision.FP16, Engine.TENSORRT_LLM, 1,
          "ttft", 512, 63.17),
    Point(FT_KIPPLY, GPT_13B, "a100-sxm-40gb", Precision.FP16, Engine.TENSORRT_LLM, 1,
          "itl", 517, 22.0),
    Point(FT_KIPPLY, GPT_13B, "a100-sxm-40gb", Precision.FP16, Engine.TENSORRT_LLM, 2,
          "itl", 517, 13.5),
    # pp512 at 4035.47 tokens/s; 3.56 GiB for 6.74e9 parameters is 4.54 bits per weight.
    Point(LLAMA_CPP_4812, "llama-2-7b", "rtx-3090-ti", Precision.INT4, Engine.LLAMA_CPP, 1,
          "ttft", 512, 512 / 4035.47 * 1e3, 3.56 * 2**30 * 8 / 6.74e9, "llama.cpp-2024-01"),
]  # fmt: skip


def _error(point: Point) -> float:
    catalog = builtin_catalog()
    model = point.model if isinstance(point.model, ModelArchitectureSpec) else (
        catalog.models[point.model])  # fmt: skip
    predictor = Predictor(model, catalog.gpus[point.gpu], point.precision, point.engine, point.tp,
                          weight_bits_per_parameter=point.weight_bits,
                          generation=point.generation)  # fmt: skip
    if point.metric == "ttft":
        predicted = predictor.prefill_ms(1, point.tokens)
    else:
        predicted = predictor.decode_ms(1, point.tokens)
    return predicted / point.measured_ms - 1


@pytest.mark.parametrize("point", POINTS, ids=lambda p: f"{p.gpu}-{p.metric}-{p.tokens}-tp{p.tp}")
def test_published_point_within_target(point: Point) -> None:
    error = _error(point)
    assert abs(error) <= TARGET, f"{point.source}: {error:+.0%}"


def test_median_error_of_the_set_within_target() -> None:
    assert statistics.median(abs(_error(p)) for p in POINTS) <= TARGET
