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
    """Numeric format of the weights (and of the compute they run at)."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # weight-only 8-bit (e.g. GPTQ-8, Q8_0)
    INT4 = "int4"  # weight-only 4-bit (AWQ, GPTQ, GGUF Q4)

    @property
    def bytes_per_parameter(self) -> float:
        """Bytes a weight takes in memory at this precision, before engine overheads."""
        return _BYTES_PER_PARAMETER[self]


_BYTES_PER_PARAMETER = {
    Precision.BF16: 2.0,
    Precision.FP16: 2.0,
    Precision.FP8: 1.0,
    Precision.INT8: 1.0,
    Precision.INT4: 0.5,
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
