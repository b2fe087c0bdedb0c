"""The grounded loop in simulated time: under a hidden bias the first plan misses, the server's
estimator and triggers replan, and attainment and step-time predictions recover."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.planner.replan_triggers import (
    ReplanPolicy,
)
from gridplace.planner.solve import SolverSettings
from gridplace.sim import SimInputs, SimSettings, TruthBias, TruthSettings
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.loop import (
    LoopSettings,
    known_calibration,
    plan_cost_per_hour,
    plan_with,
    run_loop,
)
from gridplace.specs import builtin_catalog
from tests.sim.fixtures import node, workload, write_documents

CATALOG = builtin_catalog()
LOOP = LoopSettings(recalibrate_every_s=600.0, solver=SolverSettings(time_limit_s=5.0))
BIASED = TruthSettings(efficiency=False, thermal=False, failures=False,
                       bias=TruthBias.fixed(1.9, 1.9))  # fmt: skip


def _inputs() -> SimInputs:
    nodes = [node(f"n{i}", "rtx-4090", price=0.4 + 0.01 * i) for i in range(16)]
    return SimInputs(nodes, [workload("chat", rps=12.0, ttft_ms=1500, itl_ms=45)], CATALOG)


@pytest.fixture(scope="module")
def looped() -> object:
    inputs = _inputs()
    first = plan_with(inputs, None, LOOP)
    return run_loop(inputs, first, SimSettings(duration_s=1800.0, seed=1, truth=BIASED), LOOP)


def test_the_loop_recovers_attainment_under_a_bias(looped: object) -> None:
    from gridplace.sim.loop import LoopResult

    assert isinstance(looped, LoopResult)
    first, *later = looped.periods
    assert first.replanned and any("calibration moves" in r for r in first.reasons)
    assert first.attainment < 0.9  # the model's plan, 1.9x too optimistic
    assert first.prediction_error_pct is not None and first.prediction_error_pct > 25
    assert all(p.attainment > 0.98 for p in later[1:]), [p.attainment for p in later]
    assert later[-1].prediction_error_pct is not None and later[-1].prediction_error_pct < 5
    assert later[-1].replicas > first.replicas
    assert len(looped.plans) >= 2
    (correction,) = looped.calibration.gpu_types.values()
    # The truth's 1.9 on the GPU part of a step, in the units the planner applies.
    assert correction.decode == pytest.approx(1.9, rel=0.02)
    assert correction.prefill == pytest.approx(1.9, rel=0.02)


def test_a_plan_made_knowing_the_bias_needs_no_replan() -> None:
    inputs = _inputs()
    known = known_calibration(TruthBias.fixed(1.9, 1.9), inputs)
    assert known is not None and known_calibration(TruthBias(), inputs) is None
    plan = plan_with(inputs, known, LOOP)
    settings = SimSettings(duration_s=1200.0, seed=1, truth=BIASED)
    result = run_loop(inputs, plan, settings, LOOP)
    assert all(p.attainment > 0.98 for p in result.periods)


def test_loop_settings_are_checked() -> None:
    inputs = _inputs()
    plan = plan_with(inputs, None, LOOP)
    with pytest.raises(SimSettingsError):
        run_loop(inputs, plan, SimSettings(duration_s=60.0), LoopSettings(recalibrate_every_s=0))


def test_cli_prints_per_window_records(tmp_path: Path) -> None:
    inputs = _inputs()
    nodes = write_documents(tmp_path / "nodes.yaml", list(inputs.nodes))
    workloads = write_documents(tmp_path / "workloads.yaml", list(inputs.workloads))
    plans = write_documents(tmp_path / "plan.yaml", [plan_with(inputs, None, LOOP)])
    args = ["simulate", "--plan", str(plans), "-n", str(nodes), "-w", str(workloads),
            "--duration", "240", "--recalibrate-every", "120",
            "--truth-bias", "1.3,1.3"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["windows"]) == 2
    for record in report["windows"]:
        assert {"startS", "endS", "attainment", "costPerHour", "predictionErrorPct"} <= set(record)
    assert report["windows"][0]["startS"] == 0 and report["windows"][1]["endS"] == 240
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "grounded loop" in table.stdout


def test_the_cost_trigger_alone_brings_an_over_provisioned_plan_down() -> None:
    inputs = _inputs()
    pessimistic = TruthSettings(efficiency=False, thermal=False, failures=False,
                                bias=TruthBias.fixed(0.6, 0.6))  # fmt: skip
    # Neither the capacity band nor the SLO can fire: only the dry-run replan's saving can.
    policy = ReplanPolicy(capacity_change=math.inf, slo_target=0.0, cost_saving=0.05)
    loop = replace(LOOP, policy=policy)
    first = plan_with(inputs, None, loop)
    result = run_loop(
        inputs, first, SimSettings(duration_s=1200.0, seed=1, truth=pessimistic), loop
    )
    (replanned, _) = result.periods
    assert replanned.replanned and "a replan under the current calibration" in replanned.reasons[0]
    (before, after) = (plan_cost_per_hour(inputs, p) for p in result.plans)
    assert after < 0.8 * before
    known = plan_with(inputs, known_calibration(TruthBias.fixed(0.6, 0.6), inputs), loop)
    assert after <= 1.05 * plan_cost_per_hour(inputs, known)


def test_the_learned_factor_converges_to_each_nodes_true_factor() -> None:
    """Bias x the node's own spread is what the truth applies to a node's steps; the node level
    of the loop's calibration learns it, in the units the planner applies (the GPU part)."""
    from gridplace.sim.truth import GroundTruth
    from tests.sim.fixtures import plan

    nodes = [node(f"n{i}", "rtx-4090", price=0.5) for i in range(4)]  # self-reported: sigma 0.1
    inputs = SimInputs(nodes, [workload("chat", rps=6.0, ttft_ms=3000, itl_ms=200)], CATALOG)
    truth = TruthSettings(thermal=False, failures=False, bias=TruthBias.fixed(0.8, 1.3))
    observe_only = replace(LOOP, policy=ReplanPolicy(math.inf, 0.0, 0, math.inf))
    first = plan(*({"workload": "chat", "node": n.name, "gpus": [0]} for n in nodes))
    settings = SimSettings(duration_s=1200.0, seed=3, truth=truth)
    result = run_loop(inputs, first, settings, observe_only)
    hidden = GroundTruth.build(nodes, CATALOG, 1200.0, 3, truth).nodes
    spread = [hidden[n.name].decode_factor for n in nodes]
    assert max(spread) / min(spread) > 1.1  # the nodes really differ
    key = ("rtx-4090", "llama-3.1-8b", "fp8", "vllm")
    for n in nodes:
        learned = result.calibration.nodes[(n.name, key)]
        assert learned.decode == pytest.approx(0.8 * hidden[n.name].decode_factor, rel=0.03)
        assert learned.prefill == pytest.approx(1.3 * hidden[n.name].prefill_factor, rel=0.03)
    assert len(result.plans) == 1


