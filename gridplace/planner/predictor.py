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
A configuration's answers to one ITL target and request size (``replica_answers``) are kept
together: what no TTFT budget changes (support, fit, the batch at the ITL target) is computed
once, then each budget (rounded down to 25 ms, conservative) costs one capacity search.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gridplace.planner.compile_cache import KeyedPredictor, digest
from gridplace.planner.core import ttft_budget_ms
from gridplace.planner.perfmodel import InvalidQuery, ProfileBook
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
from gridplace.planner.recalibrate import Calibration
from gridplace.planner.replica_answers import CorrectedSteps, ReplicaAnswers
from gridplace.specs import Catalog, PerformanceProfile, builtin_catalog

__all__ = [
    "CorrectedSteps",
    "ModelPredictor",
    "make_predictor",
    "make_stage_predictor",
]


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
    replicas: dict[tuple[object, ...], ReplicaModel | InvalidQuery] = {}
    questions: dict[tuple[object, ...], ReplicaAnswers] = {}

    def prepare(query: PredictionQuery) -> ReplicaAnswers:
        gpu = query.gpu
        config = (
            query.model_id, id(query.model), query.gpu_id, gpu.memory_gib,
            gpu.memory_bandwidth_gbps, query.precision, query.engine, query.tensor_parallel,
            query.share, query.interconnect, query.throttle_ratio, query.engine_options,
        )  # fmt: skip
        key = (*config, query.itl_slo_ms, query.prompt_tokens, query.output_tokens)
        found = questions.get(key)
        if found is None:
            found = questions[key] = _answers(query, config, replicas, book, learned)
        return found

    def predict(query: PredictionQuery) -> OptionPrediction:
        return prepare(query).at(ttft_budget_ms(query.ttft_budget_ms))

    entries = [*sorted(catalog.gpus.items()), *sorted(catalog.models.items())]
    key = digest(
        *(f"{name}={entry.model_dump_json()}" for name, entry in entries),
        *(p.model_dump_json() for p in profiles),
        repr(learned),
    )
    return ModelPredictor(predict, key, prepare)


class ModelPredictor(KeyedPredictor):
    """``make_predictor``'s predictor: the ``OptionPredictor`` call, and ``prepare``, a query's
    answers at every TTFT budget (``replica_answers``: compile asks many budgets at once)."""

    def __init__(
        self,
        predict: Callable[[PredictionQuery], OptionPrediction],
        key: str,
        prepare: Callable[[PredictionQuery], ReplicaAnswers],
    ) -> None:
        super().__init__(predict, key)
        self.prepare = prepare


def _answers(
    query: PredictionQuery,
    config: tuple[object, ...],
    replicas: dict[tuple[object, ...], ReplicaModel | InvalidQuery],
    book: ProfileBook,
    learned: Calibration,
) -> ReplicaAnswers:
    """The answers of ``query``'s configuration (its replica model built once per ``config``)."""
    replica = replicas.get(config)
    if replica is None:
        try:
            replica = _replica(query, book)
        except InvalidQuery as error:  # e.g. an unknown engineOptions.generation
            replica = error
        replicas[config] = replica
    sizes = (query.prompt_tokens, query.output_tokens)
    if isinstance(replica, InvalidQuery):
        reason = f"engineOptions: {replica}"
        fixed = OptionPrediction(False, reason, False, 0.0, query.gpu.memory_gib, 0, 0, 0)
        return ReplicaAnswers(None, query.itl_slo_ms, sizes, fixed=fixed)
    correction = None
    if replica.profile is None:  # hand-written profiles win over learned corrections
        correction = learned.for_type(
            (query.gpu_id, query.model_id, query.precision.value, query.engine.value)
        )
    return ReplicaAnswers(replica, query.itl_slo_ms, sizes, correction)


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
