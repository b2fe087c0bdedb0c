"""``Topology``: the measured network as a networkx graph, behind domain queries.

Owns: the graph over grid nodes, client regions (``region/<r>``) and weights caches
(``cache/<c>``) whose edges are measured pairs, and every query over it — ``rtt_ms``,
``nearest``, ``cold_start``, ``sites`` — plus the precomputed ``LatencyLookup`` handed to the
planner. Must not: let the graph escape (no method returns a networkx object), read files, or
import the planner.

How a pair is answered, first that applies (``estimate.py`` has the margins):

1. measured — the pair was probed and answered: its decay-weighted percentile.
2. path — both ends are in the graph and connected: the shortest path by p50 through measured
   pairs; the path's p90/p99 are the sums of its hops' p90/p99 (conservative: tails of
   consecutive hops rarely coincide).
3. region default — the built-in region-to-region table between the ends' regions, plus a last
   mile per grid-node end; an unknown region pair gets the conservative fallback.

A pair that was probed but never answered is not measured: it is estimated as above and carries
its ``loss_ratio`` (1.0), so callers can tell "unknown" from "probed and unreachable".
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import networkx as nx
import numpy as np

from gridplace.specs import LatencyProbes, Node
from gridplace.topology import sites as site_detection
from gridplace.topology.coldstart import (
    DEFAULT_CACHE_GBPS,
    ORIGIN,
    ORIGIN_GBPS,
    ColdStart,
    WeightsCache,
    transfer_gbps,
    transfer_s,
)
from gridplace.topology.errors import UnknownEndpointError
from gridplace.topology.estimate import (
    FALLBACK_MARGIN_MS,
    FALLBACK_RTT_MS,
    Percentile,
    RttBasis,
    RttEstimate,
    measured_margins_ms,
    path_margin_ms,
    region_default,
)
from gridplace.topology.lookup import LatencyLookup
from gridplace.topology.regions import RegionTable, builtin_regions
from gridplace.topology.samples import ENDPOINT, PairTable, SampleLog, endpoint_kind, to_posix_s
from gridplace.topology.stats import DecayPolicy, FloatArray

PERCENTILES = tuple(Percentile)
DEFAULT_NODE_GBPS = 1.0  # a node known only from probes: the Node spec's default uplink
Site = site_detection.Site


@dataclass(frozen=True)
class _FromSource:
    """Estimates from one endpoint to a list of targets, columnar (rows follow PERCENTILES)."""

    value_ms: FloatArray  # [3, targets]
    margin_ms: FloatArray  # [3, targets]
    basis_code: np.ndarray[Any, np.dtype[np.int8]]
    hops: np.ndarray[Any, np.dtype[np.int16]]
    loss_ratio: FloatArray

    def estimate(self, row: int, index: int) -> RttEstimate:
        """The answer for target ``index`` at ``PERCENTILES[row]``."""
        loss = float(self.loss_ratio[index])
        return RttEstimate(
            value_ms=float(self.value_ms[row, index]),
            margin_ms=float(self.margin_ms[row, index]),
            basis=tuple(RttBasis)[int(self.basis_code[index])],
            hops=int(self.hops[index]),
            loss_ratio=None if np.isnan(loss) else loss,
        )


class Topology:
    """The measured network; build it with ``Topology.build``."""

    def __init__(
        self,
        graph: nx.Graph,
        pairs: PairTable,
        caches: dict[str, WeightsCache],
        regions: RegionTable,
        unreachable: dict[str, dict[str, float]],
    ) -> None:
        self._graph = graph
        self._pairs = pairs
        self._caches = caches
        self._regions = regions
        self._unreachable = unreachable  # endpoint -> {other endpoint: loss ratio}

    # ----------------------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        nodes: Iterable[Node] = (),
        probes: SampleLog | LatencyProbes | Iterable[LatencyProbes] = (),
        *,
        caches: Iterable[WeightsCache] = (),
        policy: DecayPolicy | None = None,
        now: datetime | None = None,
        regions: RegionTable | None = None,
    ) -> Topology:
        """Ingest probes (documents or a filled ``SampleLog``), summarise, build the graph.

        ``now`` anchors sample ages (default: the newest sample's time); ``policy`` sets the
        decay half-life and the expiry age.
        """
        if isinstance(probes, SampleLog):
            log = probes
        else:
            log = SampleLog()
            log.add_probes(probes)
        table = log.summarize(policy, None if now is None else to_posix_s(now))
        return cls.from_pairs(table, nodes, caches=caches, regions=regions)

    @classmethod
    def from_pairs(
        cls,
        pairs: PairTable,
        nodes: Iterable[Node] = (),
        *,
        caches: Iterable[WeightsCache] = (),
        regions: RegionTable | None = None,
    ) -> Topology:
        """Build from an already summarised ``PairTable``."""
        graph = nx.Graph()
        for node in sorted(nodes, key=lambda n: n.name):
            graph.add_node(
                node.name, kind="node", region=node.spec.region, gbps=node.spec.network_gbps
            )
        declared = {cache.endpoint: cache for cache in caches}
        for endpoint, cache in sorted(declared.items()):
            graph.add_node(endpoint, kind="cache", region=cache.region, gbps=cache.bandwidth_gbps)
        for endpoint in pairs.endpoints:
            if endpoint not in graph:
                graph.add_node(endpoint, **_probe_only_attributes(endpoint))
        for endpoint, attributes in graph.nodes(data=True):
            if attributes["kind"] == "cache" and endpoint not in declared:
                declared[endpoint] = WeightsCache(endpoint.removeprefix("cache/"))
        names = np.array(pairs.endpoints, dtype=object)
        reachable = np.flatnonzero(pairs.reachable)
        margins = _measured_margins(pairs, reachable)
        rows = zip(
            names[pairs.lo[reachable]].tolist(),
            names[pairs.hi[reachable]].tolist(),
            pairs.p50_ms[reachable].tolist(),
            pairs.p90_ms[reachable].tolist(),
            pairs.p99_ms[reachable].tolist(),
            margins.tolist(),
            reachable.tolist(),
            strict=True,
        )
        graph.add_edges_from(
            (a, b, {"p50": p50, "p90": p90, "p99": p99, "margin": margin, "row": row})
            for a, b, p50, p90, p99, margin, row in rows
        )
        unreachable: dict[str, dict[str, float]] = {}
        for row in np.flatnonzero(~pairs.reachable).tolist():
            a, b = pairs.endpoints[pairs.lo[row]], pairs.endpoints[pairs.hi[row]]
            ratio = float(pairs.loss_ratio[row])
            unreachable.setdefault(a, {})[b] = ratio
            unreachable.setdefault(b, {})[a] = ratio
        return cls(graph, pairs, declared, regions or builtin_regions(), unreachable)

    # ------------------------------------------------------------------------- what is known

    @property
    def nodes(self) -> tuple[str, ...]:
        """Grid nodes (declared or seen in probes), sorted."""
        return tuple(sorted(e for e, kind in self._graph.nodes(data="kind") if kind == "node"))

    @property
    def caches(self) -> tuple[WeightsCache, ...]:
        return tuple(self._caches[name] for name in sorted(self._caches))

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions with anything known: the built-in table's, the nodes', the probed ones."""
        names = set(self._regions.regions)
        for endpoint, attributes in self._graph.nodes(data=True):
            if attributes["region"] is not None:
                names.add(attributes["region"])
            if attributes["kind"] == "region":
                names.add(endpoint.removeprefix("region/"))
        return tuple(sorted(names))

    @property
    def pairs(self) -> PairTable:
        """The per-pair summary the graph was built from."""
        return self._pairs

    @property
    def measured_pair_count(self) -> int:
        return int(self._graph.number_of_edges())

    def region_of(self, endpoint: str) -> str | None:
        """The region an endpoint is in (a node's declared region), None if unknown."""
        if endpoint in self._graph:
            region: str | None = self._graph.nodes[endpoint]["region"]
            return region
        if endpoint_kind(endpoint) == "region":
            return endpoint.removeprefix("region/")
        raise self._unknown(endpoint)

    # -------------------------------------------------------------------------------- queries

    def rtt_ms(self, a: str, b: str, percentile: Percentile | str = Percentile.P50) -> RttEstimate:
        """RTT between two endpoints at ``percentile``, with how it was obtained and a margin.

        Endpoints are node names, ``region/<r>`` (any region name, probed or not) and
        ``cache/<c>``. ``a == b`` is 0 ms.
        """
        percentile = Percentile(percentile)
        self._check(a)
        self._check(b)
        if a == b:
            return RttEstimate(0.0, 0.0, RttBasis.MEASURED, hops=0)
        graph = self._graph
        loss = self._unreachable.get(a, {}).get(b)
        edge = graph.get_edge_data(a, b) if a in graph and b in graph else None
        if edge is not None:
            return RttEstimate(
                edge[percentile.value],
                edge["margin"],
                RttBasis.MEASURED,
                hops=1,
                loss_ratio=float(self._pairs.loss_ratio[edge["row"]]),
            )
        if a in graph and b in graph:
            try:
                path = nx.bidirectional_dijkstra(graph, a, b, weight="p50")[1]
            except nx.NetworkXNoPath:
                path = None
            if path is not None:
                hops = [graph[u][v] for u, v in itertools.pairwise(path)]
                value = sum(hop[percentile.value] for hop in hops)
                margin = path_margin_ms(value, sum(hop["margin"] for hop in hops))
                return RttEstimate(value, margin, RttBasis.PATH, len(hops), loss)
        estimate = region_default(self._backbone(a, b), self._node_ends(a, b), percentile)
        return replace(estimate, loss_ratio=loss)

    def nearest(
        self,
        origin: str,
        candidates: Sequence[str] | None = None,
        k: int | None = None,
        percentile: Percentile | str = Percentile.P50,
    ) -> list[tuple[str, RttEstimate]]:
        """Candidates (default: every node) sorted by RTT from ``origin``; ties by name."""
        percentile = Percentile(percentile)
        self._check(origin)
        targets = [c for c in (self.nodes if candidates is None else candidates) if c != origin]
        for target in targets:
            self._check(target)
        found = self._from_source(origin, targets)
        row = PERCENTILES.index(percentile)
        order = sorted(range(len(targets)), key=lambda i: (found.value_ms[row, i], targets[i]))
        return [(targets[i], found.estimate(row, i)) for i in order[:k]]

    def cold_start(self, node: str, weights_bytes: float) -> ColdStart:
        """Time for ``node`` to fetch ``weights_bytes`` from its best weights source."""
        if endpoint_kind(node) != "node":
            raise self._unknown(node)
        self._check(node)
        node_gbps = float(self._graph.nodes[node]["gbps"])
        best: ColdStart | None = None
        for cache in self.caches:
            rtt = self.rtt_ms(cache.endpoint, node)
            gbps = transfer_gbps(rtt.value_ms, node_gbps, cache.bandwidth_gbps)
            # Highest rate wins; at equal rates the nearer (lower RTT) source, then the name.
            if best is None or (-gbps, rtt.value_ms) < (-best.gbps, best.rtt.value_ms):
                seconds = transfer_s(weights_bytes, gbps, rtt.value_ms)
                best = ColdStart(seconds, cache.endpoint, gbps, rtt)
        if best is None:
            rtt = RttEstimate(FALLBACK_RTT_MS, FALLBACK_MARGIN_MS, RttBasis.FALLBACK, hops=0)
            gbps = transfer_gbps(rtt.value_ms, node_gbps, ORIGIN_GBPS)
            best = ColdStart(transfer_s(weights_bytes, gbps, rtt.value_ms), ORIGIN, gbps, rtt)
        return best

    def sites(self, seed: int = 0, resolution: float = 1.0) -> list[Site]:
        """Group nodes into sites by community detection on the measured RTT graph."""
        node_names = set(self.nodes)
        return site_detection.detect_sites(
            self._graph,
            node_names,
            {n: self._graph.nodes[n]["region"] for n in node_names},
            seed=seed,
            resolution=resolution,
        )

    def latency_lookup(self, regions: Iterable[str] | None = None) -> LatencyLookup:
        """Precompute RTT from each client region (default: ``self.regions``) to every node, and
        each node's best weights source, into the plain ``LatencyLookup`` the planner reads."""
        region_names = tuple(sorted(set(self.regions if regions is None else regions)))
        node_names = self.nodes
        shape = (len(region_names), len(node_names))
        values = np.empty((len(PERCENTILES), *shape))
        margins = np.empty((len(PERCENTILES), *shape))
        basis = np.empty(shape, dtype=np.int8)
        hops = np.empty(shape, dtype=np.int16)
        loss = np.empty(shape)
        for r, region in enumerate(region_names):
            found = self._from_source(f"region/{region}", node_names)
            values[:, r], margins[:, r] = found.value_ms, found.margin_ms
            basis[r], hops[r], loss[r] = found.basis_code, found.hops, found.loss_ratio
        gbps, rtt, source = self._weights_sources(node_names)
        return LatencyLookup(
            regions=region_names,
            nodes=node_names,
            rtt_ms_by_percentile={p: values[i] for i, p in enumerate(PERCENTILES)},
            margin_ms_by_percentile={p: margins[i] for i, p in enumerate(PERCENTILES)},
            basis_code=basis,
            hops=hops,
            loss_ratio=loss,
            node_region={n: self._graph.nodes[n]["region"] for n in node_names},
            region_table=self._regions,
            weights_gbps=gbps,
            weights_rtt_ms=rtt,
            weights_source=source,
        )

    # ------------------------------------------------------------------------------ internals

    def _check(self, endpoint: str) -> None:
        if endpoint in self._graph:
            return
        if endpoint_kind(endpoint) == "region" and ENDPOINT.match(endpoint):
            return  # any client region may be asked about; defaults answer unprobed ones
        raise self._unknown(endpoint)

    def _unknown(self, endpoint: str) -> UnknownEndpointError:
        near = difflib.get_close_matches(endpoint, list(self._graph.nodes), n=3)
        hint = f"did you mean {', '.join(near)}?" if near else "not a node, region/<r> or cache"
        return UnknownEndpointError(endpoint, hint)

    def _backbone(self, a: str, b: str) -> float | None:
        region_a, region_b = self.region_of(a), self.region_of(b)
        if region_a is None or region_b is None:
            return None
        return self._regions.backbone_ms(region_a, region_b)

    @staticmethod
    def _node_ends(a: str, b: str) -> int:
        return sum(endpoint_kind(e) != "region" for e in (a, b))

    def _from_source(self, source: str, targets: Sequence[str]) -> _FromSource:
        """Estimates from ``source`` to each target: defaults, then paths, then measured."""
        count = len(targets)
        value = np.empty((len(PERCENTILES), count))
        margin = np.empty((len(PERCENTILES), count))
        basis = np.empty(count, dtype=np.int8)
        hops = np.zeros(count, dtype=np.int16)
        loss = np.full(count, np.nan)
        # 1. defaults, computed once per distinct target region and broadcast.
        source_region = self.region_of(source)
        ends = [self._node_ends(source, t) for t in targets]
        by_key: dict[tuple[str | None, int], list[int]] = {}
        for i, target in enumerate(targets):
            by_key.setdefault((self.region_of(target), ends[i]), []).append(i)
        for (target_region, node_ends), indices in by_key.items():
            backbone = (
                None
                if source_region is None or target_region is None
                else self._regions.backbone_ms(source_region, target_region)
            )
            for p, percentile in enumerate(PERCENTILES):
                estimate = region_default(backbone, node_ends, percentile)
                value[p, indices] = estimate.value_ms
                margin[p, indices] = estimate.margin_ms
            basis[indices] = (
                RttBasis.FALLBACK.code if backbone is None else RttBasis.REGION_DEFAULT.code
            )
        if source not in self._graph:
            return _FromSource(value, margin, basis, hops, loss)
        # 2. shortest paths by p50; p90/p99/margins/hops summed along each path.
        graph = self._graph
        predecessors, distance = nx.dijkstra_predecessor_and_distance(graph, source, weight="p50")
        sums: dict[str, tuple[float, float, float, int]] = {source: (0.0, 0.0, 0.0, 0)}
        for endpoint in distance:  # Dijkstra's finishing order: a predecessor always comes first
            if endpoint not in sums:
                parent = predecessors[endpoint][0]
                edge = graph[parent][endpoint]
                p90, p99, hop_margins, hop_count = sums[parent]
                sums[endpoint] = (
                    p90 + edge["p90"],
                    p99 + edge["p99"],
                    hop_margins + edge["margin"],
                    hop_count + 1,
                )
        neighbours = graph[source]
        unreachable = self._unreachable.get(source, {})
        for i, target in enumerate(targets):
            edge = neighbours.get(target)
            if edge is not None:
                value[:, i] = (edge["p50"], edge["p90"], edge["p99"])
                margin[:, i] = edge["margin"]
                basis[i], hops[i] = RttBasis.MEASURED.code, 1
                loss[i] = self._pairs.loss_ratio[edge["row"]]
                continue
            if target in distance and target != source:
                p90, p99, hop_margins, hop_count = sums[target]
                path_values = (distance[target], p90, p99)
                value[:, i] = path_values
                margin[:, i] = [path_margin_ms(v, hop_margins) for v in path_values]
                basis[i], hops[i] = RttBasis.PATH.code, hop_count
            if target in unreachable:
                loss[i] = unreachable[target]
        return _FromSource(value, margin, basis, hops, loss)

    def _weights_sources(
        self, node_names: Sequence[str]
    ) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
        """Per node: (effective Gbit/s, RTT ms, source) of its best weights source."""
        node_gbps = np.array([float(self._graph.nodes[n]["gbps"]) for n in node_names])
        best_gbps = np.zeros(len(node_names))
        best_rtt = np.full(len(node_names), np.inf)
        best_source = np.full(len(node_names), ORIGIN, dtype=object)
        candidates = [(c.endpoint, c.bandwidth_gbps) for c in self.caches]
        for endpoint, bandwidth in candidates:
            rtt = self._from_source(endpoint, node_names).value_ms[0]
            gbps = np.array(
                [transfer_gbps(r, g, bandwidth) for r, g in zip(rtt, node_gbps, strict=True)]
            )
            # Same tie-break as ``cold_start``: higher rate, then lower RTT (caches in name order).
            better = (gbps > best_gbps) | ((gbps == best_gbps) & (rtt < best_rtt))
            best_gbps = np.where(better, gbps, best_gbps)
            best_rtt = np.where(better, rtt, best_rtt)
            best_source[better] = endpoint
        if not candidates:
            best_rtt[:] = FALLBACK_RTT_MS
            best_gbps = np.array(
                [transfer_gbps(FALLBACK_RTT_MS, g, ORIGIN_GBPS) for g in node_gbps]
            )
        return best_gbps, best_rtt, tuple(best_source.tolist())


def _probe_only_attributes(endpoint: str) -> dict[str, Any]:
    kind = endpoint_kind(endpoint)
    if kind == "region":
        return {"kind": kind, "region": endpoint.removeprefix("region/"), "gbps": None}
    if kind == "cache":
        return {"kind": kind, "region": None, "gbps": DEFAULT_CACHE_GBPS}
    return {"kind": kind, "region": None, "gbps": DEFAULT_NODE_GBPS}


def _measured_margins(pairs: PairTable, rows: np.ndarray[Any, np.dtype[np.int64]]) -> FloatArray:
    return measured_margins_ms(
        pairs.p50_ms[rows], pairs.jitter_ms[rows], pairs.effective_samples[rows]
    )
