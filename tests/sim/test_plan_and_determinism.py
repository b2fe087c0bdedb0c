"""Plans against the specs: reference checks, seeded determinism, and blindness to the planner's
own predictions."""

from __future__ import annotations

import numpy as np
import pytest

from gridplace.planner.perfmodel import Predictor
from gridplace.sim import (
    GroundTruth,
    PlanReferenceError,
    SimInputs,
    SimSettings,
    TruthSettings,
    build_world,
    resolve,
    run,
    simulate,
)
from gridplace.specs import PlacementPlan, Precision, builtin_catalog
from tests.sim.fixtures import arrivals, node, plan, workload

CATALOG = builtin_catalog()


def _inputs() -> SimInputs:
    nodes = [node("a", "rtx-4090", 2, price=1.0), node("b", "l40s", 1, region="us-east")]
    workloads = [workload("chat", rps=3.0, sources=(("eu-west", 0.6), ("us-east", 0.4)))]
    return SimInputs(nodes, workloads, CATALOG)


def _plan() -> PlacementPlan:
    return plan(
        {"workload": "chat", "node": "a", "gpus": [0]},
        {"workload": "chat", "node": "a", "gpus": [1], "gpuShare": 2},
        {"workload": "chat", "node": "b", "gpus": [0]},
    )


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        pytest.param({"workload": "chat", "node": "ghost", "gpus": [0]}, "node 'ghost'", id="node"),
        pytest.param({"workload": "chat", "node": "a", "gpus": [2]}, "out of range", id="gpu"),
        pytest.param({"workload": "nope", "node": "a", "gpus": [0]}, "unknown workload", id="wl"),
    ],
)
def test_a_plan_naming_what_the_inputs_lack_is_rejected_with_its_assignment(
    assignment: dict[str, object], expected: str
) -> None:
    bad = plan({"workload": "chat", "node": "b", "gpus": [0]}, assignment)
    with pytest.raises(PlanReferenceError) as caught:
        resolve(bad, _inputs())
    (label, what), *others = caught.value.problems
    assert not others
    assert label.startswith("assignment 1 (")
    assert expected in what


def test_a_gpu_given_out_twice_is_rejected() -> None:
    bad = plan(
        {"workload": "chat", "node": "b", "gpus": [0]},
        {"workload": "chat", "node": "b", "gpus": [0], "gpuShare": 2},
    )
    with pytest.raises(PlanReferenceError, match=r"1\.50 times over"):
        resolve(bad, _inputs())


def test_shares_that_add_up_to_one_gpu_are_accepted_and_priced_by_share() -> None:
    ok = plan(
        {"workload": "chat", "node": "b", "gpus": [0], "gpuShare": 2},
        {"workload": "chat", "node": "b", "gpus": [0], "gpuShare": 2},
        {"workload": "chat", "node": "a", "gpus": [1]},
    )
    replicas = resolve(ok, _inputs())
    assert [r.cost_per_hour for r in replicas] == pytest.approx([0.25, 0.25, 0.5])


def test_same_seed_same_result_other_seed_other_result() -> None:
    settings = SimSettings(duration_s=120.0, seed=3, truth=TruthSettings(failure_rate_per_hour=2))
    first = simulate(_plan(), _inputs(), settings)
    second = simulate(_plan(), _inputs(), settings)
    other = simulate(_plan(), _inputs(), SimSettings(duration_s=120.0, seed=4))
    assert len(first.ttft_ms) > 200
    np.testing.assert_array_equal(first.ttft_ms, second.ttft_ms)
    np.testing.assert_array_equal(first.replica, second.replica)
    np.testing.assert_array_equal(first.itl_mean_ms, second.itl_mean_ms)
    assert len(other.ttft_ms) != len(first.ttft_ms) or not np.array_equal(
        other.ttft_ms, first.ttft_ms
    )


def test_the_planners_predictions_do_not_change_the_verdict() -> None:
    """Ground truth comes from the performance model and the truth layer, never from the
    figures the planner wrote into its plan."""
    rows = [a.to_yaml_dict() for a in _plan().spec.assignments]
    honest = plan(*[{**row, "predicted": None} for row in rows])
    boastful = plan(
        *[
            {**row, "predicted": {"ttftMs": 1.0, "itlMs": 0.5, "capacityRps": 1e3, "vramGiB": 1}}
            for row in rows
        ]
    )
    settings = SimSettings(duration_s=60.0, seed=1)
    a = simulate(honest, _inputs(), settings)
    b = simulate(boastful, _inputs(), settings)
    np.testing.assert_array_equal(a.ttft_ms, b.ttft_ms)
    np.testing.assert_array_equal(a.itl_mean_ms, b.itl_mean_ms)


def test_every_request_is_accounted_for_and_traffic_follows_the_source_shares() -> None:
    result = simulate(_plan(), _inputs(), SimSettings(duration_s=300.0, seed=2))
    assert set(np.unique(result.status)) <= {1, 2, 3}
    shares = np.bincount(result.region, minlength=2) / len(result.region)
    assert shares == pytest.approx([0.6, 0.4], abs=0.05)
    summary = result.summary()[0]
    assert summary.requests == len(result.status)
    assert summary.throughput_rps == pytest.approx(3.0, rel=0.15)
    # a: $1.00 for 2 GPUs -> 0.50 + half a GPU 0.25; b: one GPU $0.50.
    assert summary.cost_per_hour == pytest.approx(0.5 + 0.25 + 0.5)


def test_with_no_hidden_truth_a_lone_request_runs_at_the_performance_models_speed() -> None:
    inputs = _inputs()
    truth = GroundTruth.build(inputs.nodes, CATALOG, 60.0, settings=TruthSettings.ideal())
    one = plan({"workload": "chat", "node": "b", "gpus": [0]})
    world = build_world(one, inputs, truth)
    result = run(world, arrivals([1.0], 500, 100), 30.0)
    model = Predictor(CATALOG.models["llama-3.1-8b"], CATALOG.gpus["l40s"], Precision.FP8)
    rtt_ms = world.replicas[0].rtt_p50_ms[0]  # rtt_z = 0: the median
    assert rtt_ms > 0
    assert result.ttft_ms[0] == pytest.approx(model.prefill_ms(1, 500) + rtt_ms, rel=1e-6)
    assert result.itl_mean_ms[0] == pytest.approx(model.decode_ms(1, 550), rel=0.01)
