"""The performance model's batched answers (many TTFT budgets in one numpy pass, what compile
asks) are the scalar answers (one budget at a time, what explain, the simulator and the API ask)
to the last bit, on random replica configurations, SLOs and request sizes; a compile through the
batched path gives the per-pool loop's Problem with the real model."""

from __future__ import annotations

import math
import random

import numpy as np

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.core import ttft_budget_ms
from gridplace.planner.perfmodel.capacity import TTFT_QUANTILE, LoadedReplica, wait_quantile_ms
from gridplace.planner.perfmodel.capacity_many import (
    _Bisection,
    _Queue,
    queue_row,
    rates_at_budgets,
)
from gridplace.planner.ports import OptionPrediction, PredictionQuery
from gridplace.planner.predictor import ModelPredictor, make_predictor
from gridplace.planner.recalibrate import Calibration, Correction
from gridplace.planner.replica_answers import ReplicaAnswers, answers_at_budgets
from gridplace.specs import Engine, Interconnect, Precision, builtin_catalog
from tests.planner.reference_compile import reference_compile
from tests.planner.test_compile_equivalence import _assert_same, _grid, _latency

GPUS = ["rtx-3060", "rtx-3090", "rtx-4090", "l40s", "a100-sxm-80gb", "h100-sxm", "mi300x"]
MODELS = ["phi-3-mini", "llama-3.1-8b", "qwen2.5-14b", "qwen2.5-32b", "llama-3.1-70b"]
PRECISIONS = [Precision.BF16, Precision.FP8, Precision.INT4, Precision.INT8]


def _random_query(rng: random.Random) -> PredictionQuery:
    catalog = builtin_catalog()
    gpu_id, model_id = rng.choice(GPUS), rng.choice(MODELS)
    tp = rng.choice([1, 1, 2, 4, 8])
    return PredictionQuery(
        model=catalog.model(model_id),
        model_id=model_id,
        gpu=catalog.gpu(gpu_id),
        gpu_id=gpu_id,
        precision=rng.choice(PRECISIONS),
        engine=rng.choice([Engine.VLLM, Engine.VLLM, Engine.SGLANG]),
        tensor_parallel=tp,
        share=rng.choice([1, 2, 4]) if tp == 1 else 1,
        interconnect=rng.choice([Interconnect.PCIE, Interconnect.NVLINK]),
        throttle_ratio=rng.choice([0.0, 0.0, 0.1, 0.3]),
        ttft_budget_ms=0.0,
        itl_slo_ms=rng.choice([15.0, 30.0, 60.0, 150.0, rng.uniform(10, 200)]),
        prompt_tokens=rng.choice([1, 128, 512, 2000, rng.randint(1, 16_000)]),
        output_tokens=rng.choice([1, 64, 300, rng.randint(1, 4000)]),
        engine_options=None,
    )


def _budgets(rng: random.Random) -> list[float]:
    """TTFT budgets as compile rounds them, negative (RTT past the target) to generous."""
    return [ttft_budget_ms(rng.uniform(-200, 12_000)) for _ in range(rng.randint(1, 12))]


def _pairs(
    predictor: ModelPredictor, rng: random.Random, queries: int
) -> list[tuple[ReplicaAnswers, float]]:
    pairs: list[tuple[ReplicaAnswers, float]] = []
    for _ in range(queries):
        answers = predictor.prepare(_random_query(rng))
        pairs.extend((answers, budget) for budget in _budgets(rng))
    rng.shuffle(pairs)
    return pairs


def _model_predictor(calibration: Calibration | None = None) -> ModelPredictor:
    predictor = make_predictor(calibration=calibration)
    assert isinstance(predictor, ModelPredictor)
    return predictor


