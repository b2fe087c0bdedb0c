"""The independent truth: measured step times where data exist, a systematic bias per GPU family
x engine x phase elsewhere (drawn, or set by hand), none of it visible to the planner; stalls."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gridplace.api.cli import app
from gridplace.sim import (
    GroundTruth,
    SimInputs,
    StepTimes,
    TruthBias,
    TruthSettings,
    build_world,
)
from gridplace.sim.bias import ConstantBias, MeasuredBias
from gridplace.sim.errors import SimSettingsError
from gridplace.sim.measured import MEASURED_SERIES, miss_sigma, ratio_field
from gridplace.sim.metrics import SimResult, WorkloadInfo
from gridplace.specs import builtin_catalog
from gridplace.specs.common import Architecture, Engine
from tests.sim.fixtures import node, plan, workload, write_documents

CATALOG = builtin_catalog()
SPLITWISE_A100 = ("a100-sxm-80gb", "llama-2-70b", "fp16", "vllm", 4)
NO_SPREAD = TruthSettings(efficiency=False, thermal=False, failures=False)


def _world_steps(truth: TruthSettings) -> StepTimes:
    inputs = SimInputs([node("a")], [workload("chat")], CATALOG)
    placed = plan({"workload": "chat", "node": "a", "gpus": [0]})
    world = build_world(placed, inputs, GroundTruth.build(inputs.nodes, CATALOG, 3600.0, 5, truth))
    return world.replicas[0].speed.normal


def test_the_truth_differs_from_the_model_where_measurements_exist() -> None:
    decode = ratio_field(SPLITWISE_A100, "decode")
    prefill = ratio_field(SPLITWISE_A100, "prefill")
    assert decode is not None and prefill is not None
    # At a measured point the ratio is the measurement's; between points it is interpolated.
    series = next(
        s for s in MEASURED_SERIES if (s.gpu, s.tp, s.phase) == ("a100-sxm-80gb", 4, "decode")
    )
    batch, tokens, _ = series.figures[0]
    ratios = [decode.at(batch, tokens), decode.at(batch * 3, tokens * 2), prefill.at(1, 700)]
    assert all(r > 0 and abs(math.log(r)) > 0.005 for r in ratios)
    book = GroundTruth.build([node("a", "a100-sxm-80gb", 8)], CATALOG, 60.0, 1).bias
    chosen = book.for_replica(SPLITWISE_A100, Architecture.AMPERE)
    assert isinstance(chosen, MeasuredBias)
    assert chosen.decode(batch, tokens) == pytest.approx(decode.at(batch, tokens))


def test_the_spread_of_drawn_biases_is_computed_from_the_measured_misses() -> None:
    sigma = miss_sigma()
    assert 0.02 < sigma["decode"] < 1.0 and 0.02 < sigma["prefill"] < 1.0
    # Over many families and seeds the drawn log factors have about that spread.
    draws = []
    for seed in range(400):
        book = GroundTruth.build([], CATALOG, 60.0, seed).bias
        draws.append(math.log(book.drawn(Architecture.ADA, Engine.VLLM).decode_factor))
    assert float(np.std(draws)) == pytest.approx(sigma["decode"], rel=0.15)
    assert abs(float(np.median(draws))) < 0.05


def test_bias_is_one_per_family_and_engine_and_rules_win_by_specificity() -> None:
    bias = TruthBias(
        rules=(
            TruthBias.fixed(1.1, 1.2).rules[0],
            *TruthBias.from_rules(
                [{"family": "ada", "decode": 1.5, "prefill": 2.0},
                 {"family": "ada", "engine": "vllm", "decode": 1.7, "prefill": 1.8}],
                "rules.yaml",
            ).rules,
        )
    )  # fmt: skip
    assert bias.rule_for(Architecture.ADA, Engine.VLLM).decode == 1.7  # type: ignore[union-attr]
    assert bias.rule_for(Architecture.ADA, Engine.SGLANG).decode == 1.5  # type: ignore[union-attr]
    assert bias.rule_for(Architecture.HOPPER, Engine.VLLM).decode == 1.1  # type: ignore[union-attr]
    book = GroundTruth.build([], CATALOG, 60.0, 3).bias
    first = book.drawn(Architecture.ADA, Engine.VLLM)
    assert book.drawn(Architecture.ADA, Engine.VLLM) is first
    assert book.drawn(Architecture.HOPPER, Engine.VLLM) != first


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"decode": 1.2}, "rules.yaml"),  # not a list
        ([{"decode": 1.2}], "rules.yaml[0].prefill"),
        ([{"decode": 0.0, "prefill": 1.0}], "rules.yaml[0].decode"),
        ([{"decode": 1.0, "prefill": 1.0, "family": "pascal"}], "rules.yaml[0].family"),
        ([{"decode": 1.0, "prefill": 1.0, "colour": "red"}], "rules.yaml[0].colour"),
    ],
)
def test_bad_bias_rules_name_their_field(data: object, field: str) -> None:
    with pytest.raises(SimSettingsError) as caught:
        TruthBias.from_rules(data, "rules.yaml")
    assert caught.value.field == field


def test_the_bias_knob_moves_step_times_and_nothing_the_planner_reads() -> None:
    plain = _world_steps(NO_SPREAD)
    biased = _world_steps(replace(NO_SPREAD, bias=TruthBias.fixed(1.25, 1.5)))
    unbiased = _world_steps(TruthSettings.ideal())
    overhead = unbiased.overhead_ms
    assert biased.decode_ms(8, 600) - overhead == pytest.approx(
        1.25 * (unbiased.decode_ms(8, 600) - overhead)
    )
    assert biased.prefill_ms(500) - overhead == pytest.approx(
        1.5 * (unbiased.prefill_ms(500) - overhead)
    )
    assert plain.decode_ms(8, 600) != unbiased.decode_ms(8, 600)  # the drawn bias
    # What the planner reads (the specs) leaves a biased build as it came; the planner imports
    # no sim module at all (tests/sim/test_imports.py).
    inputs = SimInputs([node("a")], [workload("chat")], CATALOG)
    before = [d.model_dump() for d in (*inputs.nodes, *inputs.workloads)]
    biased_truth = GroundTruth.build(
        inputs.nodes, CATALOG, 60.0, 5, settings=TruthSettings(bias=TruthBias.fixed(2.0, 2.0))
    )
    build_world(plan({"workload": "chat", "node": "a", "gpus": [0]}), inputs, biased_truth)
    assert [d.model_dump() for d in (*inputs.nodes, *inputs.workloads)] == before


def test_the_stall_share_counts_gaps_over_twice_the_itl_target() -> None:
    done = np.array([1, 1, 1, 2], dtype=np.int64)
    result = SimResult(
        workloads=(WorkloadInfo("w", 1000.0, 50.0, 1.0, 1),), replica_labels=("r",),
        duration_s=10.0, workload=np.zeros(4, dtype=np.int64), region=np.zeros(4, dtype=np.int64),
        sent_s=np.zeros(4), prompt_tokens=np.ones(4, dtype=np.int64),
        output_tokens=np.full(4, 10, dtype=np.int64), replica=np.zeros(4, dtype=np.int64),
        status=done, ttft_ms=np.full(4, 10.0), itl_mean_ms=np.full(4, 20.0),
        itl_max_ms=np.array([40.0, 101.0, 99.0, math.inf]), e2e_ms=np.full(4, 100.0),
        steps=1, wall_s=0.0,
    )  # fmt: skip
    assert result.total().stall_share == pytest.approx(1 / 3)
    assert result.summary()[0].stall_share == pytest.approx(1 / 3)


def test_cli_truth_bias_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    nodes = write_documents(tmp_path / "nodes.yaml", [node("a", "rtx-4090", 2)])
    workloads = write_documents(tmp_path / "workloads.yaml", [workload("chat", rps=2.0)])
    plans = write_documents(
        tmp_path / "plan.yaml", [plan({"workload": "chat", "node": "a", "gpus": [0]})]
    )
    base = ["simulate", "--plan", str(plans), "-n", str(nodes), "-w", str(workloads),
            "--duration", "60", "--format", "json"]  # fmt: skip
    result = runner.invoke(app, [*base, "--truth-bias", "1.25,1.5"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["truth"]["bias"]["rules"] == [{"decode": 1.25, "prefill": 1.5}]
    assert "stallShare" in report["total"]
    rules = tmp_path / "bias.yaml"
    rules.write_text("- {family: ada, engine: vllm, decode: 2.0, prefill: 1.0}\n")
    assert runner.invoke(app, [*base, "--truth-bias-file", str(rules)]).exit_code == 0
    rules.write_text("- {family: ada, decode: -1, prefill: 1.0}\n")
    bad = runner.invoke(app, [*base, "--truth-bias-file", str(rules)])
    assert bad.exit_code == 1 and "decode" in bad.output and "Traceback" not in bad.output
    assert runner.invoke(app, [*base, "--truth-bias", "1.25"]).exit_code == 2
    assert runner.invoke(app, [*base, "--truth-bias", "x,y"]).exit_code == 2


def test_constant_bias_defaults_to_none() -> None:
    assert ConstantBias().decode(4, 100) == 1.0 == ConstantBias().prefill(10)
