"""The largest batch inside the ITL target: the slope-guided search finds the batch the gallop
then bisection it replaced finds, on every kind of step the catalog gives (dense and MoE
models, every engine, tensor parallel, fractional GPUs, learned corrections) and on steps far
from linear, in fewer step evaluations."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

import pytest

from gridplace.planner.perfmodel import capacity
from gridplace.planner.ports import PredictionQuery
from gridplace.planner.predictor import make_predictor
from gridplace.planner.recalibrate import Calibration, Correction
from gridplace.specs import Engine, Interconnect, Precision, builtin_catalog

Search = Callable[[Callable[[int], float], float, int], int]


def gallop_then_bisect(itl_at: Callable[[int], float], itl_booked: float, kv_limit: int) -> int:
    """The search ``capacity._largest_batch`` used before (the reference)."""
    low, high = 1, 2
    while high <= kv_limit and itl_at(high) <= itl_booked:
        low, high = high, high * 2
    high = min(high, kv_limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        if itl_at(middle) <= itl_booked:
            low = middle
        else:
            high = middle
    return low


class Compared:
    """Runs both searches on each question and counts their step evaluations."""

    def __init__(self, search: Search) -> None:
        self.search = search
        self.evaluations = [0, 0]  # this search, the reference
        self.searches = 0

    def __call__(self, itl_at: Callable[[int], float], itl_booked: float, kv_limit: int) -> int:
        counted = [0]

        def step(batch: int) -> float:
            assert 1 <= batch <= kv_limit
            counted[0] += 1
            return itl_at(batch)

        found = self.search(step, itl_booked, kv_limit)
        self.evaluations[0], counted[0] = self.evaluations[0] + counted[0], 0
        want = gallop_then_bisect(step, itl_booked, kv_limit)
        self.evaluations[1] += counted[0]
        self.searches += 1
        assert found == want, (itl_booked, kv_limit)
        return found


def _queries(rng: random.Random, count: int) -> Iterator[PredictionQuery]:
    catalog = builtin_catalog()
    for _ in range(count):
        model_id, gpu_id = rng.choice(sorted(catalog.models)), rng.choice(sorted(catalog.gpus))
        tp = rng.choice([1, 1, 2, 4, 8])
        yield PredictionQuery(
            model=catalog.model(model_id), model_id=model_id, gpu=catalog.gpu(gpu_id),
            gpu_id=gpu_id, precision=rng.choice(list(Precision)), engine=rng.choice(list(Engine)),
            tensor_parallel=tp, share=rng.choice([1, 2, 4]) if tp == 1 else 1,
            interconnect=rng.choice([Interconnect.PCIE, Interconnect.NVLINK]),
            throttle_ratio=rng.choice([0.0, 0.1, 0.3]), ttft_budget_ms=0.0,
            itl_slo_ms=rng.choice([10.0, 30.0, 60.0, 150.0, rng.uniform(5, 500)]),
            prompt_tokens=rng.choice([1, 512, 2000, rng.randint(1, 16_000)]),
            output_tokens=rng.choice([1, 64, 300, rng.randint(1, 4000)]), engine_options=None,
        )  # fmt: skip


def test_the_same_batch_as_gallop_and_bisection_on_the_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared = Compared(capacity._largest_batch)
    monkeypatch.setattr(capacity, "_largest_batch", compared)
    rng = random.Random(20)
    learned = Calibration(grid=Correction(decode=1.3, prefill=0.8))
    for calibration in (None, learned):
        predictor = make_predictor(calibration=calibration)
        for query in _queries(rng, 2000):
            predictor.prepare(query)  # type: ignore[attr-defined]
    assert compared.searches > 500
    # Fewer step evaluations (10,000 x 1,000: 4.6 a search where the gallop took 10.4).
    assert compared.evaluations[0] < 0.7 * compared.evaluations[1]


@pytest.mark.parametrize(
    "step",
    [
        lambda b: 7.0 + 0.01 * b,  # linear
        lambda b: max(9.0, 0.02 * b),  # flat, then compute-bound
        lambda b: 5.0 + 0.3 * math.sqrt(b) + (0.5 * (b - 900) if b > 900 else 0.0),  # kinked
        lambda b: 3.0 + 1e-6 * b**2,  # convex
        lambda b: 4.0 + math.log(b),  # concave
        lambda b: 6.0 + (b // 100) * 0.5,  # steps of equal values
        lambda b: 8.0,  # flat: the KV cache bounds it
    ],
)
def test_the_same_batch_on_steps_far_from_linear(step: Callable[[int], float]) -> None:
    compared = Compared(capacity._largest_batch)
    for kv_limit in (1, 2, 3, 7, 100, 1000, 4096):
        for booked in (2.0, 7.0, 8.0, 9.5, 12.0, 20.0, 1e6):
            compared(step, booked, kv_limit)
    # Never much more work than the gallop, whatever the shape.
    assert compared.evaluations[0] <= 1.5 * compared.evaluations[1]
