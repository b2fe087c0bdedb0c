"""Matching a device to the GPU catalog, and a usable ``GPUModelSpec`` for one the catalog lacks.

Owns: catalog lookup (PCI device id first, then the reported name), the measured-vs-catalog
comparison that decides a node's per-group overrides, and deriving figures from measurements.
Must not: call a vendor library, or decide node-level things (``inventory`` does).

Peak memory bandwidth from measurements (GB/s)::

    bus width (bits) / 8  x  max memory clock (MHz)  x  data-rate multiplier  / 1000

The multiplier depends on how the vendor's library reports the memory clock:
  NVML, every memory type: 2. NVML's memory clock is half the per-pin data rate for HBM2/2e/3/3e
      and for GDDR6/6X/7 alike: H100 SXM 5120 b x 2619 MHz x 2 = 3352 GB/s (catalog 3350); RTX 4090
      384 b x 10501 MHz x 2 = 1008 GB/s; RTX 5090 512 b x 14001 MHz x 2 = 1792 GB/s.
  amdsmi: its own ``vram_max_bandwidth`` is used when it reports one. Otherwise, by memory type:
      HBM, HBM2, HBM2E: 2 (MI250X GCD 4096 b x 1600 MHz x 2 = 1638 GB/s); HBM3, HBM3E: 4 (the
      reported UCLK is a quarter of the pin rate: MI300X 8192 b x 1300 MHz x 4 = 5325 GB/s);
      GDDR6: 16 (MCLK is 1/16 of the pin rate: RX 7900 XTX 384 b x 1250 MHz x 16 = 960 GB/s).
      Other types: not derived.

Dense FP16 tensor throughput of an uncatalogued GPU is estimated as FLOPs per clock per SM (or
CU) x SMs x ``ESTIMATE_CLOCK_FRACTION`` x max SM clock, with the per-clock rates of the known parts
of its architecture (see ``_FLOPS_PER_CLOCK_PER_SM``; GeForce/Radeon cards get the half-rate
FP32-accumulate figure). The driver's max SM clock is the top of the boost table, 0 % (A100,
MI300X) to 23 % (RTX 4090) above the clock the vendors' tensor figures are quoted at (an H100 SXM
reported 1980 MHz; its 989 TFLOPS are at 1830), so 0.8 of it keeps the estimate at 80-100 % of the
published figure: never more than the part delivers. A micro-benchmark result, when given,
replaces both estimates with what was measured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridplace.hal.device import DeviceInfo, PCIeState
from gridplace.hal.errors import InventoryError
from gridplace.specs import (
    Architecture,
    Catalog,
    GPUModelSpec,
    Interconnect,
    PCIeLink,
    TensorThroughput,
    Vendor,
)
from gridplace.specs.gpu import FormFactor
from gridplace.specs.gpu import PeerLink as CatalogPeerLink

# A measured figure this far (relative) from the catalog's becomes an override on the node.
OVERRIDE_TOLERANCE = 0.05
ESTIMATE_CLOCK_FRACTION = 0.8  # of the max SM clock, for tensor estimates (module docstring)

NVML_DATA_RATE_MULTIPLIER = 2.0
AMD_DATA_RATE_MULTIPLIERS = {
    "HBM": 2.0,
    "HBM2": 2.0,
    "HBM2E": 2.0,
    "HBM3": 4.0,
    "HBM3E": 4.0,
    "GDDR6": 16.0,
}

# Dense FP16 tensor FLOPs per clock per SM (NVIDIA) or CU (AMD), FP32 accumulate:
# (datacenter/workstation rate, GeForce/Radeon rate). From the catalogued parts: V100
# 125 TF / (80 SM x 1.53 GHz) = 1024; A100 312 / (108 x 1.41) = 2048; RTX A6000 154.8 / (84 x 1.8)
# = 1024 and RTX 3090 71 / (82 x 1.695) = 512; L40S 362 / (142 x 2.52) = 1024 and RTX 4090
# 165.2 / (128 x 2.52) = 512; H100 SXM 989 / (132 x 1.83) = 4096; MI250X GCD 191.5 / (110 x 1.7) =
# 1024; MI300X 1307 / (304 x 2.1) = 2048; RX 7900 XTX 122.8 / (96 x 2.5) = 512.
_FLOPS_PER_CLOCK_PER_SM: dict[Architecture, tuple[float, float]] = {
    Architecture.VOLTA: (1024, 1024),
    Architecture.TURING: (1024, 512),
    Architecture.AMPERE: (1024, 512),  # GA10x; GA100 (compute capability 8.0) is 2048
    Architecture.ADA: (1024, 512),
    Architecture.HOPPER: (4096, 4096),
    Architecture.BLACKWELL: (1024, 512),  # GB20x; GB100 (compute capability 10.x) is 8192
    Architecture.CDNA2: (1024, 1024),
    Architecture.CDNA3: (2048, 2048),
    Architecture.RDNA3: (512, 512),
}
_CUDA_CORES_PER_SM = {
    Architecture.VOLTA: 64,
    Architecture.TURING: 64,
    Architecture.AMPERE: 128,  # GA100: 64
    Architecture.ADA: 128,
    Architecture.HOPPER: 128,
    Architecture.BLACKWELL: 128,
}
_BF16_ARCHITECTURES = {
    Architecture.AMPERE,
    Architecture.ADA,
    Architecture.HOPPER,
    Architecture.BLACKWELL,
    Architecture.CDNA2,
    Architecture.CDNA3,
    Architecture.RDNA3,
}
_FP8_ARCHITECTURES = {
    Architecture.ADA,
    Architecture.HOPPER,
    Architecture.BLACKWELL,
    Architecture.CDNA3,
}

# NVLink 3/4: 25 GB/s each way per link (A100: 12 links = 600 GB/s, H100: 18 = 900 GB/s, both
# directions); xGMI on MI300X: 128 GB/s per peer (7 peers = 896 GB/s).
NVLINK_GBPS_PER_LINK = 50.0
XGMI_GBPS_PER_PEER = 128.0


@dataclass(frozen=True)
class Benchmark:
    """Measured figures of one device (from ``microbench``), used for derived models."""

    memory_bandwidth_gbps: float | None = None
    matmul_tflops: float | None = None


@dataclass(frozen=True)
class CatalogMatch:
    """One device against the catalog: the entry it is, and how the node should differ from it."""

    device: DeviceInfo
    gpu_id: str
    spec: GPUModelSpec
    matched_by: str  # "pci-id", "name" or "derived"
    derived_bandwidth_gbps: float | None
    memory_gib_override: float | None = None
    bandwidth_override_gbps: float | None = None
    pcie_override: PCIeLink | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def derived(self) -> bool:
        return self.matched_by == "derived"


def architecture_of(device: DeviceInfo) -> Architecture:
    """The architecture family from the compute capability or the gfx target."""
    if device.compute_capability:
        major, _, minor = device.compute_capability.partition(".")
        table = {
            "7": Architecture.VOLTA,
            "8": Architecture.AMPERE,
            "9": Architecture.HOPPER,
            "10": Architecture.BLACKWELL,
            "12": Architecture.BLACKWELL,
        }
        if major == "7" and minor == "5":
            return Architecture.TURING
        if major == "8" and minor == "9":
            return Architecture.ADA
        return table.get(major, Architecture.UNKNOWN)
    target = (device.gfx_target or "").lower()
    if target == "gfx90a":
        return Architecture.CDNA2
    if target.startswith("gfx94") or target.startswith("gfx95"):
        return Architecture.CDNA3
    if target.startswith("gfx110"):
        return Architecture.RDNA3
    return Architecture.UNKNOWN


def data_rate_multiplier(device: DeviceInfo) -> float | None:
    """The memory-clock multiplier for ``device`` (module docstring), or None if not known."""
    if device.vendor is Vendor.NVIDIA:
        return NVML_DATA_RATE_MULTIPLIER
    if device.memory_type is None:
        return None
    return AMD_DATA_RATE_MULTIPLIERS.get(device.memory_type.upper())


def derived_bandwidth_gbps(device: DeviceInfo) -> float | None:
    """Peak memory bandwidth from what the driver reported, GB/s; None if it cannot be had."""
    if device.reported_memory_bandwidth_gbps:
        return device.reported_memory_bandwidth_gbps
    multiplier = data_rate_multiplier(device)
    if not device.memory_bus_width_bits or not device.max_memory_clock_mhz or multiplier is None:
        return None
    return device.memory_bus_width_bits / 8 * device.max_memory_clock_mhz * multiplier / 1000


def effective_pcie(device: DeviceInfo) -> PCIeState:
    """The host link the device can run at in this machine.

    NVML's "max" link is the best both the GPU and the slot support; the current generation is
    not used because idle GPUs drop to gen 1 to save power.
    """
    generation = device.pcie_max.generation or device.pcie_current.generation
    lanes = device.pcie_max.lanes or device.pcie_current.lanes
    return PCIeState(generation, lanes)


def estimated_fp16_tflops(device: DeviceInfo) -> float | None:
    """Dense FP16 tensor TFLOPS estimated from SMs/CUs and clock (module docstring)."""
    rate = _per_sm_rate(device)
    if rate is None or not device.max_sm_clock_mhz:
        return None
    flops_per_clock, cores_per_sm = rate
    units = device.compute_units
    if units is None and device.shader_cores and cores_per_sm:
        units = device.shader_cores // cores_per_sm
    if not units:
        return None
    clock_hz = ESTIMATE_CLOCK_FRACTION * device.max_sm_clock_mhz * 1e6
    return flops_per_clock * units * clock_hz / 1e12


def _per_sm_rate(device: DeviceInfo) -> tuple[float, int | None] | None:
    """(FP16 tensor FLOPs per clock per SM/CU, CUDA cores per SM) for the device's chip."""
    capability = device.compute_capability or ""
    if capability == "8.0":  # GA100 (A100, A30): the datacenter die, 64 cores per SM
        return 2048.0, 64
    if capability.startswith("10."):  # GB100 (B100, B200)
        return 8192.0, 128
    architecture = architecture_of(device)
    rates = _FLOPS_PER_CLOCK_PER_SM.get(architecture)
    if rates is None:
        return None
    consumer = bool(re.search(r"geforce|radeon|titan", device.name, re.IGNORECASE))
    return (rates[1] if consumer else rates[0]), _CUDA_CORES_PER_SM.get(architecture)


