"""The hardware side of a prediction: thermal derate, the link between a node's GPUs with the
all-reduce it carries, and cold-start time (weights from network and disk into VRAM).

Owns: these formulas and their documented constants. Must not: know engines' kernels or the
efficiency table.

Thermal derate. ``throttle_ratio`` is the share of time a GPU's clocks were thermally or power
capped (Node ``status.thermal``). While capped, SM clocks run at ~70% of boost (a 450 W RTX 4090
held at its power limit drops from ~2.5 GHz towards ~1.8 GHz; power-capped datacenter parts behave
alike) and memory clocks far less (~85%: GDDR/HBM clocks are reduced only by the hardware
slowdown, not by power capping). The sustained rate is the time-weighted mix:
``compute x (1 - 0.30 r)`` and ``bandwidth x (1 - 0.15 r)``.

Links. NVLink/xGMI bandwidth in the catalog (``peerLink``) is the aggregate of both directions, so
a ring step moves data at half of it; NCCL reaches ~80% of that (nccl-tests bus bandwidth).
RCCL over xGMI reaches less: on 8 MI300X (ROCm 6.2, RCCL 2.20.5) its all-reduce of 1-64 MB takes
26-426 us (the RCCL column of mk1-project/quickreduce's README), a bus bandwidth of ~290 GB/s,
65% of the 448 GB/s one-direction peer bandwidth: each 64 GB/s xGMI link carries ~48 GB/s after
CRC and protocol overhead (AMD ROCm blog "Understanding RCCL Bandwidth and xGMI Performance on
AMD Instinct MI300X", 2025), and RCCL's ring moves less than that.
PCIe moves one direction at ``pcie.bandwidth_gbps`` and GPU-to-GPU transfers reach ~60% of it
(through the host bridge; consumer cards have peer-to-peer disabled). A ring all-reduce of S bytes
over t GPUs sends 2 (t - 1) / t x S per GPU; its small-message latency grows with the hop count:
NVLink 5 + 1.5 (t - 1) us, xGMI 6 + 2 (t - 1) us, PCIe 12 + 8 (t - 1) us (NCCL's LL protocol
latencies; aiconfigurator's system files book 10 us per NVLink peer step).

Cold start. Weights come from the network unless cached (``network_gbit_per_s`` x 0.8 goodput),
are read from disk (NVMe ~2 GB/s by default) and copied host-to-device over each GPU's PCIe link at
~80% of its bandwidth (the GPUs load their shards in parallel; disk read and copy are pipelined, so
the slower of the two counts), then the engine starts (``EngineTraits.init_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gridplace.specs.common import Interconnect
from gridplace.specs.gpu import GPUModelSpec

THROTTLED_COMPUTE_SHARE = 0.70  # SM clock while capped / boost clock
THROTTLED_BANDWIDTH_SHARE = 0.85  # memory clock while capped / nominal
PEER_LINK_EFFICIENCY = 0.80
# RCCL all-reduce bus bandwidth / one-direction xGMI bandwidth (8 x MI300X: 290 / 448 GB/s).
XGMI_LINK_EFFICIENCY = 0.65
PCIE_PEER_EFFICIENCY = 0.60
PCIE_HOST_COPY_EFFICIENCY = 0.80
NETWORK_GOODPUT = 0.80
DEFAULT_DISK_GBYTE_PER_S = 2.0

_LINK_LATENCY_US = {  # (base, per additional GPU)
    Interconnect.NVLINK: (5.0, 1.5),
    Interconnect.XGMI: (6.0, 2.0),
    Interconnect.PCIE: (12.0, 8.0),
}


def derate_factors(throttle_ratio: float) -> tuple[float, float]:
    """(compute factor, bandwidth factor) for a GPU capped ``throttle_ratio`` of the time."""
    compute = 1.0 - (1.0 - THROTTLED_COMPUTE_SHARE) * throttle_ratio
    bandwidth = 1.0 - (1.0 - THROTTLED_BANDWIDTH_SHARE) * throttle_ratio
    return compute, bandwidth


@dataclass(frozen=True, slots=True)
class Link:
    """The path tensor-parallel traffic takes between two GPUs of one node."""

    kind: Interconnect
    bandwidth_gbyte_per_s: float  # one direction, effective
    base_latency_us: float
    hop_latency_us: float

    def allreduce_ms(self, message_bytes: float, tensor_parallel: int) -> float:
        """Time of one ring all-reduce of ``message_bytes`` over ``tensor_parallel`` GPUs."""
        if tensor_parallel <= 1:
            return 0.0
        latency_us = self.base_latency_us + self.hop_latency_us * (tensor_parallel - 1)
        moved = 2.0 * (tensor_parallel - 1) / tensor_parallel * message_bytes
        return latency_us * 1e-3 + moved / (self.bandwidth_gbyte_per_s * 1e9) * 1e3


def gpu_link(gpu: GPUModelSpec, interconnect: Interconnect | None) -> Link:
    """The link a node with ``interconnect`` gives ``gpu``.

    ``None`` means "what this GPU has": its peer link (NVLink/xGMI) if the catalog lists one, else
    PCIe. A node that says nvlink/xgmi for a GPU with no such peer link is taken at its word only
    as far as the hardware allows: PCIe.
    """
    peer = gpu.peer_link
    wanted = interconnect if interconnect is not None else (peer.kind if peer else None)
    if peer is not None and wanted is not None and wanted is not Interconnect.PCIE:
        base, hop = _LINK_LATENCY_US[peer.kind]
        share = XGMI_LINK_EFFICIENCY if peer.kind is Interconnect.XGMI else PEER_LINK_EFFICIENCY
        return Link(peer.kind, peer.bandwidth_gbps / 2.0 * share, base, hop)
    base, hop = _LINK_LATENCY_US[Interconnect.PCIE]
    return Link(Interconnect.PCIE, gpu.pcie.bandwidth_gbps * PCIE_PEER_EFFICIENCY, base, hop)


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Seconds from "start this replica" to serving, by phase."""

    download_s: float
    load_s: float  # disk read and host-to-device copy, pipelined
    engine_init_s: float

    @property
    def total_s(self) -> float:
        return self.download_s + self.load_s + self.engine_init_s


def cold_start(
    weights_bytes: float,
    gpu: GPUModelSpec,
    tensor_parallel: int,
    engine_init_s: float,
    *,
    network_gbit_per_s: float,
    cached: bool,
    disk_gbyte_per_s: float = DEFAULT_DISK_GBYTE_PER_S,
) -> ColdStart:
    """Cold-start time of a replica whose weights take ``weights_bytes`` in all (see module doc)."""
    if weights_bytes < 0 or tensor_parallel < 1 or network_gbit_per_s <= 0:
        raise ValueError("weights_bytes >= 0, tensor_parallel >= 1, network_gbit_per_s > 0")
    download = 0.0 if cached else weights_bytes * 8 / (network_gbit_per_s * 1e9 * NETWORK_GOODPUT)
    disk = weights_bytes / (disk_gbyte_per_s * 1e9)
    per_gpu_copy = (weights_bytes / tensor_parallel) / (
        gpu.pcie.bandwidth_gbps * 1e9 * PCIE_HOST_COPY_EFFICIENCY
    )
    return ColdStart(download, max(disk, per_gpu_copy), engine_init_s)
