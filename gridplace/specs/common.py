"""Shared building blocks of every gridplace kind: the strict base model, enums and metadata.

Every spec model is strict (unknown fields are errors), frozen, and camelCase in YAML while
snake_case in Python. Units live in field names (``memory_gib``, ``ttft_ms``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

API_VERSION: Final = "gridplace/v1alpha1"

# Names of nodes, workloads, catalog entries: lowercase, digits, '-', '.', '_' (DNS-label-like,
# dots allowed because model ids carry versions such as "llama-3.1-8b").
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"),
]
# A reference to a catalog entry: its id, or another name it is known by ("NVIDIA GeForce RTX 4090",
# "meta-llama/Llama-3.1-8B"); the loader resolves it to the id.
CatalogRef = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Free-form but bounded text (sources, reasons, messages).
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


# Unit suffixes keep their conventional capitals in YAML: memoryGiB, memoryBandwidthGBps.
# (Network speeds are gigabits: those fields set ``alias="...Gbps"`` explicitly.)
_UNIT_TOKENS = {"gib": "GiB", "gbps": "GBps"}


def to_yaml_name(python_name: str) -> str:
    """snake_case field name -> the camelCase name used in YAML (units keep their capitals)."""
    first, *rest = python_name.split("_")
    return first + "".join(_UNIT_TOKENS.get(token, token.capitalize()) for token in rest)


class StrictModel(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields forbidden, frozen."""

    model_config = ConfigDict(
        alias_generator=to_yaml_name,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        use_enum_values=False,
    )

    def to_yaml_dict(self) -> dict[str, object]:
        """The camelCase, JSON-ready dict that YAML and the API use (unset optionals dropped)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Precision(StrEnum):
    """Numeric format of the weights (and of the compute they run at).

    The generic names (bf16 ... int4) say what an engine's own checkpoint format does; the GGUF
    quantization types (q4_0 ... iq4_xs) are llama.cpp's files, each with its real bits per
    weight (block scales included) and its own kernels. Names are case-insensitive and GGUF's
    ``F16``/``BF16`` mean fp16/bf16, so ``Q4_K_M`` and ``f16`` read as well.
    """

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # weight-only 8-bit (e.g. GPTQ-8; for llama.cpp: Q8_0)
    INT4 = "int4"  # weight-only 4-bit (AWQ, GPTQ; for llama.cpp: Q4_K_M)
    Q8_0 = "q8_0"
    Q6_K = "q6_k"
    Q5_K_M = "q5_k_m"
    Q4_K_M = "q4_k_m"
    Q4_0 = "q4_0"
    IQ4_XS = "iq4_xs"

    @classmethod
    def _missing_(cls, value: object) -> Precision | None:
        if isinstance(value, str):
            name = value.strip().lower()
            name = {"f16": "fp16"}.get(name, name)
            for member in cls:
                if member.value == name:
                    return member
        return None

    @property
    def bytes_per_parameter(self) -> float:
        """Bytes a weight takes in memory at this precision, before engine overheads."""
        return _BYTES_PER_PARAMETER[self]

    @property
    def is_gguf(self) -> bool:
        """A GGUF quantization type (llama.cpp's files and kernels)."""
        return self in GGUF_BITS


# GGUF quantization types: bits per weight of the transformer layers' matrices, block scales
# included, from ggml's block layouts (Q8_0: 32 x 8 bits + an f16 scale = 8.5; Q4_0: 4.5; Q6_K:
# 6.5625; Q5_K 5.5; Q4_K 4.5; IQ4_XS 4.25). The _M mixes keep some matrices one type up (Q4_K_M:
# attn_v and half of ffn_down at Q6_K); their layer average is set so that files match the sizes
# llama.cpp writes: Llama-3-8B Q4_K_M 4.58 GiB, Q5_K_M 5.33 GiB (token embedding at the base type,
# output matrix at Q6_K, see ``GGUF_EMBEDDING_BITS``).
GGUF_BITS: Final[dict[Precision, float]] = {
    Precision.Q8_0: 8.5,
    Precision.Q6_K: 6.5625,
    Precision.Q5_K_M: 5.65,
    Precision.Q4_K_M: 4.80,
    Precision.Q4_0: 4.5,
    Precision.IQ4_XS: 4.25,
}
# Bits of the token embedding in each type's files (the output matrix is Q6_K or better).
GGUF_EMBEDDING_BITS: Final[dict[Precision, float]] = {
    Precision.Q8_0: 8.5,
    Precision.Q6_K: 6.5625,
    Precision.Q5_K_M: 5.5,
    Precision.Q4_K_M: 4.5,
    Precision.Q4_0: 4.5,
    Precision.IQ4_XS: 4.25,
}
# GGUF weights are dequantized before (prompt) or inside (decode) their kernels.
WEIGHT_ONLY_PRECISIONS: Final = frozenset({Precision.INT8, Precision.INT4, *GGUF_BITS})

_BYTES_PER_PARAMETER = {
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    Precision.INT4: 0.5,
    **{precision: bits / 8 for precision, bits in GGUF_BITS.items()},
}


class Engine(StrEnum):
    """Inference engine a workload runs on (efficiencies differ per engine)."""

    VLLM = "vllm"
    LLAMA_CPP = "llama.cpp"
    SGLANG = "sglang"
    TENSORRT_LLM = "tensorrt-llm"


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"
    INTEL = "intel"


class Architecture(StrEnum):
    """GPU architecture family; precision support and efficiencies are keyed by it."""

    VOLTA = "volta"
    TURING = "turing"
    AMPERE = "ampere"
    ADA = "ada"
    HOPPER = "hopper"
    BLACKWELL = "blackwell"
    CDNA2 = "cdna2"
    CDNA3 = "cdna3"
    RDNA3 = "rdna3"
    UNKNOWN = "unknown"


class Interconnect(StrEnum):
    """How the GPUs inside one node talk to each other."""

    PCIE = "pcie"
    NVLINK = "nvlink"
    XGMI = "xgmi"


# The largest plan generation anywhere (stored in PostgreSQL's 32-bit integer column; a larger
# value must be a 422 at the edge, not a database error).
MAX_GENERATION = 2**31 - 1


class ClaimLevel(StrEnum):
    """How much of a node's inventory is verified, weakest first."""

    SELF_REPORTED = "self-reported"
    PROBED = "probed"
    BENCHMARKED = "benchmarked"
    ATTESTED = "attested"

    @property
    def rank(self) -> int:
        """0 for self-reported up to 3 for attested; a workload's minimum is compared by rank."""
        return list(ClaimLevel).index(self)


class Metadata(StrictModel):
    """Kubernetes-style metadata: a name, optional labels, and a generation for plans."""

    name: Name = Field(description="Unique name of the object within its kind.")
    labels: dict[Name, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Free-form key/value labels."
    )
    generation: int | None = Field(
        default=None, ge=0, le=MAX_GENERATION, description="Monotonic version number (plans)."
    )


class KvCacheType(StrEnum):
    """Element type of the KV cache (llama.cpp ``-ctk/-ctv``; vLLM's ``fp8``)."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"
    FP8 = "fp8"

    @property
    def bytes_per_element(self) -> float:
        return {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "fp8": 1.0}[self.value]


class PromptKernels(StrEnum):
    """How llama.cpp multiplies quantized weights in prompt processing (more than 32 tokens)."""

    CUBLAS = "cublas"  # convert to F16 per micro-batch, then cuBLAS (GGML_CUDA_FORCE_CUBLAS)
    MMQ = "mmq"  # its own quantized kernels on int8 tensor cores (default since mid-2024)


class Backend(StrEnum):
    """llama.cpp's GPU backend (build): CUDA on NVIDIA, HIP (ROCm) on AMD, or Vulkan on either."""

    CUDA = "cuda"
    HIP = "hip"
    VULKAN = "vulkan"


class EngineOptions(StrictModel):
    """Engine settings that change performance; unset ones take the engine's defaults (today's
    release, or the ``generation`` named here)."""

    generation: ShortText | None = Field(
        default=None, description="An older engine release, e.g. 'llama.cpp-2024-01'."
    )
    flash_attention: bool | None = Field(default=None, description="llama.cpp -fa.")
    ubatch_tokens: int | None = Field(
        default=None, ge=1, le=65536, description="Micro-batch (llama.cpp -ub / n_ubatch)."
    )
    cuda_graphs: bool | None = Field(default=None, description="Decode as CUDA graphs.")
    kv_cache_type: KvCacheType | None = Field(default=None, description="-ctk/-ctv.")
    prompt_kernels: PromptKernels | None = Field(
        default=None, description="llama.cpp prompt path for quantized weights."
    )
    backend: Backend | None = Field(
        default=None, description="llama.cpp backend (default: cuda on NVIDIA, hip on AMD)."
    )
