"""What a backend reads from one GPU: its inventory (``DeviceInfo``) and a telemetry sample
(``Telemetry``). Plain frozen dataclasses, the same for every vendor.

Owns: the vendor-neutral shape of hardware facts, with units in every name.
Must not: call a vendor library, or know about catalogs and Nodes (``match`` and ``inventory`` do).

A field is ``None`` when the driver does not support the query (or, for a lost device, when it was
not read before the device stopped answering); ``unsupported`` names the queries that said so,
``problems`` says what else went wrong, in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridplace.specs import Interconnect, Vendor

BYTES_PER_GIB = 1024**3


@dataclass(frozen=True)
class PCIeState:
    """A PCIe link as the driver reports it: generation 1-6 and electrical lanes."""

    generation: int | None
    lanes: int | None


@dataclass(frozen=True)
class PeerLink:
    """A GPU-to-GPU link from this device to the device at ``peer_pci_bus_id``."""

    kind: Interconnect  # nvlink or xgmi
    peer_pci_bus_id: str
    links: int = 1  # NVLink: active links to that peer (bandwidth scales with it)


@dataclass(frozen=True)
class DeviceInfo:
    """Inventory of one GPU. Static facts plus health counters; no time series."""

    index: int
    vendor: Vendor
    backend: str  # "nvml", "amdsmi" or "fake"
    name: str  # as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
    uuid: str | None = None
    pci_bus_id: str | None = None  # "00000000:17:00.0"
    pci_device_id: str | None = None  # "0x2330": lowercase hex, 4 digits
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_type: str | None = None  # "HBM3", "GDDR6"; NVML does not report it
    memory_bus_width_bits: int | None = None
    max_memory_clock_mhz: float | None = None
    reported_memory_bandwidth_gbps: float | None = None  # amdsmi vram_max_bandwidth, GB/s
    max_sm_clock_mhz: float | None = None  # NVIDIA SM clock / AMD GFX clock
    pcie_current: PCIeState = field(default_factory=lambda: PCIeState(None, None))
    pcie_max: PCIeState = field(default_factory=lambda: PCIeState(None, None))
    compute_capability: str | None = None  # NVIDIA, "9.0"
    gfx_target: str | None = None  # AMD, "gfx942"
    shader_cores: int | None = None  # NVIDIA CUDA cores
    compute_units: int | None = None  # NVIDIA SMs / AMD CUs
    power_limit_watts: float | None = None  # enforced limit (NVIDIA) / power cap (AMD)
    partitioned: bool | None = None  # MIG enabled (NVIDIA), non-SPX compute partition (AMD)
    partition_mode: str | None = None  # "MIG", "CPX", ...
    ecc_enabled: bool | None = None
    ecc_corrected_errors: int | None = None  # lifetime (aggregate) counts
    ecc_uncorrected_errors: int | None = None
    retired_pages: int | None = None  # pages retired for ECC (pre-Ampere) / AMD bad pages
    remapped_rows_correctable: int | None = None  # row remapping (Ampere and later)
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None  # a remap waits for a GPU reset
    remap_failed: bool | None = None  # a row could not be remapped: replace the board
    peers: tuple[PeerLink, ...] = ()
    healthy: bool = True
    problems: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()

    @property
    def memory_total_gib(self) -> float | None:
        if self.memory_total_bytes is None:
            return None
        return self.memory_total_bytes / BYTES_PER_GIB

    @property
    def label(self) -> str:
        """'GPU 1 (NVIDIA H100 80GB HBM3)' for messages."""
        return f"GPU {self.index} ({self.name})"


@dataclass(frozen=True)
class Telemetry:
    """One sample of one GPU's state at ``timestamp_s`` (seconds since the epoch, UTC)."""

    device_index: int
    timestamp_s: float
    uuid: str | None = None
    temperature_c: float | None = None  # GPU core (NVIDIA) / edge, else hotspot (AMD)
    hotspot_temperature_c: float | None = None
    memory_temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    max_sm_clock_mhz: float | None = None
    memory_clock_mhz: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    pcie_tx_kbps: float | None = None  # KB/s over NVML's 20 ms sample
    pcie_rx_kbps: float | None = None
    thermal_throttled: bool | None = None
    power_throttled: bool | None = None
    throttle_reasons: int | None = None  # raw vendor bitmask, for the record
    healthy: bool = True

    @property
    def throttled(self) -> bool | None:
        """Clocks capped for thermal or power reasons; None when the driver cannot say."""
        if self.thermal_throttled is None and self.power_throttled is None:
            return None
        return bool(self.thermal_throttled) or bool(self.power_throttled)

    @property
    def clock_ratio(self) -> float | None:
        """SM clock as a share of its maximum, when both are known."""
        if self.sm_clock_mhz is None or not self.max_sm_clock_mhz:
            return None
        return self.sm_clock_mhz / self.max_sm_clock_mhz
