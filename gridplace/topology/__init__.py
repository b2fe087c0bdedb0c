"""gridplace topology: the network. Probe records -> a measured graph -> latency queries.

Owns: ingesting ``LatencyProbes`` (decay-weighted per-pair p50/p90/p99, jitter, loss, expiry;
``samples``/``stats``), the networkx graph over grid nodes, client regions and weights caches
behind domain queries (``graph.Topology``: ``rtt_ms``, ``nearest``, ``cold_start``, ``sites``),
estimates for pairs never probed (``estimate``, with the region-to-region defaults of
``regions``), the plain ``LatencyLookup`` the planner reads, and the active TCP prober
(``prober``, ``peers``).

Must not: import the planner or anything downstream; let a networkx object out of this package;
send traffic anywhere but where a peers file points.

Importing this package, ``lookup``, ``estimate`` or ``samples`` does not import networkx (the
planner depends on that): ``Topology`` and ``Site`` load ``graph.py`` on first use.

Errors (``errors.py``)::

    TopologyError                  base (a ValueError)
        ProbeDataError             malformed samples given to the ingest API
        UnknownEndpointError       a query named an unknown node or cache (also a KeyError)
        RegionTableError           the built-in region table is unreadable
        PeersFileError             a prober peers file is invalid; .issues lists every problem

An unreachable peer or pair is a result (``lost``/``error`` in the probe, ``loss_ratio`` on an
estimate), never an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gridplace.topology.coldstart import ColdStart, WeightsCache, weights_bytes
from gridplace.topology.errors import (
    PeersFileError,
    ProbeDataError,
    RegionTableError,
    TopologyError,
    UnknownEndpointError,
)
from gridplace.topology.estimate import Percentile, RttBasis, RttEstimate
from gridplace.topology.lookup import LatencyLookup
from gridplace.topology.regions import RegionTable, builtin_regions
from gridplace.topology.samples import PairTable, SampleLog
from gridplace.topology.stats import DecayPolicy

if TYPE_CHECKING:
    from gridplace.topology.graph import Topology
    from gridplace.topology.sites import Site

_LAZY = {"Topology": "gridplace.topology.graph", "Site": "gridplace.topology.sites"}


def __getattr__(name: str) -> Any:
    """Load the networkx-backed names on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gridplace.topology' has no attribute {name!r}")


__all__ = [
    "ColdStart",
    "DecayPolicy",
    "LatencyLookup",
    "PairTable",
    "PeersFileError",
    "Percentile",
    "ProbeDataError",
    "RegionTable",
    "RegionTableError",
    "RttBasis",
    "RttEstimate",
    "SampleLog",
    "Site",
    "Topology",
    "TopologyError",
    "UnknownEndpointError",
    "WeightsCache",
    "builtin_regions",
    "weights_bytes",
]
