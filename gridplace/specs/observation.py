"""The ``Observations`` kind: what running inference engines reported, one window per replica.

The agent scrapes each replica's engine metrics (vLLM's Prometheus histograms and counters,
llama-server's counters, or a command driver's mapping) and turns each window (60 s by default)
into one ``ObservationWindow``: the traffic the replica served, the latencies it delivered, and the
operating point it ran at (batch, prompt length, context), so that a correction of the performance
model can be estimated at the point actually observed. Latency quantiles are optional: engines
without latency histograms (llama-server) report busy seconds and token counts instead, from which
mean per-token prefill and decode times follow.

Owns: what a valid observation is. Must not: estimate anything (that is the planner's).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gridplace.specs.common import (
    API_VERSION,
    CatalogRef,
    Engine,
    Metadata,
    Name,
    Precision,
    StrictModel,
)

MAX_WINDOWS_PER_DOCUMENT = 1_000
# A window longer than a day is not an observation window; a request count beyond 10^9 in one
# window is not a measurement of one replica.
MAX_WINDOW_SECONDS = 86_400.0
MAX_COUNT = 1_000_000_000

Milliseconds = Annotated[float, Field(ge=0, le=3_600_000)]
Seconds = Annotated[float, Field(ge=0, le=MAX_WINDOW_SECONDS * 1024)]


class LatencyQuantiles(StrictModel):
    """Latency percentiles over one window, ms (interpolated from histogram buckets)."""

    p50_ms: Milliseconds | None = None
    p90_ms: Milliseconds | None = None
    p99_ms: Milliseconds | None = None
    mean_ms: Milliseconds | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LatencyQuantiles:
        present = [q for q in (self.p50_ms, self.p90_ms, self.p99_ms) if q is not None]
        if present != sorted(present):
            raise ValueError(f"percentiles must not decrease: p50/p90/p99 = {present}")
        return self


class ObservationWindow(StrictModel):
    """One replica's engine over one window: traffic, latencies and operating point."""

    node: Name = Field(description="The node the replica runs on.")
    workload: Name = Field(description="The workload the replica serves.")
    model: CatalogRef = Field(description="Model catalog id the replica runs.")
    gpu: CatalogRef = Field(description="GPU catalog id of the replica's GPUs.")
    precision: Precision
    engine: Engine
    tensor_parallel: int = Field(default=1, ge=1, le=64)
    gpu_share: Literal[1, 2, 4] = Field(
        default=1, description="The replica ran on 1/gpuShare of its GPU (the plan's gpuShare)."
    )
    start_s: float = Field(ge=0, description="Window start, seconds since the Unix epoch.")
    end_s: float = Field(gt=0, description="Window end, seconds since the Unix epoch.")
    requests: int | None = Field(
        default=None,
        ge=0,
        le=MAX_COUNT,
        description="Requests completed in the window; None when the engine does not count them "
        "(llama-server).",
    )
    prompt_tokens: int = Field(default=0, ge=0, le=MAX_COUNT * 1000)
    output_tokens: int = Field(default=0, ge=0, le=MAX_COUNT * 1000)
    ttft: LatencyQuantiles | None = Field(default=None, description="Time to first token.")
    itl: LatencyQuantiles | None = Field(default=None, description="Inter-token latency.")
    e2e: LatencyQuantiles | None = Field(default=None, description="Whole-request latency.")
    prefill_seconds: Seconds | None = Field(
        default=None, description="Engine time spent on prompt processing in the window."
    )
    decode_seconds: Seconds | None = Field(
        default=None, description="Engine time spent generating tokens in the window."
    )
    decode_steps: int | None = Field(
        default=None, ge=0, le=MAX_COUNT * 1000, description="Decode calls (batched steps)."
    )
    mean_running_batch: float | None = Field(
        default=None, ge=0, le=65_536, description="Mean sequences in a decode step."
    )
    mean_context_tokens: float | None = Field(
        default=None, ge=0, le=10_000_000, description="Mean context length during decode."
    )
    slo_attainment: float | None = Field(
        default=None, ge=0, le=1, description="Share of requests inside the SLO, when known."
    )

    @model_validator(mode="after")
    def _window(self) -> ObservationWindow:
        length = self.end_s - self.start_s
        if not 0 < length <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"endS - startS must be in (0, {MAX_WINDOW_SECONDS:.0f}] s, got {length:.3f}"
            )
        return self

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


class ObservationsSpec(StrictModel):
    windows: list[ObservationWindow] = Field(min_length=1, max_length=MAX_WINDOWS_PER_DOCUMENT)


class Observations(StrictModel):
    """An ``Observations`` document: windows one agent posts for its node."""

    api_version: Literal["gridplace/v1alpha1"] = API_VERSION
    kind: Literal["Observations"] = "Observations"
    metadata: Metadata
    spec: ObservationsSpec
