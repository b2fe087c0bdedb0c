"""The planner's view of network latency: p99 RTT from a client region to a node, read from
topology's precomputed ``LatencyLookup`` (plain arrays; no networkx here).

The figure booked is the p99 estimate plus its margin, so a pair never probed (estimated from a
path or the region-to-region default, with a wider margin) is booked more conservatively than a
measured one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gridplace.topology.estimate import Percentile
from gridplace.topology.lookup import LatencyLookup


class NetworkLatency:
    """Implements ``ports.RttLookup`` over topology's table, memoized per pair."""

    def __init__(self, lookup: LatencyLookup) -> None:
        self._lookup = lookup
        self._cache: dict[tuple[str, str], float] = {}

    def rtt_p99_ms(self, region: str, node: str) -> float:
        key = (region, node)
        if key not in self._cache:
            estimate = self._lookup.rtt_ms(region, node, Percentile.P99)
            self._cache[key] = estimate.upper_ms
        return self._cache[key]

    def rtt_p99_many(self, region: str, nodes: Sequence[str]) -> npt.NDArray[np.float64]:
        """``rtt_p99_ms(region, n)`` for each of ``nodes``, read as one row of the table."""
        row = self._lookup.upper_row_ms(region, Percentile.P99)
        if row is None:
            return np.array([self.rtt_p99_ms(region, n) for n in nodes], dtype=np.float64)
        index = self._lookup.node_index
        found: npt.NDArray[np.float64] = row[[index[n] for n in nodes]]
        return found
