"""The bridge from the ``ports.OptionPredictor`` protocol to the performance model.

For one replica configuration it asks ``perfmodel`` for support, VRAM, single-stream latency and
the capacity inside the SLO (with the TTFT budget left after network RTT), and returns compile's
``OptionPrediction``. A replica on 1/share of a GPU is predicted on a GPU with 1/share of the
memory, bandwidth and tensor throughput (time-sliced: each replica's steps take turns).

Learned corrections (``recalibrate.Calibration``, per GPU type x model x precision x engine,
else the grid-wide one) multiply the GPU part of the model's prefill and decode steps (the step
minus the engine's host overhead, ``recalibrate.corrected``) before the capacity search; a
configuration with a hand-written ``PerformanceProfile`` keeps the profile's figures
and no correction.

Predictions are memoized: many pools share a GPU model, derate bucket and interconnect, and
workloads share models and SLOs, so a large grid costs thousands of predictions, not millions.
The TTFT budget is rounded down to 25 ms for the memo (conservative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gridplace.planner.compile_cache import KeyedPredictor, digest
from gridplace.planner.core import ttft_budget_ms
from gridplace.planner.perfmodel import InvalidQuery, ProfileBook, estimate_capacity
from gridplace.planner.perfmodel import Predictor as ReplicaModel
from gridplace.planner.perfmodel.results import NotSupported
from gridplace.planner.pools import share_of
from gridplace.planner.ports import (
    OptionPrediction,
    OptionPredictor,
    PredictionQuery,
    StageFigures,
    StagePredictor,
)
from gridplace.planner.problem import Queueing
from gridplace.planner.recalibrate import Calibration, Correction, corrected
from gridplace.specs import Catalog, PerformanceProfile, builtin_catalog


@dataclass(frozen=True)
class _Targets:
    ttft_ms: float
    itl_ms: float


@dataclass(frozen=True)
class _Traffic:
    prompt_tokens: int
    output_tokens: int


class CorrectedSteps:
    """A replica model whose prefill and decode steps' GPU parts are multiplied by a learned
    correction."""

    def __init__(self, replica: ReplicaModel, correction: Correction) -> None:
        self._replica = replica
        self._prefill = correction.prefill
        self._decode = correction.decode

    @property
    def step_overhead_ms(self) -> float:
        return self._replica.step_overhead_ms

    @property
    def prefill_chunk_tokens(self) -> int:
        return self._replica.prefill_chunk_tokens

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float:
        raw = self._replica.prefill_ms(batch, prompt_tokens)
        return corrected(raw, self.step_overhead_ms, self._prefill)

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        raw = self._replica.decode_ms(batch, context_tokens)
        return corrected(raw, self.step_overhead_ms, self._decode)

    def max_sequences(self, tokens_per_sequence: int) -> int:
        return self._replica.max_sequences(tokens_per_sequence)


def make_predictor(
    profiles: Sequence[PerformanceProfile] = (),
    catalog: Catalog | None = None,
    calibration: Calibration | None = None,
) -> OptionPredictor:
    """A memoizing predictor over the calibrated performance model, the given profiles and the
    learned corrections, keyed by their content (``compile_cache``: compiles across plans reuse
    its answers only while all three are unchanged)."""
    catalog = catalog or builtin_catalog()
    book = ProfileBook.from_documents(profiles, catalog)
    learned = calibration or Calibration()
    replicas: dict[tuple[object, ...], ReplicaModel] = {}
    memo: dict[tuple[object, ...], OptionPrediction] = {}

    def predict(query: PredictionQuery) -> OptionPrediction:
        budget = ttft_budget_ms(query.ttft_budget_ms)
        gpu = query.gpu
        config = (
            query.model_id, id(query.model), query.gpu_id, gpu.memory_gib,
            gpu.memory_bandwidth_gbps, query.precision, query.engine, query.tensor_parallel,
            query.share, query.interconnect, query.throttle_ratio, query.engine_options,
        )  # fmt: skip
        key = (*config, budget, query.itl_slo_ms, query.prompt_tokens, query.output_tokens)
        found = memo.get(key)
        if found is None:
            replica = replicas.get(config)
            if replica is None:
                try:
                    replica = _replica(query, book)
                except InvalidQuery as error:  # e.g. an unknown engineOptions.generation
                    reason = f"engineOptions: {error}"
                    found = OptionPrediction(False, reason, False, 0.0, gpu.memory_gib, 0, 0, 0)
                    memo[key] = found
                    return found
                replicas[config] = replica
            correction = None
            if replica.profile is None:  # hand-written profiles win over learned corrections
                correction = learned.for_type(
                    (query.gpu_id, query.model_id, query.precision.value, query.engine.value)
                )
            found = _predict(
                replica, budget, query.itl_slo_ms, query.prompt_tokens, query.output_tokens,
                correction,
            )  # fmt: skip
            memo[key] = found
        return found

    entries = [*sorted(catalog.gpus.items()), *sorted(catalog.models.items())]
    key = digest(
        *(f"{name}={entry.model_dump_json()}" for name, entry in entries),
        *(p.model_dump_json() for p in profiles),
        repr(learned),
    )
    return KeyedPredictor(predict, key)


def make_stage_predictor(
    profiles: Sequence[PerformanceProfile] = (), catalog: Catalog | None = None
) -> StagePredictor:
    """A memoizing ``StagePredictor`` over the performance model and the given profiles (no
    learned corrections: they are fitted to whole replicas)."""
    book = ProfileBook.from_documents(profiles, catalog or builtin_catalog())
    replicas: dict[tuple[object, ...], ReplicaModel | None] = {}
    memo: dict[tuple[object, ...], StageFigures | None] = {}

    def predict(query: PredictionQuery, batch: int) -> StageFigures | None:
        gpu = query.gpu
        config = (
            query.model_id, id(query.model), query.gpu_id, gpu.memory_gib,
            gpu.memory_bandwidth_gbps, query.precision, query.engine, query.tensor_parallel,
            query.interconnect, query.throttle_ratio, query.engine_options,
        )  # fmt: skip
        key = (*config, batch, query.prompt_tokens, query.output_tokens)
        if key not in memo:
            if config not in replicas:
                try:
                    replicas[config] = _replica(query, book)
                except InvalidQuery:
                    replicas[config] = None
            replica = replicas[config]
            memo[key] = None if replica is None else _stage_figures(query, replica, batch)
        return memo[key]

    return predict


def _stage_figures(
    query: PredictionQuery, replica: ReplicaModel, batch: int
) -> StageFigures | None:
    context = query.prompt_tokens + query.output_tokens
    at_batch = replica.predict(
        batch=batch, prompt_tokens=query.prompt_tokens, context_tokens=context
    )
    one = replica.predict(batch=1, prompt_tokens=query.prompt_tokens, context_tokens=context)
    if isinstance(at_batch, NotSupported) or isinstance(one, NotSupported):
        return None
    tp = query.tensor_parallel
    return StageFigures(
        weights_gib=at_batch.weights_gib * tp,
        kv_cache_gib=at_batch.kv_cache_gib * tp,
        reserve_gib=at_batch.reserve_gib,
        memory_gib=at_batch.memory_gib,
        decode_ms=at_batch.decode.total_ms,
        prefill_ms=one.prefill.total_ms,
    )


def _replica(query: PredictionQuery, book: ProfileBook) -> ReplicaModel:
    return ReplicaModel(
        query.model, share_of(query.gpu, query.share), query.precision, query.engine,
        query.tensor_parallel, query.throttle_ratio, query.interconnect,
        engine_options=query.engine_options, profiles=book, model_id=query.model_id,
        gpu_id=query.gpu_id if query.share == 1 else None,
    )  # fmt: skip


def _predict(
    replica: ReplicaModel,
    ttft_budget_ms: float,
    itl_slo_ms: float,
    prompt_tokens: int,
    output_tokens: int,
    correction: Correction | None = None,
) -> OptionPrediction:
    memory_gib = replica.gpu.memory_gib
    if replica.unsupported is not None:
        return OptionPrediction(False, replica.unsupported, False, 0.0, memory_gib, 0.0, 0.0, 0.0)
    # Fits means one full-length sequence (prompt + output) fits beside the weights.
    full = replica.predict(
        batch=1, prompt_tokens=prompt_tokens, context_tokens=prompt_tokens + output_tokens
    )
    assert not isinstance(full, NotSupported)
    if not full.fits:
        return OptionPrediction(True, "", False, full.vram_gib, full.memory_gib, 0.0, 0.0, 0.0)
    targets = _Targets(max(ttft_budget_ms, 0.0), itl_slo_ms)
    traffic = _Traffic(prompt_tokens, output_tokens)
    steps: ReplicaModel | CorrectedSteps = replica
    if correction is None:
        capacity = replica.capacity(targets, traffic)
    else:
        steps = CorrectedSteps(replica, correction)
        capacity = estimate_capacity(steps, targets, traffic)
    if capacity.rps <= 0:
        # Report the single-stream figures: what a user compares with the SLO.
        return OptionPrediction(
            True, capacity.reason, True, full.vram_gib, full.memory_gib,
            capacity.ttft_ms or full.ttft_ms, capacity.itl_ms or full.itl_ms, 0.0,
        )  # fmt: skip
    # VRAM booked: weights + KV cache for the planned concurrency + reserve.
    planned = replica.predict(
        batch=max(1, math.ceil(capacity.concurrency)),
        prompt_tokens=prompt_tokens,
        context_tokens=prompt_tokens + output_tokens,
    )
    assert not isinstance(planned, NotSupported)
    return OptionPrediction(
        True, "", True, min(planned.vram_gib, planned.memory_gib), planned.memory_gib,
        capacity.ttft_ms, capacity.itl_ms, capacity.rps,
        _queueing(steps, capacity.ttft_ms, capacity.max_batch, prompt_tokens, output_tokens),
    )  # fmt: skip


def _queueing(
    replica: ReplicaModel | CorrectedSteps,
    booked_ttft_ms: float,
    batch: int,
    prompt_tokens: int,
    output: int,
) -> Queueing:
    """The figures ``at_demand`` needs, from the step model as ``perfmodel.capacity`` states
    them: TTFT at zero load = one prefill + half a step + a step per further prefill chunk (at
    the booked batch: conservative below it), and the prefill queue's service time = the
    prefill's GPU work + a step per chunk."""
    context = prompt_tokens + output // 2
    prefill_ms = replica.prefill_ms(1, prompt_tokens)
    work_ms = max(prefill_ms - replica.step_overhead_ms, 1e-3)
    decode_ms = replica.decode_ms(max(batch, 1), context)
    step_ms = decode_ms + max(batch, 1) * work_ms / max(output, 1)
    chunks = math.ceil(prompt_tokens / replica.prefill_chunk_tokens)
    single_itl_ms = replica.decode_ms(1, context) + work_ms / max(output, 1)
    return Queueing(
        booked_ttft_ms=booked_ttft_ms,
        unloaded_ttft_ms=prefill_ms + step_ms / 2 + (chunks - 1) * decode_ms,
        service_ms=work_ms + chunks * decode_ms,
        unloaded_itl_ms=single_itl_ms,
    )
