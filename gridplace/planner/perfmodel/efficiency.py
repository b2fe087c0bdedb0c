"""The efficiency table: what share of a GPU's peak bandwidth and tensor rate each kernel family
reaches, keyed by (engine, architecture family, precision), and its provenance.

Owns: the table's schema, reading it (package data ``data/efficiency.yaml`` by default, or a file
a caller passes), and lookups with their fallbacks. Must not: fit anything (that is
``bench/calibrate_perfmodel.py``, which writes the table) or read ``../shared``.

Figures per kernel family:
- ``gemm`` (engine x architecture x precision): weight multiplies. With memory time
  M = bytes / (bandwidth x peak GB/s) and compute time C = flops / (compute x peak TFLOPS):
  time = kernelUs + max(M, C) + overlap x min(M, C) (``overlap`` is the share of the shorter side
  the kernel fails to hide behind the longer one: 0 is a perfect roofline, 1 is no overlap).
  ``computeLarge`` (fp8): the best-decile share of the fit, what prefill's thousands of tokens
  reach; the shape average is dragged down by small-m shapes where fp8 kernels cannot use their
  doubled rate (without it fp8 prefill came out slower than bf16 on Ada and Hopper).
- ``attention`` (architecture): decode time = decodeKernelUs + batch x decodeSequenceUs +
  KV bytes / (decodeBandwidth x peak GB/s); prefill time = prefillKernelUs + causal flops /
  (prefillCompute x 16-bit TFLOPS) x (1 + prefillHalfTokens / prompt tokens).
- ``elementwise`` (architecture): norms, RoPE, activation, residual adds per layer:
  layerUs + bytes / (bandwidth x peak GB/s).
Every entry says whether it was ``fitted`` (and on what) or is a ``prior`` (derived from which
fitted family, and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from gridplace.planner.perfmodel.errors import EfficiencyTableError
from gridplace.specs.common import Architecture, Engine, Precision, ShortText, StrictModel

Origin = Literal["fitted", "prior"]
# libyaml's parser where PyYAML has it: the same documents, several times faster than the
# pure-Python one (a cold compile reads the table).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GemmEfficiency(StrictModel):
    """Weight-multiply efficiency of one (engine, architecture, precision)."""

    engine: Engine
    architecture: Architecture
    precision: Precision
    bandwidth: float = Field(gt=0, le=1, description="Share of peak GB/s when memory-bound.")
    compute: float = Field(gt=0, le=1, description="Share of peak TFLOPS at large m.")
    compute_large: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of peak TFLOPS of prefill-sized multiplies where it differs (fp8).",
    )
    overlap: float = Field(ge=0, le=1, description="Share of min(memory, compute) not hidden.")
    kernel_us: float = Field(ge=0, le=1000, description="Fixed time per kernel, microseconds.")
    origin: Origin
    basis: ShortText = Field(description="What it was fitted on, or which family it comes from.")


class AttentionEfficiency(StrictModel):
    """Attention kernels of one architecture family (engine-independent FlashAttention-class)."""

    architecture: Architecture
    decode_bandwidth: float = Field(gt=0, le=1)
    decode_kernel_us: float = Field(ge=0, le=1000)
    decode_sequence_us: float = Field(ge=0, le=100, description="Per sequence in the batch.")
    prefill_compute: float = Field(gt=0, le=1)
    prefill_half_tokens: float = Field(ge=0, le=100_000)
    prefill_kernel_us: float = Field(ge=0, le=1000)
    origin: Origin
    basis: ShortText


class ElementwiseEfficiency(StrictModel):
    """Norms, RoPE, activation and residual adds of one architecture family, per layer."""

    architecture: Architecture
    bandwidth: float = Field(gt=0, le=1)
    layer_us: float = Field(ge=0, le=1000)
    origin: Origin
    basis: ShortText


class Residuals(StrictModel):
    points: int = Field(ge=0)
    rms_log_error: float = Field(ge=0)
    median_ape: float = Field(ge=0)
    p90_ape: float = Field(ge=0)


class DeviceFit(StrictModel):
    """One fit on one measured device, kept for the record (the runtime does not read it)."""

    device: ShortText
    kind: Literal["gemm", "decode-attention", "prefill-attention", "elementwise"]
    precision: Precision | None = None
    source: ShortText
    figures: dict[str, float]
    residuals: Residuals


class Provenance(StrictModel):
    generated_by: ShortText
    generated_on: ShortText
    command: ShortText
    method: str = Field(min_length=1, max_length=4000)
    sources: list[ShortText] = Field(min_length=1)


class EfficiencyDocument(StrictModel):
    provenance: Provenance
    gemm: list[GemmEfficiency] = Field(min_length=1)
    attention: list[AttentionEfficiency] = Field(min_length=1)
    elementwise: list[ElementwiseEfficiency] = Field(min_length=1)
    fits: list[DeviceFit] = Field(default_factory=list)


@dataclass(frozen=True)
class EfficiencyTable:
    """Lookups over an ``EfficiencyDocument``; unknown families fall back to ``unknown``."""

    document: EfficiencyDocument
    _gemm: dict[tuple[Engine, Architecture, Precision], GemmEfficiency] = field(repr=False)
    _attention: dict[Architecture, AttentionEfficiency] = field(repr=False)
    _elementwise: dict[Architecture, ElementwiseEfficiency] = field(repr=False)

    @classmethod
    def from_document(cls, document: EfficiencyDocument) -> EfficiencyTable:
        gemm = {(e.engine, e.architecture, e.precision): e for e in document.gemm}
        attention = {e.architecture: e for e in document.attention}
        elementwise = {e.architecture: e for e in document.elementwise}
        for name, table in (("attention", attention), ("elementwise", elementwise)):
            if Architecture.UNKNOWN not in table:
                raise EfficiencyTableError(f"the {name} table has no 'unknown' fallback entry")
        return cls(document, gemm, attention, elementwise)

    def gemm(
        self, engine: Engine, architecture: Architecture, precision: Precision
    ) -> GemmEfficiency:
        """The entry for the key; fp16 falls back to bf16, a GGUF type to its weight-only class
        (q8_0: int8, the others: int4), a missing family to ``unknown``."""
        if precision.is_gguf:
            precision = Precision.INT8 if precision is Precision.Q8_0 else Precision.INT4
        precisions = [precision] + ([Precision.BF16] if precision is Precision.FP16 else [])
        for arch in (architecture, Architecture.UNKNOWN):
            for candidate in precisions:
                entry = self._gemm.get((engine, arch, candidate))
                if entry is not None:
                    return entry
        raise EfficiencyTableError(
            f"no gemm efficiency for ({engine.value}, {architecture.value}, {precision.value}) "
            "and no 'unknown' fallback"
        )

    def attention(self, architecture: Architecture) -> AttentionEfficiency:
        return self._attention.get(architecture) or self._attention[Architecture.UNKNOWN]

    def elementwise(self, architecture: Architecture) -> ElementwiseEfficiency:
        return self._elementwise.get(architecture) or self._elementwise[Architecture.UNKNOWN]


def parse_table(text: str, origin: str) -> EfficiencyTable:
    """Parse and validate a table; raises EfficiencyTableError naming ``origin``."""
    try:
        data = yaml.load(text, Loader=_LOADER)
        document = EfficiencyDocument.model_validate(data)
    except (yaml.YAMLError, ValidationError) as error:
        raise EfficiencyTableError(f"{origin}: not a valid efficiency table: {error}") from error
    return EfficiencyTable.from_document(document)


def load_table(path: Path) -> EfficiencyTable:
    """A table from a file (e.g. one the calibration script just wrote)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise EfficiencyTableError(f"{path}: cannot read: {error}") from error
    return parse_table(text, str(path))


@cache
def builtin_table() -> EfficiencyTable:
    """The table shipped as package data (fitted by ``bench/calibrate_perfmodel.py``)."""
    text = (
        resources.files("gridplace.planner.perfmodel")
        .joinpath("data", "efficiency.yaml")
        .read_text("utf-8")
    )
    return parse_table(text, "gridplace/planner/perfmodel/data/efficiency.yaml")
