"""The ``PerformanceProfile`` kind: measured latencies that override the roofline prediction."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gridplace.specs.common import (
    API_VERSION,
    CatalogRef,
    Engine,
    EngineOptions,
    Metadata,
    Precision,
    ShortText,
    StrictModel,
)


class ProfilePoint(StrictModel):
    """One measured operating point."""

    batch: int = Field(default=1, ge=1, le=4096, description="Concurrent sequences.")
    prompt_tokens: int = Field(default=0, ge=0, le=10_000_000)
    context_tokens: int = Field(default=0, ge=0, le=10_000_000)
    ttft_ms: float | None = Field(default=None, gt=0, description="Measured prefill time, ms.")
    itl_ms: float | None = Field(default=None, gt=0, description="Measured decode step, ms.")

    @model_validator(mode="after")
    def _has_measurement(self) -> ProfilePoint:
        if self.ttft_ms is None and self.itl_ms is None:
            raise ValueError("a profile point needs ttftMs or itlMs")
        if self.ttft_ms is not None and self.prompt_tokens == 0:
            raise ValueError("ttftMs needs promptTokens > 0")
        return self


class PerformanceProfileSpec(StrictModel):
    model: CatalogRef = Field(description="Model catalog id or Hugging Face repo.")
    gpu: CatalogRef = Field(description="GPU catalog id or reported name.")
    precision: Precision
    engine: Engine = Engine.VLLM
    tensor_parallel: int = Field(default=1, ge=1, le=64)
    engine_options: EngineOptions | None = Field(
        default=None, description="Engine settings the points were measured with."
    )
    points: list[ProfilePoint] = Field(min_length=1, max_length=10_000)
    source: ShortText = Field(description="Where the measurements came from.")


class PerformanceProfile(StrictModel):
    """A ``PerformanceProfile`` document."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["PerformanceProfile"] = "PerformanceProfile"
    metadata: Metadata
    spec: PerformanceProfileSpec
