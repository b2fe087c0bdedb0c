"""The ``GPUModel`` kind: one GPU product's figures, as the catalog and users describe it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from gridplace.specs.common import (
    API_VERSION,
    Architecture,
    Interconnect,
    Metadata,
    Precision,
    ShortText,
    StrictModel,
    Vendor,
)

PciDeviceId = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{4}$")]


class FormFactor(StrEnum):
    PCIE = "pcie"
    SXM = "sxm"
    OAM = "oam"


class PCIeLink(StrictModel):
    """A PCIe link: generation (1-6) and lane count."""

    generation: int = Field(ge=1, le=6, description="PCIe generation, 1-6.")
    lanes: int = Field(ge=1, le=32, description="Electrical lanes, usually 16.")

    @property
    def bandwidth_gbps(self) -> float:
        """One-direction payload bandwidth in GB/s (after 128b/130b encoding from gen 3 on)."""
        per_lane = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}[self.generation]
        return per_lane * self.lanes


class TensorThroughput(StrictModel):
    """Dense tensor-core throughput per precision, TFLOPS (TOPS for ints), FP32 accumulate.

    A precision the hardware has no tensor path for is absent (None), never zero.
    """

    fp16: float | None = Field(default=None, gt=0, description="FP16 in, FP32 accumulate.")
    bf16: float | None = Field(default=None, gt=0, description="BF16 in, FP32 accumulate.")
    fp8: float | None = Field(default=None, gt=0, description="FP8 (E4M3/E5M2) dense.")
    int8: float | None = Field(default=None, gt=0, description="INT8 dense, TOPS.")
    int4: float | None = Field(default=None, gt=0, description="INT4 dense, TOPS.")
    fp16_acc16: float | None = Field(
        default=None,
        gt=0,
        description="FP16 in, FP16 accumulate, where it differs from fp16 (GeForce: twice).",
    )

    def for_precision(self, precision: Precision) -> float | None:
        """The rate of a precision with a tensor path of its own (None for weight-only ones)."""
        if precision.value in ("fp16", "bf16", "fp8", "int8", "int4"):
            return getattr(self, precision.value)  # type: ignore[no-any-return]
        return None

    @property
    def fp16_half_accumulate(self) -> float | None:
        """FP16 rate with 16-bit accumulation (cuBLAS ``CUBLAS_COMPUTE_16F``), TFLOPS."""
        return self.fp16_acc16 if self.fp16_acc16 is not None else self.fp16


class PeerLink(StrictModel):
    """The GPU-to-GPU fabric a product supports inside one node (NVLink, xGMI)."""

    kind: Interconnect = Field(description="nvlink or xgmi.")
    bandwidth_gbps: float = Field(gt=0, description="Aggregate per-GPU bandwidth, GB/s.")


class GPUModelSpec(StrictModel):
    """Figures of one GPU product. Every figure is a fact with a source in ``sources``."""

    display_name: ShortText = Field(description="Marketing name, e.g. 'GeForce RTX 4090'.")
    vendor: Vendor
    architecture: Architecture
    compute_capability: str | None = Field(
        default=None, pattern=r"^\d+\.\d+$", description="NVIDIA CUDA compute capability."
    )
    gfx_target: str | None = Field(
        default=None, pattern=r"^gfx[0-9a-f]{3,4}$", description="AMD LLVM target, e.g. gfx942."
    )
    memory_gib: float = Field(gt=0, le=4096, description="VRAM per GPU, GiB.")
    memory_type: ShortText = Field(description="GDDR6, GDDR6X, HBM3, ...")
    memory_bus_width_bits: int = Field(gt=0, le=16384, description="Memory bus width, bits.")
    memory_bandwidth_gbps: float = Field(gt=0, le=100_000, description="Peak memory GB/s.")
    tensor_tflops: TensorThroughput = Field(description="Dense tensor throughput per precision.")
    tdp_watts: float = Field(gt=0, le=5000, description="Board power (TDP/TBP), W.")
    pcie: PCIeLink = Field(description="Host link.")
    form_factor: FormFactor
    peer_link: PeerLink | None = Field(default=None, description="NVLink / xGMI, if any.")
    reported_names: list[ShortText] = Field(
        default_factory=list, max_length=16, description="Names NVML / amdsmi report."
    )
    pci_device_ids: list[PciDeviceId] = Field(
        default_factory=list, max_length=16, description="PCI device ids (lowercase hex)."
    )
    sources: list[ShortText] = Field(
        min_length=1, max_length=16, description="Where figures came from."
    )
    derived: bool = Field(
        default=False, description="True when figures were measured/derived, not catalogued."
    )

    @model_validator(mode="after")
    def _vendor_fields(self) -> GPUModelSpec:
        if self.vendor is Vendor.NVIDIA and self.gfx_target is not None:
            raise ValueError("gfxTarget is an AMD field; NVIDIA GPUs use computeCapability")
        if self.vendor is Vendor.AMD and self.compute_capability is not None:
            raise ValueError("computeCapability is an NVIDIA field; AMD GPUs use gfxTarget")
        if self.tensor_tflops.fp16 is None and self.tensor_tflops.bf16 is None:
            raise ValueError("tensorTflops needs at least fp16 or bf16")
        return self


class MemoryTechnology(StrEnum):
    """What the memory is built from: stacked HBM or board-mounted GDDR/LPDDR."""

    HBM = "hbm"
    GDDR = "gddr"


def memory_technology(gpu: GPUModelSpec) -> MemoryTechnology:
    """HBM when ``memoryType`` says so (HBM2, HBM2e, HBM3, HBM3e), else GDDR."""
    return (
        MemoryTechnology.HBM if gpu.memory_type.upper().startswith("HBM") else MemoryTechnology.GDDR
    )


class GPUModel(StrictModel):
    """A ``GPUModel`` document: adds or overrides a GPU catalog entry."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["GPUModel"] = "GPUModel"
    metadata: Metadata
    spec: GPUModelSpec
