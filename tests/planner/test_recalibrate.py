"""Recalibration: the estimator's shrinkage, the predictor's use of corrections (profiles win),
and the replan triggers' hysteresis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gridplace.planner.compile import PredictionQuery
from gridplace.planner.predictor import make_predictor
from gridplace.planner.recalibrate import (
    Calibration,
    Correction,
    EstimatorSettings,
    ModelOracle,
    corrected,
    estimate,
    prior_windows,
    window_ratio,
)
from gridplace.planner.replan_triggers import (
    ReplanPolicy,
    capacity_moves,
    cost_savings,
    slo_shortfalls,
    windowed_attainment,
)
from gridplace.specs import Node, ObservationWindow, PlacementPlan, builtin_catalog
from gridplace.specs.common import Engine, Metadata, Precision
from gridplace.specs.profile import PerformanceProfile, PerformanceProfileSpec, ProfilePoint

CATALOG = builtin_catalog()
KEY = ("rtx-4090", "llama-3.1-8b", "fp8", "vllm")
DECODE_MS, PREFILL_MS_PER_TOKEN, OVERHEAD_MS = 10.0, 0.1, 2.0


class FlatModel:
    """Step times the tests know: decode constant, prefill linear in the prompt, both including
    the host overhead."""

    step_overhead_ms = OVERHEAD_MS

    def decode_ms(self, batch: int, context_tokens: int) -> float:
        return DECODE_MS

    def prefill_ms(self, batch: int, prompt_tokens: int) -> float:
        return PREFILL_MS_PER_TOKEN * prompt_tokens * batch


def oracle(window: ObservationWindow) -> FlatModel | None:
    return FlatModel() if window.gpu == "rtx-4090" else None


def window(
    node: str, decode: float, prefill: float, start_s: float = 0.0, requests: int = 100,
    gpu: str = "rtx-4090", attainment: float | None = None,
) -> ObservationWindow:  # fmt: skip
    """A window whose steps' GPU parts are ``decode`` and ``prefill`` times the model's."""
    steps = 3000
    prefill_ms = corrected(500 * PREFILL_MS_PER_TOKEN, OVERHEAD_MS, prefill)
    return ObservationWindow(
        node=node, workload="chat", model="llama-3.1-8b", gpu=gpu, precision=Precision.FP8,
        engine=Engine.VLLM, start_s=start_s, end_s=start_s + 60, requests=requests,
        prompt_tokens=500 * requests, output_tokens=100 * requests,
        decode_seconds=steps * corrected(DECODE_MS, OVERHEAD_MS, decode) / 1000,
        decode_steps=steps, mean_running_batch=8, mean_context_tokens=600,
        prefill_seconds=requests * prefill_ms / 1000,
        slo_attainment=attainment,
    )  # fmt: skip


def test_one_window_barely_moves_the_correction() -> None:
    found = estimate([window("a", 1.5, 2.0)], oracle).gpu_types[KEY]
    k = EstimatorSettings().type_prior_windows
    share = 1 - (k / (1 + k)) ** 2  # the grid level, then the type level
    assert math.log(found.decode) == pytest.approx(share * math.log(1.5))
    assert math.log(found.prefill) == pytest.approx(share * math.log(2.0))
    assert 1.0 < found.decode < 1.06  # barely: a twentieth of the way to 1.5


def test_many_noisy_windows_converge_to_the_true_factor_per_type_and_per_node() -> None:
    rng = np.random.default_rng(7)
    truth = {"a": 1.3, "b": 1.3, "c": 1.3, "slow": 1.6}
    windows = [
        window(
            n,
            f * math.exp(0.05 * rng.standard_normal()),
            0.8 * math.exp(0.05 * rng.standard_normal()),
            60.0 * i,
        )
        for i in range(100)
        for n, f in truth.items()
    ]
    calibration = estimate(windows, oracle)
    assert calibration.windows == 400
    assert calibration.gpu_types[KEY].prefill == pytest.approx(0.8, rel=0.03)
    assert calibration.for_node("a", KEY).decode == pytest.approx(1.3, rel=0.03)  # type: ignore[union-attr]
    assert calibration.for_node("slow", KEY).decode == pytest.approx(1.6, rel=0.04)  # type: ignore[union-attr]
    # A node never observed gets its GPU type's correction.
    assert calibration.for_node("new", KEY) == calibration.gpu_types[KEY]


def test_precise_windows_of_differing_nodes_move_each_node_to_its_own_factor() -> None:
    """Shrinkage as strong as the windows' noise calls for: 6 windows, 0.5% noise, nodes 10-25%
    apart put each node within 1% of its factor (a fixed 8-window prior left it halfway)."""
    rng = np.random.default_rng(3)
    truth = {"a": 1.0, "b": 1.1, "c": 1.25}
    windows = [
        window(n, f * math.exp(0.005 * rng.standard_normal()), 1.0, 60.0 * i)
        for i in range(6)
        for n, f in truth.items()
    ]
    calibration = estimate(windows, oracle)
    for name, factor in truth.items():
        assert calibration.nodes[(name, KEY)].decode == pytest.approx(factor, rel=0.01)
    ratios = [window_ratio(w, oracle, EstimatorSettings()) for w in windows]
    groups = [[r for r in ratios if r is not None and r.node == n] for n in truth]
    assert prior_windows(groups, "decode", 8.0) < 0.1


def test_noise_without_a_spread_between_nodes_keeps_the_full_prior() -> None:
    rng = np.random.default_rng(5)
    windows = [
        window(n, 1.3 * math.exp(0.05 * rng.standard_normal()), 1.0, 60.0 * i)
        for i in range(3)
        for n in "abcd"
    ]
    ratios = [window_ratio(w, oracle, EstimatorSettings()) for w in windows]
    groups = [[r for r in ratios if r is not None and r.node == n] for n in "abcd"]
    assert prior_windows(groups, "decode", 8.0) == 8.0  # the noise explains the spread
    assert prior_windows(groups[:1], "decode", 8.0) == 8.0  # one node: nothing to compare
    assert prior_windows([g[:1] for g in groups], "decode", 8.0) == 8.0  # no noise estimate


def test_small_windows_weigh_less_and_unusable_ones_are_ignored() -> None:
    full = estimate([window("a", 2.0, 1.0)], oracle).gpu_types[KEY].decode
    small = estimate([window("a", 2.0, 1.0, requests=2)], oracle).gpu_types[KEY].decode
    assert 1.0 < small < full
    calibration = estimate(
        [window("a", 2.0, 1.0, gpu="h100-sxm"), window("a", 1.0, 1.0, requests=0)], oracle
    )
    assert calibration.ignored == 2 and calibration.gpu_types == {}


def test_the_calibration_round_trips_through_its_document() -> None:
    calibration = estimate([window("a", 1.5, 2.0), window("b", 1.1, 0.9)], oracle)
    again = Calibration.from_dict(calibration.as_dict())
    assert again.gpu_types[KEY].decode == pytest.approx(calibration.gpu_types[KEY].decode, rel=1e-4)
    assert set(again.nodes) == set(calibration.nodes)


def test_the_model_oracle_predicts_for_the_nodes_gpu() -> None:
    node = Node.model_validate({
        "metadata": {"name": "a"},
        "spec": {"region": "eu-west", "provider": "p", "pricePerHour": 1.0,
                 "gpus": [{"model": "rtx-4090", "count": 1}]},
    })  # fmt: skip
    model = ModelOracle([node], CATALOG)
    assert model(window("a", 1.0, 1.0)) is not None
    assert model(window("elsewhere", 1.0, 1.0)) is None
    assert model(window("a", 1.0, 1.0, gpu="h100-sxm")) is None  # not this node's GPU


def _query(model: str = "llama-3.1-8b") -> PredictionQuery:
    return PredictionQuery(
        model=CATALOG.models[model], model_id=model, gpu=CATALOG.gpus["rtx-4090"],
        gpu_id="rtx-4090", precision=Precision.FP8, engine=Engine.VLLM, tensor_parallel=1,
        share=1, interconnect=None, throttle_ratio=0.0, ttft_budget_ms=1000.0, itl_slo_ms=60.0,
        prompt_tokens=500, output_tokens=200,
    )  # type: ignore[arg-type]  # fmt: skip


def _calibration(decode: float, prefill: float) -> Calibration:
    return Calibration(gpu_types={KEY: Correction(decode, prefill, 10, 10)})


def test_corrections_move_the_predicted_capacity_and_profiles_win() -> None:
    plain = make_predictor()(_query()).capacity_rps
    slower = make_predictor(calibration=_calibration(1.5, 1.5))(_query()).capacity_rps
    faster = make_predictor(calibration=_calibration(0.8, 0.8))(_query()).capacity_rps
    assert slower < 0.8 * plain and faster > 1.1 * plain
    profile = PerformanceProfile(
        metadata=Metadata(name="measured"),
        spec=PerformanceProfileSpec(
            model="llama-3.1-8b", gpu="rtx-4090", precision=Precision.FP8, engine=Engine.VLLM,
            points=[ProfilePoint(batch=1, prompt_tokens=512, context_tokens=512, ttft_ms=60.0,
                                 itl_ms=9.0)], source="bench",
        ),
    )  # fmt: skip
    profiled = make_predictor([profile], CATALOG)(_query()).capacity_rps
    both = make_predictor([profile], CATALOG, _calibration(1.5, 1.5))(_query()).capacity_rps
    assert both == profiled


def test_a_replan_is_not_triggered_by_noise_inside_the_band() -> None:
    queries = [("chat on a:0", _query())]
    basis = make_predictor(calibration=_calibration(1.2, 1.2))
    rng = np.random.default_rng(3)
    moved = []
    for _ in range(20):  # estimates wobbling around the plan's calibration (capacity is steep)
        wobble = 1.2 * (1 + rng.uniform(-0.01, 0.01))
        noisy = make_predictor(calibration=_calibration(wobble, wobble))
        assert capacity_moves(queries, basis, noisy) == []
        moved.append(noisy(_query()).capacity_rps / basis(_query()).capacity_rps - 1)
    assert max(abs(m) for m in moved) > 0.01  # the noise did move capacities, inside the band
    drifted = make_predictor(calibration=_calibration(1.45, 1.45))
    (reason,) = capacity_moves(queries, basis, drifted)
    assert "chat on a:0" in reason and "band 10%" in reason


def test_slo_shortfall_needs_two_windows_in_a_row_since_the_plan() -> None:
    policy = ReplanPolicy(slo_target=0.99, slo_windows=2)
    assert slo_shortfalls({"chat": [0.95]}, policy) == []
    assert slo_shortfalls({"chat": [0.95, 0.995]}, policy) == []
    assert len(slo_shortfalls({"chat": [0.999, 0.95, 0.97]}, policy)) == 1
    windows = [
        window("a", 1, 1, start_s=0.0, attainment=0.5),  # before the plan: not counted
        window("a", 1, 1, start_s=600.0, attainment=0.9, requests=100),
        window("b", 1, 1, start_s=600.0, attainment=1.0, requests=300),
        window("a", 1, 1, start_s=660.0, attainment=0.97),
    ]
    series = windowed_attainment(windows, since_s=600.0, window_s=60.0)
    assert series["chat"] == pytest.approx([0.975, 0.97])


def _plan(replicas: int, unplaced: tuple[str, ...] = ()) -> PlacementPlan:
    rows = [{"workload": "chat", "node": "a", "gpus": [0], "precision": "fp8"}] * replicas
    status = {"unplaced": [{"workload": w, "reasons": ["no capacity"]}
                           for w in unplaced]}  # fmt: skip
    return PlacementPlan.model_validate(
        {"metadata": {"name": "p"}, "spec": {"assignments": rows}, "status": status}
    )


def test_a_dry_run_replan_is_adopted_only_when_it_saves_more_than_the_band() -> None:
    def cost(plan: PlacementPlan) -> float:
        return float(len(plan.spec.assignments))

    policy = ReplanPolicy(cost_saving=0.05)
    assert cost_savings(_plan(100), _plan(96), cost, policy) == []  # inside the band
    assert cost_savings(_plan(100), _plan(101), cost, policy) == []
    (reason,) = cost_savings(_plan(100), _plan(90), cost, policy)
    assert "$90.00/h instead of $100.00/h" in reason and "band 5%" in reason
    # Cheaper by leaving a workload unplaced is no saving.
    assert cost_savings(_plan(100), _plan(50, ("code",)), cost, policy) == []
    assert len(cost_savings(_plan(100, ("code",)), _plan(50, ("code",)), cost, policy)) == 1