def test_batched_answers_are_the_scalar_answers_to_the_last_bit() -> None:
    searched = 0
    for seed, calibration in ((1, None), (2, Calibration(grid=Correction(1.3, 0.8, 5, 5)))):
        batched_predictor = _model_predictor(calibration)
        scalar_predictor = _model_predictor(calibration)
        # The same random questions asked of two predictors, so no answer is memoized across.
        batched = _pairs(batched_predictor, random.Random(seed), 300)
        scalar = _pairs(scalar_predictor, random.Random(seed), 300)
        searched += sum(
            1
            for answers, budget in batched
            if answers.loaded is not None and answers.loaded.unloaded_ttft_ms <= budget
        )
        columns = answers_at_budgets(batched)
        want = [answers.at(budget) for answers, budget in scalar]
        got = [columns.prediction(i) for i in range(len(batched))]
        assert got == want  # dataclass equality: every float to the last bit
        figures = [(p.prefill_ms, p.itl_ms, p.capacity_rps, p.vram_gib) for p in want]
        assert columns.figures.tolist() == [list(f) for f in figures]
        assert columns.booked.tolist() == [p.queueing is not None for p in want]
    assert searched > 1000  # most pairs went through the vectorized search


def test_vectorized_rates_are_the_scalar_search() -> None:
    """Including budgets right at a replica's unloaded TTFT and at its full throughput's TTFT,
    where a one-ulp difference in the TTFT quantile would move the bisection. 3,000 replicas:
    numpy's own ``log`` in place of ``math.log`` fails this (it did when the test was written;
    400 replicas did not show it)."""
    predictor = _model_predictor()
    rng = random.Random(7)
    loaded: list[LoadedReplica] = []
    while len(loaded) < 3000:
        found = predictor.prepare(_random_query(rng)).loaded
        if found is not None:
            loaded.append(found)
    budgets: list[float] = []
    items: list[LoadedReplica] = []
    for item in loaded:
        at_full = item.ttft_quantile(item.throughput_rps)
        for budget in (item.unloaded_ttft_ms, at_full, (item.unloaded_ttft_ms + at_full) / 2):
            items.append(item)
            budgets.append(budget)
    rates = rates_at_budgets([queue_row(item) for item in items], np.array(budgets))
    for at, (item, budget) in enumerate(zip(items, budgets, strict=True)):
        capacity = item.at_budget(budget)
        assert rates.rps[at] == capacity.rps
        assert rates.ttft_ms[at] == capacity.ttft_ms
        assert rates.concurrency[at] == capacity.concurrency


def test_compile_through_the_batched_model_is_the_per_pool_loop() -> None:
    nodes, workloads = _grid(60, 12, 5)
    inputs = PlannerInputs(nodes, workloads, builtin_catalog())
    latency = _latency(nodes)
    scalar = make_predictor()

    def one_at_a_time(query: PredictionQuery) -> OptionPrediction:  # no ``prepare``
        return scalar(query)

    _assert_same(
        compile_problem(inputs, make_predictor(), latency),
        reference_compile(inputs, one_at_a_time, latency),
    )


def test_a_bisection_step_decides_as_the_scalar_quantile() -> None:
    """Budgets exactly at a rate's TTFT quantile and one ulp below it, at rates whose logarithm
    numpy computes one ulp off the C library's: numpy's ``log`` alone decides some of them the
    other way (``_CLEAR = 0`` fails this); the step's check with ``math.log`` where the quantile
    is close to the budget decides them all as the scalar code."""
    rng = np.random.default_rng(11)
    service = rng.uniform(5.0, 400.0, 400_000)
    rps = rng.uniform(0.06, 0.99, len(service)) * 1e3 / service
    rho = np.minimum(rps * service / 1e3, 0.999)
    ratio = rho / (1.0 - TTFT_QUANTILE)
    off = np.flatnonzero(np.log(ratio) != np.array([math.log(x) for x in ratio.tolist()]))
    assert len(off) > 50
    rows = [(service[i], 1e3, 1.0, 1.0, 0.0) for i in off.tolist()]  # no wait before the queue
    quantiles = [wait_quantile_ms(rho[i], service[i]) for i in off.tolist()]
    budgets = [*quantiles, *(math.nextafter(q, -math.inf) for q in quantiles)]
    want = [q <= b for q, b in zip(quantiles * 2, budgets, strict=True)]
    everyone = np.arange(2 * len(rows), dtype=np.intp)
    bisection = _Bisection(_Queue(rows * 2), everyone, np.array(budgets))
    got = bisection.fits(np.concatenate([rps[off], rps[off]]))
    assert got.tolist() == want
