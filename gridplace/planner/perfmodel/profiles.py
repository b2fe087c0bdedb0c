"""Measured ``PerformanceProfile`` documents, and how they override and refit the roofline.

Owns: resolving profiles against the catalog, finding the one for a (model, GPU, precision,
engine), and the refit rule. Must not: time steps itself (it is handed the roofline's functions).

Refit rule. A profile's points are measured TTFT (prefill of ``promptTokens`` x ``batch``) and ITL
(decode step of ``batch`` at ``contextTokens``) at its tensor-parallel degree. For the matching
(model, GPU, precision, engine) the prediction becomes:
- at a measured point (same tp, batch, prompt/context tokens): the measurement itself;
- elsewhere: the roofline scaled by the geometric mean of measured / roofline over the profile's
  TTFT points (for TTFT) and ITL points (for ITL). One factor per metric keeps the roofline's
  shape (batch, context, tp scaling) and moves its level to what the hardware really did; a
  metric without points keeps its roofline value.
Several profiles for one key: the last one given wins (later documents override earlier ones).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gridplace.planner.perfmodel.errors import ProfileError
from gridplace.specs.catalog import Catalog, unknown_message
from gridplace.specs.common import Engine, EngineOptions, Precision
from gridplace.specs.gpu import GPUModelSpec
from gridplace.specs.model_arch import ModelArchitectureSpec
from gridplace.specs.profile import PerformanceProfile, ProfilePoint

StepFunction = Callable[[int, int], float]  # (batch, tokens) -> ms


@dataclass(frozen=True)
class ProfileEntry:
    """One resolved profile."""

    name: str
    model_id: str
    gpu_id: str
    model: ModelArchitectureSpec
    gpu: GPUModelSpec
    precision: Precision
    engine: Engine
    tensor_parallel: int
    points: tuple[ProfilePoint, ...]
    source: str
    engine_options: EngineOptions | None = None  # the settings the points were measured with

    def measured(
        self, tensor_parallel: int, batch: int, prompt_tokens: int, context_tokens: int
    ) -> tuple[float | None, float | None]:
        """(TTFT, ITL) measured at exactly this operating point, each None if not measured."""
        if tensor_parallel != self.tensor_parallel:
            return None, None
        ttft = itl = None
        for point in self.points:
            if point.batch != batch:
                continue
            if point.ttft_ms is not None and point.prompt_tokens == prompt_tokens:
                ttft = point.ttft_ms
            if point.itl_ms is not None and point.context_tokens == context_tokens:
                itl = point.itl_ms
        return ttft, itl

    def refit(self, prefill: StepFunction, decode: StepFunction) -> tuple[float, float]:
        """(TTFT factor, ITL factor): geometric means of measured / roofline (1 when no points).

        ``prefill`` and ``decode`` are the roofline at this profile's tensor-parallel degree.
        """
        ttft_logs = [
            math.log(p.ttft_ms / prefill(p.batch, p.prompt_tokens))
            for p in self.points
            if p.ttft_ms is not None
        ]
        itl_logs = [
            math.log(p.itl_ms / decode(p.batch, p.context_tokens))
            for p in self.points
            if p.itl_ms is not None
        ]
        ttft = math.exp(sum(ttft_logs) / len(ttft_logs)) if ttft_logs else 1.0
        itl = math.exp(sum(itl_logs) / len(itl_logs)) if itl_logs else 1.0
        return ttft, itl


class ProfileBook:
    """Profiles by (model id, GPU id, precision, engine)."""

    def __init__(self, entries: Iterable[ProfileEntry] = ()) -> None:
        self._entries: dict[tuple[str, str, Precision, Engine], ProfileEntry] = {}
        for entry in entries:
            key = (entry.model_id, entry.gpu_id, entry.precision, entry.engine)
            self._entries[key] = entry

    @classmethod
    def from_documents(
        cls, profiles: Iterable[PerformanceProfile], catalog: Catalog
    ) -> ProfileBook:
        """Resolve each profile's model and GPU references; unknown ones raise ProfileError."""
        entries = []
        for profile in profiles:
            spec = profile.spec
            model_id = catalog.model_id(spec.model)
            if model_id is None:
                near = catalog.model_near_matches(spec.model)
                raise ProfileError(
                    profile.metadata.name, unknown_message("model", spec.model, near)
                )
            gpu_id = catalog.gpu_id(spec.gpu)
            if gpu_id is None:
                near = catalog.gpu_near_matches(spec.gpu)
                raise ProfileError(profile.metadata.name, unknown_message("GPU", spec.gpu, near))
            entries.append(
                ProfileEntry(
                    name=profile.metadata.name,
                    model_id=model_id,
                    gpu_id=gpu_id,
                    model=catalog.models[model_id],
                    gpu=catalog.gpus[gpu_id],
                    precision=spec.precision,
                    engine=spec.engine,
                    tensor_parallel=spec.tensor_parallel,
                    points=tuple(spec.points),
                    source=spec.source,
                    engine_options=spec.engine_options,
                )
            )
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def find(
        self,
        model: ModelArchitectureSpec,
        gpu: GPUModelSpec,
        precision: Precision,
        engine: Engine,
        *,
        model_id: str | None = None,
        gpu_id: str | None = None,
    ) -> ProfileEntry | None:
        """The profile for this key: by ids when known, else by equal model and GPU figures."""
        if model_id is not None and gpu_id is not None:
            return self._entries.get((model_id, gpu_id, precision, engine))
        for entry in reversed(self._entries.values()):
            if (entry.precision, entry.engine) != (precision, engine):
                continue
            model_matches = entry.model_id == model_id if model_id else entry.model == model
            gpu_matches = entry.gpu_id == gpu_id if gpu_id else entry.gpu == gpu
            if model_matches and gpu_matches:
                return entry
        return None
