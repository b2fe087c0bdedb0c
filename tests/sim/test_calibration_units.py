"""The truth's bias and a learned correction are one quantity, a factor on the GPU part of a step
(host overhead excluded): the estimator recovers the truth's factor from what a replica
reports, the planner's corrected steps then match the truth at other operating points, and a
replica on a shared GPU reports windows that are judged on its slice."""

from __future__ import annotations

import pytest

from gridplace.planner.perfmodel import Predictor
from gridplace.planner.predictor import CorrectedSteps
from gridplace.planner.recalibrate import Correction, EstimatorSettings, ModelOracle, window_ratio
from gridplace.sim import SimInputs, TruthBias, TruthSettings
from gridplace.sim.bias import ConstantBias
from gridplace.sim.deploy import build_world
from gridplace.sim.engine import run
from gridplace.sim.loop import observations
from gridplace.sim.steps import CONTEXT_BUCKET, PredictorSteps
from gridplace.sim.truth import GroundTruth
from gridplace.specs import ObservationWindow, builtin_catalog
from gridplace.specs.common import Engine, Precision
from tests.sim.fixtures import arrivals, node, plan, workload

CATALOG = builtin_catalog()
DECODE, PREFILL = 1.25, 1.5


def _model() -> Predictor:
    return Predictor(
        CATALOG.models["llama-3.1-8b"], CATALOG.gpus["rtx-4090"], Precision.FP8, Engine.VLLM,
        model_id="llama-3.1-8b", gpu_id="rtx-4090",
    )  # fmt: skip


def _window(decode_ms: float, prefill_ms: float, batch: int, context: int) -> ObservationWindow:
    prompt = 500
    requests, steps = 100, 2000
    return ObservationWindow(
        node="n0", workload="chat", model="llama-3.1-8b", gpu="rtx-4090",
        precision=Precision.FP8, engine=Engine.VLLM, start_s=0.0, end_s=60.0, requests=requests,
        prompt_tokens=prompt * requests, output_tokens=100 * requests,
        decode_seconds=steps * decode_ms / 1000, decode_steps=steps, mean_running_batch=batch,
        mean_context_tokens=context, prefill_seconds=requests * prefill_ms / 1000,
    )  # fmt: skip


def test_the_learned_factor_is_the_truths_in_the_units_the_planner_applies() -> None:
    model = _model()
    truth = PredictorSteps(model, bias=ConstantBias(DECODE, PREFILL))
    # The host overhead is a real share of these steps, so a whole-step factor would differ.
    assert model.step_overhead_ms > 0.1 * model.decode_ms(1, 100)
    context = 20 * CONTEXT_BUCKET + CONTEXT_BUCKET // 2  # a bucket's middle: the truth's point
    seen = _window(truth.decode_ms(8, context), truth.prefill_ms(500), 8, context)
    ratio = window_ratio(seen, lambda w: model, EstimatorSettings())
    assert ratio is not None
    assert ratio.decode == pytest.approx(DECODE, rel=1e-6)
    assert ratio.prefill == pytest.approx(PREFILL, rel=1e-6)
    planned = CorrectedSteps(model, Correction(ratio.decode, ratio.prefill))
    for batch, other in ((1, 3 * CONTEXT_BUCKET + 16), (64, 60 * CONTEXT_BUCKET + 16)):
        assert planned.decode_ms(batch, other) == pytest.approx(truth.decode_ms(batch, other))
    assert planned.prefill_ms(1, 2000) == pytest.approx(truth.prefill_ms(2000))


def test_replicas_sharing_a_gpu_report_windows_judged_on_their_slice() -> None:
    nodes = [node("n0", "rtx-4090", count=1)]
    inputs = SimInputs(nodes, [workload("chat", rps=4.0)], CATALOG)
    shared = plan(
        {"workload": "chat", "node": "n0", "gpus": [0], "gpuShare": 2},
        {"workload": "chat", "node": "n0", "gpus": [0], "gpuShare": 2},
    )
    settings = TruthSettings(
        efficiency=False, thermal=False, failures=False, bias=TruthBias.fixed(DECODE, PREFILL)
    )
    truth = GroundTruth.build(nodes, CATALOG, 200.0, settings=settings)
    times = [0.25 * i for i in range(480)]
    result = run(build_world(shared, inputs, truth), arrivals(times, 500, 100), 120.0, 60.0, 60.0)
    windows = observations(shared, inputs, result, 0.0, 120.0, 60.0)
    assert windows and {w.gpu_share for w in windows} == {2}
    assert {w.start_s for w in windows} == {0.0, 60.0}
    oracle = ModelOracle(nodes, CATALOG)
    whole = oracle(windows[0].model_copy(update={"gpu_share": 1}))
    slice_ = oracle(windows[0])
    assert whole is not None and slice_ is not None
    assert slice_.decode_ms(4, 600) > 1.5 * whole.decode_ms(4, 600)  # half the bandwidth
    for window in windows:
        ratio = window_ratio(window, oracle, EstimatorSettings())
        assert ratio is not None and ratio.prefill is not None and ratio.decode is not None
        # Judged on its slice, the ratio is the truth's factor (decode: up to the batch and
        # context averaged over a window's steps).
        assert ratio.prefill == pytest.approx(PREFILL, rel=0.02)
        assert ratio.decode == pytest.approx(DECODE, rel=0.05)