def derived_gpu_id(device: DeviceInfo) -> str:
    """A catalog-style id for an uncatalogued device: 'derived-nvidia-geforce-rtx-9090'."""
    slug = re.sub(r"[^a-z0-9.]+", "-", device.name.lower()).strip("-.") or "gpu"
    return ("derived-" + slug)[:63].rstrip("-.")


def match_device(
    device: DeviceInfo, catalog: Catalog, benchmark: Benchmark | None = None
) -> CatalogMatch:
    """The catalog entry for ``device`` (by PCI id, then name) or a derived one.

    Raises ``InventoryError`` when the device is not catalogued and its figures cannot be derived.
    """
    derived_bw = derived_bandwidth_gbps(device)
    by_pci = catalog.gpu_id_by_pci(device.pci_device_id) if device.pci_device_id else None
    by_name = catalog.gpu_id(device.name)
    notes: list[str] = []
    if by_pci and by_name and by_pci != by_name:
        notes.append(
            f"PCI id {device.pci_device_id} is {by_pci} but the name {device.name!r} is "
            f"{by_name}; the PCI id wins"
        )
    if device.partitioned:
        notes.append(
            f"{device.partition_mode or 'partition'} mode is on: listed as a whole GPU, but an "
            "inference replica needs it off (nvidia-smi -mig 0 / amd-smi set --compute-partition "
            "SPX)"
        )
    gpu_id = by_pci or by_name
    if gpu_id is None:
        spec = derive_gpu_model(device, benchmark)
        notes.append("not in the catalog: figures derived from measurements")
        return CatalogMatch(
            device, derived_gpu_id(device), spec, "derived", derived_bw, notes=tuple(notes)
        )
    spec = catalog.gpus[gpu_id]
    return _compare(device, gpu_id, spec, "pci-id" if by_pci else "name", derived_bw, notes)