def test_the_truth_known_plan_books_each_gpu_types_node_spread() -> None:
    from gridplace.sim.truth import GroundTruth

    nodes = [node(f"n{i}", "rtx-4090") for i in range(3)] + [node("h", "h100-sxm")]
    inputs = SimInputs(nodes, [workload("chat")], CATALOG)
    bias = TruthBias.fixed(0.8, 1.3)
    truth = GroundTruth.build(nodes, CATALOG, 60.0, 2, TruthSettings(bias=bias))
    told, bias_only = known_calibration(bias, inputs, truth), known_calibration(bias, inputs)
    assert told is not None and bias_only is not None
    rtx, h100 = (("rtx-4090", "llama-3.1-8b", "fp8", "vllm"),
                 ("h100-sxm", "llama-3.1-8b", "fp8", "vllm"))  # fmt: skip
    spread = math.prod(truth.nodes[f"n{i}"].decode_factor for i in range(3)) ** (1 / 3)
    assert told.gpu_types[rtx].decode == pytest.approx(0.8 * spread)
    assert told.gpu_types[h100].prefill == pytest.approx(1.3 * truth.nodes["h"].prefill_factor)
    assert told.gpu_types[rtx].decode != pytest.approx(0.8, rel=0.01)  # the spread is there
    assert bias_only.gpu_types[h100].prefill == 1.3
