"""Which precisions and engines a GPU can run, and the tensor rate each precision computes at.

Owns: the support rules (a property of the architecture, DESIGN.md "The performance model") and
the peak rate a precision's matrix multiplies run at. Must not: time anything or read tables.

Rules:
- fp8 (W8A8) needs FP8 tensor cores: ada, hopper, blackwell, cdna3.
- bf16 needs BF16 tensor cores: ampere and newer, cdna2 and newer (rdna3 has BF16 WMMA).
  Volta and Turing have none.
- fp16 runs everywhere.
- int8 / int4 are weight-only formats (GPTQ, AWQ, GGUF): the weights are dequantized and the
  multiply runs at the 16-bit rate: fp16 where the catalog has it (T4 and V100 have no bf16),
  else bf16. The catalog's int8/int4 TOPS (W8A8 integer paths) are not used.
- an architecture the catalog calls ``unknown`` supports what its entry lists rates for.
- TensorRT-LLM runs only on NVIDIA GPUs; llama.cpp has no fp8 weight format.
- GGUF types (q4_0 ... q8_0, iq4_xs) are llama.cpp's formats: other engines name their own
  weight-only formats int8/int4.
- tensor parallel needs the attention heads to split evenly over the GPUs.
"""

from __future__ import annotations

from gridplace.planner.perfmodel.engines import ENGINES
from gridplace.specs.common import WEIGHT_ONLY_PRECISIONS, Architecture, Engine, Precision, Vendor
from gridplace.specs.gpu import GPUModelSpec
from gridplace.specs.model_arch import ModelArchitectureSpec

FP8_ARCHITECTURES = frozenset(
    {Architecture.ADA, Architecture.HOPPER, Architecture.BLACKWELL, Architecture.CDNA3}
)
BF16_ARCHITECTURES = frozenset(
    {
        Architecture.AMPERE,
        Architecture.ADA,
        Architecture.HOPPER,
        Architecture.BLACKWELL,
        Architecture.CDNA2,
        Architecture.CDNA3,
        Architecture.RDNA3,
    }
)
WEIGHT_ONLY = WEIGHT_ONLY_PRECISIONS


def _architecture_supports(gpu: GPUModelSpec, precision: Precision) -> bool:
    if gpu.architecture is Architecture.UNKNOWN:
        # No family rule to go by: the entry's own tensor rates say what it has.
        return precision in WEIGHT_ONLY or gpu.tensor_tflops.for_precision(precision) is not None
    if precision is Precision.FP8:
        return gpu.architecture in FP8_ARCHITECTURES
    if precision is Precision.BF16:
        return gpu.architecture in BF16_ARCHITECTURES
    return True


def unsupported_reason(
    gpu: GPUModelSpec,
    gpu_name: str,
    model: ModelArchitectureSpec,
    precision: Precision,
    engine: Engine,
    tensor_parallel: int,
) -> str | None:
    """Why this combination cannot run at all, or None when it can."""
    traits = ENGINES[engine]
    if traits.nvidia_only and gpu.vendor is not Vendor.NVIDIA:
        return f"{engine.value} runs only on NVIDIA GPUs; {gpu_name} is {gpu.vendor.value}"
    if precision.is_gguf and engine is not Engine.LLAMA_CPP:
        return (
            f"{precision.value} is a GGUF type (llama.cpp); {engine.value} names its weight-only "
            "formats int8/int4"
        )
    if precision is Precision.FP8 and not traits.fp8:
        return f"{engine.value} has no fp8 weight format; use int8 (Q8_0) or int4"
    if not _architecture_supports(gpu, precision):
        if precision is Precision.FP8:
            return (
                f"fp8 needs FP8 tensor cores (ada, hopper, blackwell, cdna3); "
                f"{gpu_name} is {gpu.architecture.value}"
            )
        return (
            f"{precision.value} needs BF16 tensor cores (ampere and newer, cdna2 and newer); "
            f"{gpu_name} is {gpu.architecture.value}"
        )
    if model.attention_heads % tensor_parallel != 0:
        return (
            f"tensor parallel {tensor_parallel} does not divide the model's "
            f"{model.attention_heads} attention heads"
        )
    return None


def sixteen_bit_tflops(gpu: GPUModelSpec) -> float:
    """Dense 16-bit tensor rate (fp16 preferred: it exists on every generation), TFLOPS."""
    rates = gpu.tensor_tflops
    rate = rates.fp16 if rates.fp16 is not None else rates.bf16
    assert rate is not None  # GPUModelSpec guarantees fp16 or bf16
    return rate


def matmul_tflops(gpu: GPUModelSpec, precision: Precision) -> float:
    """Peak dense rate the weight multiplies run at for ``precision``, TFLOPS."""
    rates = gpu.tensor_tflops
    if precision is Precision.FP8 and rates.fp8 is not None:
        return rates.fp8
    if precision is Precision.BF16 and rates.bf16 is not None:
        return rates.bf16
    # fp16, weight-only int8/int4 (dequantized to 16 bits), and fp8 on an entry without an fp8
    # figure: the 16-bit rate.
    return sixteen_bit_tflops(gpu)
