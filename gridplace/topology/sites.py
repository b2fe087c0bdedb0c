"""Site grouping: which grid nodes sit close together, by community detection on RTTs.

Owns: turning the node-to-node part of the measured graph into ``Site`` groups, so a large
placement problem can be decomposed site by site. Must not: be called with anything but a graph
handed over by ``Topology`` (nothing else sees networkx).

Method: Louvain modularity communities (networkx, fixed seed, so the same probes give the same
sites) over every measured pair, each weighted by affinity ``exp(-p50 / 5 ms)``: a pair 2 ms apart
pulls ~100x harder than one 25 ms apart, and an intercontinental one not at all. Client-region
vantage points and caches take part as anchors — real probe sets are sparse between nodes (each
node probes a few peers, mostly far), but every node is probed from a few regions, and nodes near
the same vantage point are near each other — and are left out of the sites returned. On the
shipped example this yields metro-scale sites (Amsterdam+London, Frankfurt+Munich,
Ashburn+New York, Sao Paulo, Singapore+Kuala Lumpur, ...). Nodes with no measured pair at all
cannot be placed by RTT: they form one site per declared region.

Sites are ordered largest first, ties by their first node name, and named ``<region>-<k>`` after
the region most of their nodes declare (ties: alphabetical), k counting from 1 per region.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Set
from dataclasses import dataclass

import networkx as nx

UNKNOWN_REGION = "unknown"
AFFINITY_SCALE_MS = 5.0
MIN_AFFINITY = 1e-30  # keeps far pairs as (negligible) edges rather than zero-weight ones


@dataclass(frozen=True)
class Site:
    """A group of nearby nodes."""

    name: str
    region: str  # the region most of its nodes declare
    nodes: tuple[str, ...]  # sorted
    measured: bool  # False: grouped by declared region only (no node-to-node probes)


def detect_sites(
    graph: nx.Graph,
    nodes: Set[str],
    node_region: Mapping[str, str | None],
    seed: int = 0,
    resolution: float = 1.0,
) -> list[Site]:
    """Sites over ``nodes`` (grid nodes of ``graph``, the measured graph)."""
    weighted = nx.Graph()
    # Sorted input: Louvain shuffles with ``seed``, and its result also depends on input order.
    weighted.add_weighted_edges_from(
        sorted(
            (*sorted((a, b)), max(math.exp(-data["p50"] / AFFINITY_SCALE_MS), MIN_AFFINITY))
            for a, b, data in graph.edges(data=True)
        ),
        weight="affinity",
    )
    groups: list[tuple[tuple[str, ...], bool]] = []
    if weighted.number_of_edges():
        communities = nx.community.louvain_communities(
            weighted, weight="affinity", resolution=resolution, seed=seed
        )
        for community in communities:
            members = tuple(sorted(n for n in community if n in nodes))
            if members:
                groups.append((members, True))
    lonely: dict[str, list[str]] = {}
    for node in sorted(nodes):
        if node not in weighted:
            lonely.setdefault(node_region.get(node) or UNKNOWN_REGION, []).append(node)
    groups += [(tuple(members), False) for members in lonely.values()]
    groups.sort(key=lambda group: (-len(group[0]), group[0][0]))
    sites: list[Site] = []
    per_region: Counter[str] = Counter()
    for members, measured in groups:
        votes = Counter(node_region.get(n) or UNKNOWN_REGION for n in members)
        region = min(votes, key=lambda r: (-votes[r], r))
        per_region[region] += 1
        sites.append(Site(f"{region}-{per_region[region]}", region, members, measured))
    return sites
