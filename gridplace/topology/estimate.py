"""What an RTT answer is: the value, how it was obtained, and how far off it may be.

Owns: ``Percentile``, ``RttBasis``, ``RttEstimate`` and the margin rules for each basis, so that
the graph (``graph.py``) and the plain lookup the planner reads (``lookup.py``) agree exactly.
Must not: import networkx or touch the graph.

Margins, widest last (each a documented assumption, not a measurement):

* measured: ``max(jitter, 0.5 ms, 2 % of p50) * (1 + 1/sqrt(n_eff))`` — the pair's own spread,
  widened when few (decay-weighted, Kish effective) samples back it.
* path (never probed, but connected through measured pairs): the hops' margins summed, plus
  25 % of the path's RTT, because a relayed route only bounds the direct one and the internet
  breaks the triangle inequality now and then.
* region default (no measured path): half the default RTT, at least 20 ms.
* fallback (a region the table does not know): a conservative 350 ms, margin 150 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class Percentile(StrEnum):
    """Which point of the RTT distribution a query asks for."""

    P50 = "p50"
    P90 = "p90"
    P99 = "p99"

    @property
    def quantile(self) -> float:
        return {"p50": 0.50, "p90": 0.90, "p99": 0.99}[self.value]


class RttBasis(StrEnum):
    """How an RTT was obtained, most trustworthy first."""

    MEASURED = "measured"  # probed directly, decay-weighted samples of this pair
    PATH = "path"  # shortest path through measured pairs
    REGION_DEFAULT = "region-default"  # the built-in region-to-region table
    FALLBACK = "fallback"  # nothing known: a conservative constant

    @property
    def code(self) -> int:
        """Small integer for the lookup's arrays (0 = measured)."""
        return list(RttBasis).index(self)


@dataclass(frozen=True)
class RttEstimate:
    """An RTT answer: ``value_ms`` at the asked percentile, give or take ``margin_ms``."""

    value_ms: float
    margin_ms: float
    basis: RttBasis
    hops: int = 1  # measured pairs on the path (1 when measured, 0 for defaults)
    loss_ratio: float | None = None  # share of probes lost (measured pairs only), decay-weighted

    @property
    def measured(self) -> bool:
        return self.basis is RttBasis.MEASURED

    @property
    def estimated(self) -> bool:
        return not self.measured

    @property
    def upper_ms(self) -> float:
        """A conservative figure: value plus margin."""
        return self.value_ms + self.margin_ms


MIN_MEASURED_MARGIN_MS = 0.5  # timer and scheduling noise of a user-space probe
MIN_MEASURED_MARGIN_FRACTION = 0.02
PATH_MARGIN_FRACTION = 0.25
REGION_DEFAULT_MARGIN_FRACTION = 0.5
MIN_REGION_DEFAULT_MARGIN_MS = 20.0
# Above the worst backbone P50 between any two regions of the built-in table (332 ms, Brazil
# South to Southeast Asia), so an unknown pair is never mistaken for a good one.
FALLBACK_RTT_MS = 350.0
FALLBACK_MARGIN_MS = 150.0
# The table's figures are datacenter to datacenter; a grid node adds its own access link. Two
# endpoints in one region get the metro figure plus each node's last mile.
SAME_REGION_RTT_MS = 2.0
LAST_MILE_MS = 5.0
# Tail over median for defaults (the public table has P50 only); assumed, internet paths have
# heavier tails than a cloud backbone.
DEFAULT_TAIL_FACTOR = {Percentile.P50: 1.0, Percentile.P90: 1.15, Percentile.P99: 1.4}


def measured_margin_ms(p50_ms: float, jitter_ms: float, effective_samples: float) -> float:
    """Margin of a directly measured pair (see the module docstring)."""
    spread = max(jitter_ms, MIN_MEASURED_MARGIN_MS, MIN_MEASURED_MARGIN_FRACTION * p50_ms)
    return spread * (1.0 + 1.0 / math.sqrt(max(effective_samples, 1e-9)))


def measured_margins_ms(
    p50_ms: npt.NDArray[np.float64],
    jitter_ms: npt.NDArray[np.float64],
    effective_samples: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """``measured_margin_ms`` over arrays of pairs."""
    spread = np.maximum(
        np.maximum(jitter_ms, MIN_MEASURED_MARGIN_MS), MIN_MEASURED_MARGIN_FRACTION * p50_ms
    )
    margins: npt.NDArray[np.float64] = spread * (
        1.0 + 1.0 / np.sqrt(np.maximum(effective_samples, 1e-9))
    )
    return margins


def path_margin_ms(value_ms: float, hop_margins_ms: float) -> float:
    """Margin of a path estimate: its hops' margins plus a share of its length."""
    return hop_margins_ms + PATH_MARGIN_FRACTION * value_ms


def region_default(
    backbone_ms: float | None, node_endpoints: int, percentile: Percentile
) -> RttEstimate:
    """The default estimate between two regions (``backbone_ms`` None: the table lacks them).

    ``node_endpoints`` (0 to 2) counts the ends that are grid nodes or caches rather than a
    client region; each adds ``LAST_MILE_MS``.
    """
    if backbone_ms is None:
        return RttEstimate(
            FALLBACK_RTT_MS, FALLBACK_MARGIN_MS, RttBasis.FALLBACK, hops=0, loss_ratio=None
        )
    value = (backbone_ms + LAST_MILE_MS * node_endpoints) * DEFAULT_TAIL_FACTOR[percentile]
    margin = max(REGION_DEFAULT_MARGIN_FRACTION * value, MIN_REGION_DEFAULT_MARGIN_MS)
    return RttEstimate(value, margin, RttBasis.REGION_DEFAULT, hops=0)
