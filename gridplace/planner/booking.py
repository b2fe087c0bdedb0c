"""The booking factor: how much capacity a workload's traffic needs above its mean rate.

Owns: the arithmetic from a workload's traffic (and SLO) to the factor its demand is booked at
(``WorkloadDemand.booking``; the model covers demand x booking). Must not: know options or
solvers.

Why peaks over windows, not the squared coefficient of variation of inter-arrival gaps (ca²):
ca² describes a renewal process and is blind to how arrivals cluster over time. The Azure
conversation trace has ca² near 1 (Poisson-like gaps) yet its rate swings 0.6x-1.5x over minutes;
the code trace has ca² over 100 mostly from requests submitted in the same millisecond, which a
batching server absorbs, while what breaks the TTFT target is tens of seconds above capacity.
The rate's peak over windows of several lengths (its arrival envelope) sees both.

The rule (a fluid G/G/c bound, the deterministic arrival-curve argument of network calculus):
over a window of length W the rate runs at up to p_W x the mean λ (p_W: the window rate that
leaves 1% of the requests above it, over λ: ``traffic_fit``). Capacity C serves C x W in it and
the excess waits; a request may wait up to the TTFT slack s (half the TTFT target: the other half
is prefill and network), so
    C >= λ p_W / (1 + s / W)   for every measured window W.
Short windows are forgiven by the slack (a one-second spike queues for under a second); long ones
need their peak served. Queueing inside a replica at its booked load (Poisson arrivals, prompt
sizes as the mean) is already in the per-replica capacity (``perfmodel.capacity``), so the factor
never goes below 1. Without measured burstiness the planner's flat default headroom applies.

Inside a replica (``usable_capacity_rps``, applied by compile where the traffic decides the
booking: measured burstiness and no explicit headroom): a replica's capacity is the rate at which
its mean concurrency R_cap = capacity x time in system reaches the batch its ITL target allows.
The sequences in flight fluctuate around their mean (Poisson-like: variance = mean), and a step
with more than that batch is slow for everyone in it. Square-root staffing (Halfin-Whitt; Whitt's
G/G/c form with Allen-Cunneen's variability z = (ca² + cs²)/2, here 1) keeps the mean at R with
R + beta sqrt(z R) = R_cap: a small replica (a few sequences) keeps a larger share spare than a
large one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gridplace.specs.workload import Burstiness

FloatArray = npt.NDArray[np.float64]
# The share of the TTFT target a request may spend waiting for capacity during a burst.
TTFT_SLACK_SHARE = 0.5
# Standard normal quantile of the concurrency a replica is sized for (95%: ITL is a mean over a
# request's steps, so a short excursion past the batch size does not fail a request).
CONCURRENCY_BETA = 1.645
VARIABILITY = 1.0  # (ca² + cs²) / 2 inside a replica: Poisson arrivals, exponential-like service


def burst_factor(burstiness: Burstiness, ttft_slo_ms: float) -> float:
    """Capacity / mean rate that rides out the measured peaks (see the module docstring)."""
    slack_s = TTFT_SLACK_SHARE * ttft_slo_ms / 1e3
    need = (w.peak_to_mean / (1 + slack_s / w.window_s) for w in burstiness.windows)
    return max(1.0, *need)


def booking_factor(
    burstiness: Burstiness | None,
    ttft_slo_ms: float,
    default_headroom: float,
    headroom: float | None,
) -> float:
    """The factor a workload's demand is booked at: ``1 + headroom`` when one is given
    explicitly, else what its burstiness implies, else ``1 + default_headroom``."""
    if headroom is not None:
        return 1.0 + headroom
    if burstiness is None:
        return 1.0 + default_headroom
    return burst_factor(burstiness, ttft_slo_ms)


def usable_capacity_rps(capacity_rps: FloatArray, time_in_system_ms: FloatArray) -> FloatArray:
    """Per-replica capacity kept once concurrency fluctuations are allowed for (see the module
    docstring): capacity x R / R_cap, R from the square-root staffing rule."""
    full = capacity_rps * time_in_system_ms / 1e3  # R_cap, sequences in flight at capacity
    spread = CONCURRENCY_BETA * np.sqrt(VARIABILITY)
    root = (np.sqrt(spread**2 + 4 * full) - spread) / 2
    share = np.divide(root**2, full, out=np.ones_like(full), where=full > 0)
    kept: FloatArray = capacity_rps * share
    return kept
