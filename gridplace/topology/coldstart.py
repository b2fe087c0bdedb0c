"""Cold start: how long a node takes to fetch a model's weights over the network.

Owns: the transfer model and its constants, ``WeightsCache`` (where weights can come from) and
``ColdStart`` (an answer). Must not: import networkx (the planner reads the precomputed figures
through ``LatencyLookup``).

The model, kept simple on purpose (network only; disk reads, loading into VRAM and engine start
are the executor's business and not counted)::

    seconds  = SETUP_ROUND_TRIPS * rtt + weights_bytes * 8 / (gbps * 1e9)
    gbps     = TRANSFER_EFFICIENCY * min(node uplink, cache bandwidth, window bound)
    window   = PARALLEL_STREAMS * TCP_WINDOW_BYTES * 8 / rtt        (bits/s; a TCP stream moves at
                                                                    most one window per round trip)

The best cache for a node is the one with the highest ``gbps`` (ties: the nearer one). RTT is the
topology's p50 estimate cache <-> node, measured or not. With no cache at all, weights come from a
public origin (a model hub) modelled as a cache of unknown place: the fallback RTT and
``ORIGIN_GBPS``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gridplace.specs import ModelArchitectureSpec, Precision
from gridplace.topology.estimate import RttEstimate

TCP_WINDOW_BYTES = 16 * 2**20  # per stream; Linux autotuning ceiling on a tuned host (16 MiB)
PARALLEL_STREAMS = 8  # parallel range requests, as hf_transfer / aria2 do
TRANSFER_EFFICIENCY = 0.9  # TCP/IP, TLS and HTTP framing overhead
SETUP_ROUND_TRIPS = 4  # TCP handshake, TLS 1.3 handshake, request, first byte
DEFAULT_CACHE_GBPS = 10.0  # a cache named in probes but not declared
ORIGIN_GBPS = 10.0  # a public model hub's per-client ceiling (assumed)
ORIGIN = "origin"


@dataclass(frozen=True)
class WeightsCache:
    """A place weights can be fetched from: ``cache/<name>`` in probes."""

    name: str  # without the 'cache/' prefix
    region: str | None = None  # where it is, for estimates when it was never probed
    bandwidth_gbps: float = DEFAULT_CACHE_GBPS  # what it can serve to one client, Gbit/s

    def __post_init__(self) -> None:
        if not self.bandwidth_gbps > 0:
            raise ValueError(f"cache {self.name}: bandwidth_gbps must be > 0")

    @property
    def endpoint(self) -> str:
        return f"cache/{self.name}"


@dataclass(frozen=True)
class ColdStart:
    """Time to fetch ``weights_bytes`` to a node from its best weights source."""

    seconds: float
    source: str  # the cache endpoint ('cache/<name>'), or 'origin'
    gbps: float  # effective transfer rate, Gbit/s
    rtt: RttEstimate  # source <-> node


def transfer_gbps(rtt_ms: float, node_gbps: float, cache_gbps: float) -> float:
    """Effective Gbit/s of a weights download over a path of ``rtt_ms`` (see module docstring)."""
    window_gbps = (
        math.inf if rtt_ms <= 0 else PARALLEL_STREAMS * TCP_WINDOW_BYTES * 8 / (rtt_ms / 1e3) / 1e9
    )
    return TRANSFER_EFFICIENCY * min(node_gbps, cache_gbps, window_gbps)


def setup_s(rtt_ms: float) -> float:
    return SETUP_ROUND_TRIPS * rtt_ms / 1e3


def transfer_s(weights_bytes: float, gbps: float, rtt_ms: float) -> float:
    """Seconds to move ``weights_bytes`` at ``gbps`` after connection setup."""
    return setup_s(rtt_ms) + weights_bytes * 8 / (gbps * 1e9)


def weights_bytes(model: ModelArchitectureSpec, precision: Precision) -> float:
    """Bytes of a model's weights at a precision (all parameters, experts included)."""
    return model.parameters_billion * 1e9 * precision.bytes_per_parameter
