"""What compile-time reasons say: figures that show the breach, the closest option as "best", and
the network figure that a TTFT rejection depends on."""

from __future__ import annotations

import dataclasses

import pytest

from gridplace.planner.explain import compile_summary
from gridplace.planner.problem import Rejection
from gridplace.planner.rules import Reason, describe, over
from tests.planner.grids import node, run, workload


@pytest.mark.parametrize(
    ("value", "limit", "shown"),
    [
        (25.4, 25.0, ("25.4", "25")),  # was "ITL 25 ms > 25 ms"
        (25.04, 25.0, ("25.04", "25")),
        (26.2, 25.0, ("26", "25")),
        (25.55, 25.5, ("25.6", "25.5")),
    ],
)
def test_a_breach_shows_as_many_decimals_as_tell_the_figures_apart(
    value: float, limit: float, shown: tuple[str, str]
) -> None:
    assert over(value, limit) == shown


def test_the_itl_reason_never_reads_as_equal_figures() -> None:
    # A whole L40S predicts 25.2 ms on the fake predictor.
    result = run([node("a", gpu="l40s")], [workload("w", itl_ms=25)])
    rejections = [r for r in result.problem.rejections if r.family == "slo-itl"]
    [reason] = [describe(r.reason) for r in rejections if r.reason.option == "bf16 tp1"]
    assert reason == "bf16 tp1: ITL 25.2 ms > 25 ms"


def test_a_vram_rejection_names_the_whole_gpu_as_best_not_a_quarter_share() -> None:
    result = run([node("a")], [workload("w")])
    problem = result.problem
    whole = Rejection(0, 0, "vram-per-gpu", Reason("bf16 tp1", "vram", 30.0, 24.0, "GiB"), 1)
    quarter = Rejection(
        0, 0, "vram-per-gpu", Reason("bf16 tp1 1/4 GPU", "vram", 20.0, 6.0, "GiB"), 1
    )
    rejected = dataclasses.replace(problem, options=(), rejections=(quarter, whole))
    [summary], _ = compile_summary(rejected, 0)
    assert "best: rtx-4090 bf16 tp1: needs 30.0 GiB per GPU, has 24.0" in summary, summary


def test_a_ttft_rejection_names_the_network_figure() -> None:
    # 200 ms from ap-southeast to eu-west clients leaves 100 ms of a 300 ms target.
    result = run([node("a", region="ap-southeast")], [workload("w", ttft_ms=300)])
    [reason] = {describe(r.reason) for r in result.problem.rejections if r.family == "slo-ttft"}
    assert "before network + 200 ms network from the nearest source" in reason, reason
    assert "300 ms target" in reason