def _compare(
    device: DeviceInfo,
    gpu_id: str,
    spec: GPUModelSpec,
    matched_by: str,
    derived_bw: float | None,
    notes: list[str],
) -> CatalogMatch:
    """Measured vs catalog; what differs by more than the tolerance becomes an override."""
    memory_override = None
    measured_gib = device.memory_total_gib
    if measured_gib is not None and _off(measured_gib, spec.memory_gib):
        memory_override = round(measured_gib, 1)
        notes.append(f"VRAM {measured_gib:.1f} GiB vs catalog {spec.memory_gib:g} GiB")
    bandwidth_override = None
    if derived_bw is not None and derived_bw < spec.memory_bandwidth_gbps * (
        1 - OVERRIDE_TOLERANCE
    ):
        # Only ever lower: a derivation never raises what the catalog promises.
        bandwidth_override = round(derived_bw, 1)
        notes.append(
            f"memory bandwidth {derived_bw:.0f} GB/s (bus x clock) vs catalog "
            f"{spec.memory_bandwidth_gbps:g} GB/s"
        )
    pcie_override = None
    link = effective_pcie(device)
    if (
        link.generation
        and link.lanes
        and (link.generation < spec.pcie.generation or link.lanes < spec.pcie.lanes)
    ):
        pcie_override = PCIeLink(generation=link.generation, lanes=link.lanes)
        notes.append(
            f"PCIe gen{link.generation} x{link.lanes} vs catalog "
            f"gen{spec.pcie.generation} x{spec.pcie.lanes}"
        )
    return CatalogMatch(
        device,
        gpu_id,
        spec,
        matched_by,
        derived_bw,
        memory_override,
        bandwidth_override,
        pcie_override,
        tuple(notes),
    )


