"""The planner's shared arithmetic, solver-free: GPU slots, power budget and draw, the failure
(spread) domain, capacity after a node loss, integer rate scaling and the TTFT budget step.

The CP-SAT model, the ``validate_plan`` oracle, de-aggregation and the baselines all count with
these; the oracle stays an independent restatement of the rules by using this arithmetic, never
the model. This module imports no solver (an import-linter contract in pyproject keeps it so).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gridplace.planner.problem import GpuPool

# A whole GPU is SLOTS_PER_GPU slots; a replica sharing a GPU with others takes
# SLOTS_PER_GPU / share of them. Slot sizes are powers of two that divide each other, which makes
# class-level counting exact (counts that satisfy the per-threshold rows pack largest first).
SLOTS_PER_GPU = 4
SHARE_FACTORS = (1, 2, 4)  # replicas per GPU: exclusive, half, quarter
RATE_SCALE = 1000  # requests/s -> integer milli-requests/s
MIN_POWER_FRACTION = 0.5  # a hot node still runs half of its GPUs at full draw
# TTFT budgets (target minus network RTT) are rounded down to this step: conservative, and it
# lets pools at similar distances share one prediction.
TTFT_BUDGET_STEP_MS = 25.0


def slots_per_gpu(share: int) -> int:
    """Slots one replica takes on each GPU it uses (a whole GPU unless it shares one)."""
    return SLOTS_PER_GPU // share


def replica_slots(share: int, tensor_parallel: int) -> int:
    """Slots one replica takes in all: a share of one GPU, or ``tensor_parallel`` whole GPUs."""
    if share > 1:
        return slots_per_gpu(share)
    return SLOTS_PER_GPU * tensor_parallel


def ttft_budget_ms(remaining_ms: float) -> float:
    """What a TTFT target leaves after the network, rounded down to ``TTFT_BUDGET_STEP_MS``."""
    return math.floor(remaining_ms / TTFT_BUDGET_STEP_MS) * TTFT_BUDGET_STEP_MS


def power_budget_watts(pool: GpuPool) -> int | None:
    """A pool's sustained power budget: GPUs x TDP x max(0.5, 1 - throttle ratio), watts; None
    when it does not throttle (no budget applies)."""
    if pool.throttle_ratio <= 0:
        return None
    fraction = max(MIN_POWER_FRACTION, 1 - pool.throttle_ratio)
    return math.floor(pool.node_count * pool.gpus_per_node * pool.tdp_watts * fraction)


def power_draw_watts(power_watts: float) -> int:
    """A replica's sustained draw in whole watts (rounded up: the budget is never overrun)."""
    return math.ceil(power_watts)


def failure_domain(pool: GpuPool, across: str) -> str:
    """The spread domain a pool is in: its provider, or its region."""
    return pool.provider if across == "provider" else pool.region


def worst_node_loss(capacity_rps: float, on_node: dict[str, float]) -> tuple[float, str | None]:
    """Capacity left after losing the node that holds the most of it (req/s, rounded to 1e-3),
    and that node (ties: first by name); None when no node holds any."""
    if not on_node:
        return round(capacity_rps, 3), None
    worst = min(on_node, key=lambda node: (-on_node[node], node))
    return round(max(0.0, capacity_rps - on_node[worst]), 3), worst
