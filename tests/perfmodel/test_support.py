"""Precision and engine support: explicit NotSupported with a reason, never a silent fallback."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import NotSupported, predict
from gridplace.planner.perfmodel.support import matmul_tflops
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Engine, Precision
from tests.perfmodel.conftest import supported

REJECTED = [
    # (gpu, precision, engine, tp, words the reason must contain)
    ("a100-sxm-80gb", Precision.FP8, Engine.VLLM, 1, ["fp8", "ampere"]),
    ("rtx-3090", Precision.FP8, Engine.SGLANG, 1, ["fp8", "ampere"]),
    ("t4", Precision.BF16, Engine.VLLM, 1, ["bf16", "turing"]),
    ("v100-sxm-16gb", Precision.BF16, Engine.VLLM, 1, ["bf16", "volta"]),
    ("mi210", Precision.FP8, Engine.VLLM, 1, ["fp8", "cdna2"]),
    ("mi300x", Precision.BF16, Engine.TENSORRT_LLM, 1, ["NVIDIA"]),
    ("rtx-4090", Precision.FP8, Engine.LLAMA_CPP, 1, ["llama.cpp", "fp8"]),
    ("h100-sxm", Precision.BF16, Engine.VLLM, 3, ["tensor parallel 3", "32"]),
]
ACCEPTED = [
    ("h100-sxm", Precision.FP8, Engine.VLLM),
    ("rtx-4090", Precision.FP8, Engine.VLLM),
    ("l40s", Precision.FP8, Engine.TENSORRT_LLM),
    ("mi300x", Precision.FP8, Engine.VLLM),
    ("a100-sxm-80gb", Precision.BF16, Engine.VLLM),
    ("mi210", Precision.BF16, Engine.SGLANG),
    ("t4", Precision.FP16, Engine.VLLM),
    ("t4", Precision.INT4, Engine.LLAMA_CPP),
    ("v100-sxm-16gb", Precision.INT8, Engine.VLLM),
]


@pytest.mark.parametrize(("gpu", "precision", "engine", "tp", "words"), REJECTED)
def test_unsupported_combinations_say_why(
    gpu: str, precision: Precision, engine: Engine, tp: int, words: list[str]
) -> None:
    result = predict("llama-3.1-8b", gpu, precision, engine, tp=tp)
    assert isinstance(result, NotSupported)
    assert not result.supported
    for word in words:
        assert word in result.reason


@pytest.mark.parametrize(("gpu", "precision", "engine"), ACCEPTED)
def test_supported_combinations_predict(gpu: str, precision: Precision, engine: Engine) -> None:
    prediction = supported(predict("llama-3.1-8b", gpu, precision, engine))
    assert prediction.ttft_ms > 0 and prediction.itl_ms > 0


def test_fp8_on_ampere_is_rejected_not_downgraded() -> None:
    result = predict("llama-3.1-8b", "a100-sxm-80gb", Precision.FP8)
    assert isinstance(result, NotSupported)
    assert result.precision is Precision.FP8
    assert "FP8 tensor cores" in result.reason


@pytest.mark.parametrize("gpu", ["t4", "v100-sxm-16gb", "rtx-4090", "h100-sxm", "mi300x"])
@pytest.mark.parametrize("precision", [Precision.INT4, Precision.INT8])
def test_weight_only_formats_compute_at_the_16_bit_rate(gpu: str, precision: Precision) -> None:
    spec = builtin_catalog().gpus[gpu]
    sixteen = spec.tensor_tflops.fp16 or spec.tensor_tflops.bf16
    assert matmul_tflops(spec, precision) == sixteen
    # ...not at the integer tensor rate the catalog lists for W8A8 paths.
    assert (
        spec.tensor_tflops.int8 is None or matmul_tflops(spec, precision) < spec.tensor_tflops.int8
    )


def test_fp8_computes_at_the_fp8_rate_where_it_exists() -> None:
    spec = builtin_catalog().gpus["h100-sxm"]
    assert matmul_tflops(spec, Precision.FP8) == spec.tensor_tflops.fp8
    assert matmul_tflops(spec, Precision.BF16) == spec.tensor_tflops.bf16