def _off(measured: float, catalogued: float) -> bool:
    return abs(measured - catalogued) > OVERRIDE_TOLERANCE * catalogued


def derive_gpu_model(device: DeviceInfo, benchmark: Benchmark | None = None) -> GPUModelSpec:
    """A ``GPUModelSpec`` (``derived: true``) for a device the catalog does not know."""
    reasons: list[str] = []
    estimated: list[str] = []
    bandwidth = benchmark.memory_bandwidth_gbps if benchmark else None
    bandwidth = bandwidth or derived_bandwidth_gbps(device)
    if bandwidth is None:
        reasons.append(
            f"{device.label}: memory bandwidth unknown (bus width "
            f"{device.memory_bus_width_bits}, max memory clock {device.max_memory_clock_mhz} MHz, "
            f"memory type {device.memory_type})"
        )
    tflops = benchmark.matmul_tflops if benchmark else None
    if tflops is None:
        tflops = estimated_fp16_tflops(device)
        estimated.append("tensor throughput (SMs x clock x per-clock rate)")
    if tflops is None:
        reasons.append(
            f"{device.label}: tensor throughput unknown (architecture "
            f"{architecture_of(device).value}, {device.compute_units} SMs/CUs)"
        )
    memory_gib = device.memory_total_gib
    if memory_gib is None:
        reasons.append(f"{device.label}: VRAM size unknown")
    if reasons:
        raise InventoryError(
            [r + "; add a GPUModel document for it, or run with --benchmark" for r in reasons]
        )
    assert bandwidth is not None and tflops is not None and memory_gib is not None
    architecture = architecture_of(device)
    link = effective_pcie(device)
    if not (link.generation and link.lanes):
        estimated.append("PCIe link (gen4 x16 assumed)")
    tdp = device.power_limit_watts
    if not tdp:
        estimated.append("board power (300 W assumed)")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    sources = [f"measured by gridplace hal ({device.backend}) on {stamp}"]
    if estimated:
        sources.append("estimated: " + ", ".join(estimated))
    return GPUModelSpec(
        display_name=device.name,
        vendor=device.vendor,
        architecture=architecture,
        compute_capability=device.compute_capability if device.vendor is Vendor.NVIDIA else None,
        gfx_target=_gfx(device),
        memory_gib=round(memory_gib, 2),
        memory_type=device.memory_type
        or ("HBM" if (device.memory_bus_width_bits or 0) >= 1024 else "GDDR"),
        memory_bus_width_bits=device.memory_bus_width_bits or 1,
        memory_bandwidth_gbps=round(bandwidth, 1),
        tensor_tflops=_throughput(architecture, tflops),
        tdp_watts=tdp or 300.0,
        pcie=PCIeLink(generation=link.generation or 4, lanes=link.lanes or 16),
        form_factor=_form_factor(device),
        peer_link=_peer_link(device),
        reported_names=[device.name],
        pci_device_ids=[device.pci_device_id] if device.pci_device_id else [],
        sources=sources,
        derived=True,
    )


def _gfx(device: DeviceInfo) -> str | None:
    target = (device.gfx_target or "").lower()
    if device.vendor is not Vendor.AMD or not re.fullmatch(r"gfx[0-9a-f]{3,4}", target):
        return None
    return target


def _throughput(architecture: Architecture, fp16_tflops: float) -> TensorThroughput:
    rounded = round(fp16_tflops, 1)
    return TensorThroughput(
        fp16=rounded,
        bf16=rounded if architecture in _BF16_ARCHITECTURES else None,
        fp8=round(2 * fp16_tflops, 1) if architecture in _FP8_ARCHITECTURES else None,
    )


def _form_factor(device: DeviceInfo) -> FormFactor:
    name = device.name.upper()
    if "SXM" in name:
        return FormFactor.SXM
    if "OAM" in name:
        return FormFactor.OAM
    return FormFactor.PCIE


def _peer_link(device: DeviceInfo) -> CatalogPeerLink | None:
    nvlinks = sum(p.links for p in device.peers if p.kind is Interconnect.NVLINK)
    if nvlinks:
        return CatalogPeerLink(
            kind=Interconnect.NVLINK, bandwidth_gbps=nvlinks * NVLINK_GBPS_PER_LINK
        )
    xgmi_peers = sum(1 for p in device.peers if p.kind is Interconnect.XGMI)
    if xgmi_peers:
        return CatalogPeerLink(
            kind=Interconnect.XGMI, bandwidth_gbps=xgmi_peers * XGMI_GBPS_PER_PEER
        )
    return None
