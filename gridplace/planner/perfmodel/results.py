"""What a prediction returns: ``Prediction`` for a configuration that runs, ``NotSupported`` with
its reason for one that cannot (see ``predict``'s conventions for the figures' meaning)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gridplace.planner.perfmodel.capacity import Capacity, LatencyTargets, TrafficShape
from gridplace.planner.perfmodel.roofline import Bound, StepTime
from gridplace.specs.common import Engine, Precision

if TYPE_CHECKING:
    from gridplace.planner.perfmodel.predict import Predictor

Source = Literal["roofline", "profile", "measured"]


@dataclass(frozen=True, slots=True)
class NotSupported:
    """This configuration cannot run at all; ``reason`` says why (never a silent fallback)."""

    reason: str
    precision: Precision
    engine: Engine
    supported: Literal[False] = False

    def as_dict(self) -> dict[str, Any]:
        return {"supported": False, "reason": self.reason, "fits": False}


@dataclass(frozen=True)
class Prediction:
    """What one replica configuration does at one operating point (see module conventions)."""

    ttft_ms: float
    itl_ms: float
    vram_gib: float  # per GPU
    weights_gib: float  # per GPU
    kv_cache_gib: float  # per GPU
    reserve_gib: float  # per GPU
    memory_gib: float  # per GPU, available
    fits: bool
    bound: Bound  # of the decode step
    max_batch: int  # sequences of max(prompt, context) tokens whose KV cache fits
    prefill: StepTime
    decode: StepTime
    source: Source
    predictor: Predictor = field(repr=False, compare=False)
    supported: Literal[True] = True

    def capacity(self, slo: LatencyTargets, traffic: TrafficShape, rtt_ms: float = 0.0) -> Capacity:
        """Requests/s this configuration sustains inside ``slo`` (see ``capacity``)."""
        return self.predictor.capacity(slo, traffic, rtt_ms)

    def capacity_rps(
        self, slo: LatencyTargets, traffic: TrafficShape, rtt_ms: float = 0.0
    ) -> float:
        return self.capacity(slo, traffic, rtt_ms).rps

    def as_dict(self) -> dict[str, Any]:
        """The camelCase keys the CLI and API print."""
        return {
            "supported": True,
            "ttftMs": round(self.ttft_ms, 3),
            "itlMs": round(self.itl_ms, 3),
            "vramGiB": round(self.vram_gib, 3),
            "weightsGiB": round(self.weights_gib, 3),
            "kvCacheGiB": round(self.kv_cache_gib, 3),
            "reserveGiB": round(self.reserve_gib, 3),
            "memoryGiB": round(self.memory_gib, 3),
            "fits": self.fits,
            "bound": self.bound,
            "maxBatch": self.max_batch,
            "source": self.source,
        }
