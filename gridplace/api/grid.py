"""The grid as the planner should see it now: registered nodes with silence applied.

A node is *silent* when nothing was heard from it (telemetry, or registration when it never
reported) for longer than the heartbeat grace period. Silence is counted from the later of its
last sign of life and the server's own start, so a server that was down does not find every node
"silent" when it comes back. A silent node is handed to the planner as unhealthy — unless more
than ``mass_silence_fraction`` of the grid (and at least ``MASS_SILENCE_MIN_NODES`` nodes) is
silent at once: that is far likelier to be the server's own network than a grid-wide failure, and
tearing everything down would be the worst answer (the same reasoning as Kubernetes' node
controller, which stops evicting when a zone is mostly unreachable).

Must not: write anything; this is a pure function of records, the clock and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gridplace.api.store import NodeBasis, NodePulse, NodeRecord
from gridplace.specs import Node, NodeStatus

MASS_SILENCE_MIN_NODES = 3


@dataclass(frozen=True)
class NodeView:
    """One node as judged now."""

    record: NodeRecord
    silent_s: float  # seconds since its last sign of life (or since the server started)
    silent: bool  # past the grace period
    node: Node  # what the planner gets: unhealthy when silent (and silence counts)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def healthy(self) -> bool:
        return self.node.healthy

    @property
    def basis(self) -> NodeBasis:
        return NodeBasis(healthy=self.node.healthy, throttle_ratio=self.node.throttle_ratio)


@dataclass(frozen=True)
class GridView:
    nodes: list[NodeView]
    mass_silence: bool  # many nodes silent at once: silence is ignored (see the module docstring)

    def planner_nodes(self) -> list[Node]:
        return [view.node for view in self.nodes]

    def by_name(self) -> dict[str, NodeView]:
        return {view.name: view for view in self.nodes}

    @property
    def healthy_count(self) -> int:
        return sum(view.healthy for view in self.nodes)

    @property
    def silent_count(self) -> int:
        return sum(view.silent for view in self.nodes)


class Heard(Protocol):
    """What silence is judged from: a node's record, or its pulse (``Store.node_pulses``)."""

    @property
    def last_heartbeat(self) -> datetime | None: ...

    @property
    def created_at(self) -> datetime: ...


def seconds_silent(record: Heard, now: datetime, started_at: datetime) -> float:
    last = record.last_heartbeat or record.created_at
    return max(0.0, (now - max(last, started_at)).total_seconds())


def judge(
    records: list[NodeRecord],
    now: datetime,
    started_at: datetime,
    grace_s: float,
    mass_silence_fraction: float,
    population: tuple[int, int] | None = None,
) -> GridView:
    """Each node's silence and the status the planner should get (see the module docstring).

    ``records`` is the whole grid, unless ``population`` gives the grid's (silent, total) node
    counts, for judging a few nodes without reading every one.
    """
    silences = [seconds_silent(record, now, started_at) for record in records]
    silent_count, total = population or (sum(s > grace_s for s in silences), len(records))
    mass_silence = is_mass_silence(silent_count, total, mass_silence_fraction)
    views = []
    for record, silent_s in zip(records, silences, strict=True):
        silent = silent_s > grace_s
        node = record.node
        if counts_silent(silent, mass_silence):
            node = _marked_silent(node, silent_s, grace_s)
        views.append(NodeView(record=record, silent_s=silent_s, silent=silent, node=node))
    return GridView(nodes=views, mass_silence=mass_silence)


@dataclass(frozen=True)
class Pulses:
    """Every node's pulse judged as ``judge`` judges the nodes, without their documents."""

    pulses: list[NodePulse]
    now: datetime  # judged at
    silent: set[str]  # names past the grace period
    mass_silence: bool

    @property
    def healthy_count(self) -> int:
        """Nodes ``judge`` would hand the planner as healthy."""
        return sum(
            pulse.reported.healthy
            and not counts_silent(pulse.name in self.silent, self.mass_silence)
            for pulse in self.pulses
        )


def judge_pulses(
    pulses: list[NodePulse],
    now: datetime,
    started_at: datetime,
    grace_s: float,
    mass_silence_fraction: float,
) -> Pulses:
    """The silent nodes and whether they are a mass silence, as ``judge`` finds them."""
    silent = {p.name for p in pulses if seconds_silent(p, now, started_at) > grace_s}
    mass_silence = is_mass_silence(len(silent), len(pulses), mass_silence_fraction)
    return Pulses(pulses, now, silent, mass_silence)


def counts_silent(silent: bool, mass_silence: bool) -> bool:
    """Whether a node's silence makes it unhealthy for the planner (module docstring)."""
    return silent and not mass_silence


def is_mass_silence(silent_count: int, total: int, mass_silence_fraction: float) -> bool:
    """Whether so many of ``total`` nodes are silent that silence is ignored (module docstring)."""
    return silent_count >= MASS_SILENCE_MIN_NODES and silent_count > mass_silence_fraction * total


def _marked_silent(node: Node, silent_s: float, grace_s: float) -> Node:
    status = node.status or NodeStatus()
    status = status.model_copy(
        update={
            "healthy": False,
            "message": f"silent for {silent_s:.0f} s (grace period {grace_s:g} s)",
        }
    )
    return node.model_copy(update={"status": status})
