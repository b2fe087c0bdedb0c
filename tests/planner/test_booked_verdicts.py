"""Compile's answers as columns: the verdict on booked answers read from their ITL column is the
rules' verdict on each answer, a compile that checks every answer one by one builds the same
Problem, and no automatic garbage collection runs while compiling."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest

from gridplace.planner import compile as compile_module
from gridplace.planner.compile import PlannerInputs, _booked_ok, _rule_failure, compile_problem
from gridplace.planner.ports import OptionPrediction, PredictionQuery
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Queueing
from gridplace.specs import builtin_catalog
from gridplace.specs.workload import ServiceLevel
from tests.planner.test_compile_equivalence import _assert_same, _grid, _latency


def test_the_column_verdict_on_booked_answers_is_the_rules_verdict() -> None:
    rng = random.Random(3)
    for _ in range(3000):
        slo = ServiceLevel(
            ttftMs=rng.choice([300.0, 1200.0, rng.uniform(50, 9000)]),
            itlMs=rng.choice([30.0, 60.0, rng.uniform(5, 200)]),
        )
        itl = rng.choice([slo.itl_ms, slo.itl_ms * rng.uniform(0.2, 1.5)])
        prefill = rng.uniform(1, 2 * slo.ttft_ms)
        booked = OptionPrediction(
            True, "", True, rng.uniform(1, 90), rng.uniform(1, 90), prefill, itl,
            rng.uniform(1e-6, 50), Queueing(prefill, prefill / 2, 3.0, itl / 2),
        )  # fmt: skip
        budget = rng.choice([-25.0, 0.0, slo.ttft_ms, rng.uniform(0, slo.ttft_ms)])
        want = _rule_failure(booked, slo, budget, "bf16 tp1") is None
        assert bool(_booked_ok(np.array([itl]), slo)[0]) == want


def test_checking_every_answer_one_by_one_builds_the_same_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nodes, workloads = _grid(60, 12, 5)
    inputs = PlannerInputs(nodes, workloads, builtin_catalog())
    columns = compile_problem(inputs, make_predictor(), _latency(nodes), cache=None)

    def none_pass(itl_ms: np.ndarray, slo: ServiceLevel) -> np.ndarray:
        return np.zeros(len(itl_ms), dtype=bool)

    monkeypatch.setattr(compile_module, "_booked_ok", none_pass)
    one_by_one = compile_problem(inputs, make_predictor(), _latency(nodes), cache=None)
    _assert_same(columns, one_by_one)


@pytest.mark.parametrize("enabled", [True, False])
def test_no_automatic_collection_while_compiling(enabled: bool) -> None:
    nodes, workloads = _grid(20, 4, 2)
    inputs = PlannerInputs(nodes, workloads, builtin_catalog())
    scalar = make_predictor()
    seen: list[bool] = []

    def recording(query: PredictionQuery) -> OptionPrediction:
        seen.append(gc.isenabled())
        return scalar(query)

    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        compile_problem(inputs, recording, _latency(nodes), cache=None)
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen and not any(seen)
    assert after == enabled  # running again after it, only if it ran before
