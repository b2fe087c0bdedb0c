"""``LatencyLookup``: the planner's view of the network, precomputed, plain arrays and dicts.

Owns: answering "RTT from client region r to node n, at a percentile, and how sure" and "cold
start of w bytes on node n" in O(1) after ``Topology.latency_lookup()`` filled it. Must not:
import networkx or anything of the graph — the planner imports this module and must stay free of
networkx (a test checks ``sys.modules``).

A region the lookup was not built for still gets an answer: the region-to-region default between
it and the node's region (or the conservative fallback), marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gridplace.topology.coldstart import setup_s
from gridplace.topology.errors import UnknownEndpointError
from gridplace.topology.estimate import Percentile, RttBasis, RttEstimate, region_default
from gridplace.topology.regions import RegionTable

FloatArray = npt.NDArray[np.float64]
_BASES = tuple(RttBasis)


@dataclass(frozen=True)
class LatencyLookup:
    """Region x node RTT tables (ms) and per-node weights transfer figures.

    Arrays are indexed ``[regions.index(r), nodes.index(n)]`` (``region_index`` and
    ``node_index`` give the positions) and are read-only.
    """

    regions: tuple[str, ...]
    nodes: tuple[str, ...]
    rtt_ms_by_percentile: Mapping[Percentile, FloatArray]
    margin_ms_by_percentile: Mapping[Percentile, FloatArray]
    basis_code: npt.NDArray[np.int8]  # RttBasis.code
    hops: npt.NDArray[np.int16]
    loss_ratio: FloatArray  # NaN unless measured (or probed and unreachable)
    node_region: Mapping[str, str | None]
    region_table: RegionTable
    weights_gbps: FloatArray  # per node: effective Gbit/s from its best weights source
    weights_rtt_ms: FloatArray  # per node: RTT (p50) to that source
    weights_source: tuple[str, ...]  # per node: 'cache/<name>' or 'origin'
    region_index: Mapping[str, int] = field(init=False)
    node_index: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "region_index", {r: i for i, r in enumerate(self.regions)})
        object.__setattr__(self, "node_index", {n: i for i, n in enumerate(self.nodes)})
        arrays: list[np.ndarray[Any, Any]] = [
            *self.rtt_ms_by_percentile.values(),
            *self.margin_ms_by_percentile.values(),
            self.basis_code,
            self.hops,
            self.loss_ratio,
            self.weights_gbps,
            self.weights_rtt_ms,
        ]
        for array in arrays:
            array.flags.writeable = False

    def _node(self, node: str) -> int:
        index = self.node_index.get(node)
        if index is None:
            raise UnknownEndpointError(node, f"the lookup knows {len(self.nodes)} nodes")
        return index

    def rtt_ms(
        self, region: str, node: str, percentile: Percentile = Percentile.P50
    ) -> RttEstimate:
        """RTT between clients in ``region`` (bare name, e.g. 'eu-west') and ``node``."""
        n = self._node(node)
        r = self.region_index.get(region)
        if r is None:
            home = self.node_region.get(node)
            backbone = None if home is None else self.region_table.backbone_ms(region, home)
            return region_default(backbone, 1, percentile)
        loss = float(self.loss_ratio[r, n])
        return RttEstimate(
            value_ms=float(self.rtt_ms_by_percentile[percentile][r, n]),
            margin_ms=float(self.margin_ms_by_percentile[percentile][r, n]),
            basis=_BASES[int(self.basis_code[r, n])],
            hops=int(self.hops[r, n]),
            loss_ratio=None if math.isnan(loss) else loss,
        )

    def value_ms(self, region: str, node: str, percentile: Percentile = Percentile.P50) -> float:
        return self.rtt_ms(region, node, percentile).value_ms

    def row_ms(self, region: str, percentile: Percentile = Percentile.P50) -> FloatArray:
        """RTT from ``region`` to every node (in ``nodes`` order), for vectorised callers."""
        r = self.region_index.get(region)
        if r is not None:
            row: FloatArray = self.rtt_ms_by_percentile[percentile][r]
            return row
        return np.array([self.value_ms(region, node, percentile) for node in self.nodes])

    def upper_row_ms(self, region: str, percentile: Percentile) -> FloatArray | None:
        """``rtt_ms(region, n, percentile).upper_ms`` for every node (in ``nodes`` order), or
        None for a region the table does not hold (estimated per node instead)."""
        r = self.region_index.get(region)
        if r is None:
            return None
        row: FloatArray = (
            self.rtt_ms_by_percentile[percentile][r] + self.margin_ms_by_percentile[percentile][r]
        )
        return row

    def cold_start_s(self, node: str, weights_bytes: float) -> float:
        """Seconds for ``node`` to fetch ``weights_bytes`` from its best weights source."""
        n = self._node(node)
        gbps = float(self.weights_gbps[n])
        return setup_s(float(self.weights_rtt_ms[n])) + weights_bytes * 8 / (gbps * 1e9)
