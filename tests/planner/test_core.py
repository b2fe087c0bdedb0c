"""The solver-free arithmetic the model, the oracle, de-aggregation and the baselines share."""

from __future__ import annotations

from gridplace.planner.core import (
    SLOTS_PER_GPU,
    replica_slots,
    slots_per_gpu,
    ttft_budget_ms,
    worst_node_loss,
)


def test_a_replica_takes_its_share_of_one_gpu_or_tp_whole_gpus() -> None:
    assert [replica_slots(share, 1) for share in (1, 2, 4)] == [4, 2, 1]
    assert replica_slots(1, 4) == 4 * SLOTS_PER_GPU
    assert slots_per_gpu(1) == SLOTS_PER_GPU  # a TP replica takes each of its GPUs whole


def test_ttft_budgets_round_down_to_the_step() -> None:
    assert ttft_budget_ms(349.9) == 325.0
    assert ttft_budget_ms(350.0) == 350.0


def test_the_worst_node_loss_is_the_node_holding_most_ties_by_name() -> None:
    assert worst_node_loss(3.0, {"b": 1.0, "a": 1.0, "c": 0.5}) == (2.0, "a")
    assert worst_node_loss(1.0, {}) == (1.0, None)
    assert worst_node_loss(1.0, {"a": 2.0}) == (0.0, "a")
