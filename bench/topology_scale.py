#!/usr/bin/env python3
"""Topology at grid scale: ingest 1,000,000 probe samples for 10,000 nodes, build the graph and
the planner's region-to-node table, answer every source-region-to-node query.

Run from the repository root::

    .venv/bin/python bench/topology_scale.py                  # 10,000 nodes, 1,000,000 samples
    .venv/bin/python bench/topology_scale.py --nodes 2000 --samples 200000 --runs 1

Samples are generated in memory with numpy (seeded) and go through the ingest API
(``SampleLog.add_arrays``), not through YAML. The synthetic grid: every node sits in one of the
built-in table's regions; its true RTT to a region's clients is the table's backbone P50 plus a
site offset and a last mile (datacenter 0.3-1.5 ms, community host 5-25 ms); node-to-node the
same with both last miles. Each node is probed from its home region and two other regions and
probes eight peers (70 % in its own region); each sample adds lognormal jitter and, on 2 % of
them, a spike; sample ages are uniform over 10 days, so with the default 7-day expiry ~30 % of
samples expire.

Figures printed (medians over ``--runs``): ingest, build (summarise + graph), the precomputed
lookup, all region x node queries (through ``LatencyLookup.rtt_ms`` and vectorised rows), site
grouping, and peak RSS. Also how good the estimates are on never-probed region-node pairs:
median absolute error against the synthetic truth, and how often the truth lies within the
estimate's margin.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gridplace.specs import Node
from gridplace.topology import Percentile, RttBasis, SampleLog, builtin_regions
from gridplace.topology.derive_regions import REGIONS
from gridplace.topology.graph import Topology

SEED = 20261127
CORE_REGIONS = list(REGIONS)[:11]  # the project's core set; the rest are never probed
NOW_S = 1_795_000_000.0  # a fixed "now" (late 2026), so runs are identical
DAY_S = 86_400.0
PAIR_QUERIES = 100  # each a bidirectional Dijkstra over the whole graph


@dataclass
class Grid:
    nodes: list[Node]
    endpoints: list[str]  # node names, then region/<r>
    source: np.ndarray
    target: np.ndarray
    rtt_ms: np.ndarray
    measured_at_s: np.ndarray
    true_region_node_ms: np.ndarray  # [region, node]
    regions: list[str]


def make_grid(node_count: int, sample_count: int, rng: np.random.Generator) -> Grid:
    table = builtin_regions()
    regions = sorted(table.regions)
    r_count = len(regions)
    backbone = np.array(
        [[table.backbone_ms(a, b) or 0.0 for b in regions] for a in regions], dtype=np.float64
    )
    home = rng.integers(0, r_count, node_count)
    datacenter = rng.random(node_count) < 0.3
    last_mile = np.where(
        datacenter, rng.uniform(0.3, 1.5, node_count), rng.uniform(5, 25, node_count)
    )
    offset = rng.uniform(0, 10, node_count)  # site distance from the region's hub
    names = [f"n{i:05d}-{regions[home[i]]}" for i in range(node_count)]
    nodes = [
        Node.model_validate(
            {
                "metadata": {"name": names[i]},
                "spec": {
                    "region": regions[home[i]],
                    "provider": f"p{i % 500}",
                    "pricePerHour": 1.0,
                    "gpus": [{"model": "rtx-4090", "count": 1}],
                    "networkGbps": 10.0 if datacenter[i] else 1.0,
                },
            }
        )
        for i in range(node_count)
    ]
    true_rn = backbone[:, home] + offset[None, :] + last_mile[None, :]  # [region, node]

    # Pairs: (node, region) x 3 and (node, peer) x 8. Only the core regions have probe
    # vantage points; clients of the others are answered by the region-to-region defaults.
    probed = np.array([regions.index(r) for r in CORE_REGIONS])
    vantage = np.stack(
        [
            np.where(np.isin(home, probed), home, probed[rng.integers(0, probed.size, node_count)]),
            probed[rng.integers(0, probed.size, node_count)],
            probed[rng.integers(0, probed.size, node_count)],
        ],
        axis=1,
    )
    rn_node = np.repeat(np.arange(node_count), 3)
    rn_region = vantage.reshape(-1)
    peers = rng.integers(0, node_count, (node_count, 8))
    same_region = rng.random((node_count, 8)) < 0.7
    by_region = [np.flatnonzero(home == r) for r in range(r_count)]
    for i in range(node_count):
        pool = by_region[home[i]]
        picks = same_region[i]
        peers[i, picks] = pool[rng.integers(0, pool.size, int(picks.sum()))]
    nn_a = np.repeat(np.arange(node_count), 8)
    nn_b = peers.reshape(-1)
    keep = nn_a != nn_b
    nn_a, nn_b = nn_a[keep], nn_b[keep]
    true_nn = (
        backbone[home[nn_a], home[nn_b]]
        + np.where(home[nn_a] == home[nn_b], 2.0, 0.0)
        + np.abs(offset[nn_a] - offset[nn_b])
        + last_mile[nn_a]
        + last_mile[nn_b]
    )
    pair_a = np.concatenate([rn_node, nn_a])
    pair_b = np.concatenate([node_count + rn_region, nn_b])
    pair_true = np.concatenate([true_rn[rn_region, rn_node], true_nn])

    pick = rng.integers(0, pair_a.size, sample_count)
    jitter = rng.lognormal(0.0, 0.05, sample_count)
    spike = np.where(rng.random(sample_count) < 0.02, rng.uniform(10, 80, sample_count), 0.0)
    rtt = np.minimum(pair_true[pick] * jitter + spike, 59_000.0)
    endpoints = names + [f"region/{r}" for r in regions]
    return Grid(
        nodes=nodes,
        endpoints=endpoints,
        source=pair_a[pick],
        target=pair_b[pick],
        rtt_ms=rtt,
        measured_at_s=NOW_S - rng.uniform(0, 10 * DAY_S, sample_count),
        true_region_node_ms=true_rn,
        regions=regions,
    )


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def run_once(grid: Grid) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    log = SampleLog()
    figures["ingest_s"], _ = timed(
        lambda: log.add_arrays(
            grid.endpoints, grid.source, grid.target, grid.rtt_ms, grid.measured_at_s
        )
    )
    from datetime import UTC, datetime

    now = datetime.fromtimestamp(NOW_S, UTC)
    figures["build_s"], topology = timed(lambda: Topology.build(grid.nodes, log, now=now))
    figures["lookup_s"], lookup = timed(lambda: topology.latency_lookup(grid.regions))

    def all_queries() -> int:
        answered = 0
        for region in grid.regions:
            for node in lookup.nodes:
                lookup.rtt_ms(region, node, Percentile.P90)
                answered += 1
        return answered

    figures["query_s"], figures["queries"] = timed(all_queries)
    figures["rows_s"], _ = timed(lambda: [lookup.row_ms(r) for r in grid.regions])
    pair_rng = np.random.default_rng(SEED + 1)
    pick = pair_rng.integers(0, len(lookup.nodes), (PAIR_QUERIES, 2))
    figures["pair_s"], _ = timed(
        lambda: [topology.rtt_ms(lookup.nodes[a], lookup.nodes[b]) for a, b in pick.tolist()]
    )
    figures["sites_s"], sites = timed(lambda: topology.sites(seed=0))
    figures["sites"] = len(sites)
    figures["pairs"] = len(topology.pairs)
    figures["edges"] = topology.measured_pair_count
    figures["samples_kept"] = int(topology.pairs.samples.sum())

    # Estimate quality on region-node pairs that were never probed (truth by node order).
    order = [int(name[1:6]) for name in lookup.nodes]
    truth = grid.true_region_node_ms[:, order]
    value = lookup.rtt_ms_by_percentile[Percentile.P50]
    margin = lookup.margin_ms_by_percentile[Percentile.P50]
    for basis in (RttBasis.MEASURED, RttBasis.PATH, RttBasis.REGION_DEFAULT):
        mask = lookup.basis_code == basis.code
        error = np.abs(value[mask] - truth[mask])
        figures[f"{basis.value}_n"] = int(mask.sum())
        figures[f"{basis.value}_mae_ms"] = float(np.median(error)) if mask.any() else float("nan")
        figures[f"{basis.value}_cover"] = float(np.mean(error <= margin[mask])) if mask.any() else 0
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="topology scale benchmark")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    rss_start_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rng = np.random.default_rng(SEED)
    generate_s, grid = timed(lambda: make_grid(args.nodes, args.samples, rng))
    runs = [run_once(grid) for _ in range(args.runs)]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def median(key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    first = runs[0]
    command = " ".join(["bench/topology_scale.py", *(argv if argv is not None else sys.argv[1:])])
    print(
        f"topology scale: {args.nodes:,} nodes, {args.samples:,} samples, "
        f"{len(grid.regions)} regions; medians over {args.runs} run(s)"
    )
    print(f"  generate (numpy, not timed below) {generate_s:8.2f} s")
    print(f"  ingest   (SampleLog.add_arrays)   {median('ingest_s'):8.2f} s")
    print(
        f"  build    (summarise + graph)      {median('build_s'):8.2f} s   "
        f"{first['samples_kept']:,} samples kept, {first['pairs']:,} pairs, "
        f"{first['edges']:,} measured edges"
    )
    print(f"  lookup   (region x node table)    {median('lookup_s'):8.2f} s")
    print(
        f"  queries  (all region x node)      {median('query_s'):8.2f} s   "
        f"{first['queries']:,} queries, "
        f"{median('query_s') / first['queries'] * 1e6:.2f} us each"
    )
    print(f"  rows     (vectorised, all regions){median('rows_s') * 1e3:8.2f} ms")
    print(
        f"  pairs    (Topology.rtt_ms)        {median('pair_s'):8.2f} s   "
        f"{PAIR_QUERIES:,} random node pairs, {median('pair_s') / PAIR_QUERIES * 1e3:.2f} ms each"
    )
    print(
        f"  sites    (louvain, seed 0)        {median('sites_s'):8.2f} s   {first['sites']} sites"
    )
    print(
        f"  build + lookup                    {median('build_s') + median('lookup_s'):8.2f} s"
        "   (target < 30 s)"
    )
    print(f"  peak RSS {peak_mib:,.0f} MiB (process start {rss_start_mib:,.0f} MiB)")
    print("  estimate quality, region->node p50 vs synthetic truth:")
    for basis in ("measured", "path", "region-default"):
        if not first[basis + "_n"]:
            continue
        print(
            f"    {basis:15s} {first[basis + '_n']:7,} pairs  median |error| "
            f"{first[basis + '_mae_ms']:6.1f} ms  truth within margin {first[basis + '_cover']:.0%}"
        )
    print(f"  reproduce: .venv/bin/python {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
