"""The served throughput of a layer layout: a max flow over its nodes and links.

This is Helix's throughput model (ASPLOS'25, ``simulator/initial_layout/ilp_layout``): every
token enters at a source, passes each layer once and leaves at a sink. A node holding layers
``[first, last)`` admits at most its capacity (tokens/s at that layer count) of flow. A link
from node ``i`` to node ``j`` carries flow when ``j`` can continue where ``i`` stopped: with
``partial`` (Helix's "partial inference", what its layouts use) when
``first_j <= last_i < last_j``, else only when ``last_i == first_j``; the source feeds nodes that
start at layer 0 and nodes that end at the last layer feed the sink. A link carries at most its
bandwidth over the bytes a token needs on it (an activation between nodes, a token id to or from
the source and sink), in both directions. The answer is the maximum source-to-sink flow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.graph.python import max_flow

FLOW_SCALE = 1000  # integer arc capacities: 0.001 token/s resolution

Endpoint = int | str  # a node index, "source" or "sink"


@dataclass(frozen=True)
class PlacedNode:
    first: int
    last: int  # exclusive
    capacity_tokens_per_s: float


def served_tokens_per_s(
    num_layers: int,
    nodes: dict[int, PlacedNode],
    links: dict[tuple[Endpoint, Endpoint], float],
    partial: bool = True,
) -> float:
    """Max flow from source to sink, in tokens/s (see the module for the rules)."""
    graph = max_flow.SimpleMaxFlow()
    index = {node: i for i, node in enumerate(sorted(nodes))}
    source, sink = 2 * len(index), 2 * len(index) + 1

    def arc(tail: int, head: int, tokens_per_s: float) -> None:
        graph.add_arc_with_capacity(tail, head, int(tokens_per_s * FLOW_SCALE))

    for node, i in index.items():
        arc(2 * i, 2 * i + 1, nodes[node].capacity_tokens_per_s)
    for (a, b), tokens_per_s in links.items():
        for tail, head in ((a, b), (b, a)):
            ends = _arc_ends(num_layers, nodes, index, tail, head, partial)
            if ends is not None:
                arc(*ends, tokens_per_s)
    if graph.solve(source, sink) != graph.OPTIMAL:
        return 0.0
    return float(graph.optimal_flow()) / FLOW_SCALE


def _arc_ends(
    num_layers: int,
    nodes: dict[int, PlacedNode],
    index: dict[int, int],
    tail: Endpoint,
    head: Endpoint,
    partial: bool,
) -> tuple[int, int] | None:
    """The flow-graph arc a link direction gives, if the layout lets flow use it."""
    source, sink = 2 * len(index), 2 * len(index) + 1
    if tail == "source" and isinstance(head, int) and head in nodes:
        return (source, 2 * index[head]) if nodes[head].first == 0 else None
    if head == "sink" and isinstance(tail, int) and tail in nodes:
        return (2 * index[tail] + 1, sink) if nodes[tail].last == num_layers else None
    if not (isinstance(tail, int) and isinstance(head, int)):
        return None
    if tail in nodes and head in nodes and _continues(nodes[tail], nodes[head], partial):
        return (2 * index[tail] + 1, 2 * index[head])
    return None


def _continues(before: PlacedNode, after: PlacedNode, partial: bool) -> bool:
    if partial:
        return after.first <= before.last < after.last
    return before.last == after.first
