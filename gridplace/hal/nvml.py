"""NVIDIA backend over NVML (the ``pynvml`` module of the nvidia-ml-py distribution).

Owns: turning NVML calls into ``DeviceInfo`` and ``Telemetry`` records.
Must not: import ``pynvml`` before ``open`` (it is imported lazily there), let one device's
failure escape as a crash, or know about catalogs and Nodes.

Error handling, by NVML return code:
  NOT_SUPPORTED, FUNCTION_NOT_FOUND, NOT_FOUND, NO_DATA, DEPRECATED  -> the field is None and its
      name goes into ``unsupported`` (a GeForce card has no ECC; an old driver lacks a call);
  GPU_IS_LOST, UNKNOWN, RESET_REQUIRED, GPU_NOT_FOUND -> ``DeviceLost``: the reader stops and the
      device comes back with ``healthy=False`` and what was read before it went away;
  anything else -> the field is None and the translated error goes into ``problems``.
Library-level failures (init, device count, handles) raise ``BackendUnavailable`` or
``VendorError`` with ``raise ... from`` the NVML error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from gridplace.hal.backend import ManagedBackend
from gridplace.hal.device import DeviceInfo, PCIeState, PeerLink, Telemetry
from gridplace.hal.errors import BackendUnavailable, DeviceLost, VendorError
from gridplace.specs import Interconnect, Vendor

BACKEND = "nvml"

# NVML return codes (nvml.h; stable ABI, so the numbers are safe to keep here).
_NOT_SUPPORTED_CODES = frozenset({3, 13, 6, 21, 26})  # NOT_SUPPORTED, FUNCTION_NOT_FOUND,
# NOT_FOUND, NO_DATA, DEPRECATED
_LOST_CODES = frozenset({15, 999, 16, 28})  # GPU_IS_LOST, UNKNOWN, RESET_REQUIRED, GPU_NOT_FOUND
_INVALID_ARGUMENT = 2  # NVLink: link index past the device's links

# Clock-event ("throttle") reason bits, nvml.h nvmlClocksEventReason*.
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_HW_SLOWDOWN = 0x8  # raised with HW thermal or power brake; old drivers set only this bit
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40
REASON_HW_POWER_BRAKE = 0x80
THERMAL_REASONS = REASON_SW_THERMAL | REASON_HW_THERMAL | REASON_HW_SLOWDOWN
POWER_REASONS = REASON_SW_POWER_CAP | REASON_HW_POWER_BRAKE

# nvmlClockType_t, nvmlTemperatureSensors_t, nvmlPcieUtilCounter_t, ECC enums (nvml.h).
_CLOCK_SM, _CLOCK_MEM = 1, 2
_TEMPERATURE_GPU = 0
_PCIE_TX, _PCIE_RX = 0, 1
_ECC_CORRECTED, _ECC_UNCORRECTED, _ECC_AGGREGATE = 0, 1, 1
_FEATURE_ENABLED = 1
_NVLINK_DEVICE_TYPE_SWITCH = 2
_MILLI = 1000.0


def _text(value: object) -> str:
    """NVML strings arrive as str (nvidia-ml-py >= 11) or bytes (older wrappers)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip("\x00 ")
    return str(value).strip()


def pci_bus_id(pci: Any) -> str | None:
    """'0000:17:00.0' from an nvmlPciInfo_t (domain, bus, device; GPUs are function 0)."""
    try:
        return f"{int(pci.domain):04x}:{int(pci.bus):02x}:{int(pci.device):02x}.0"
    except (AttributeError, TypeError, ValueError):
        return None


def pci_device_id(pci: Any) -> str | None:
    """'0x2330': the device id is the upper 16 bits of pciDeviceId (the lower are the vendor)."""
    try:
        return f"0x{(int(pci.pciDeviceId) >> 16) & 0xFFFF:04x}"
    except (AttributeError, TypeError, ValueError):
        return None


@dataclass
class _Reader:
    """Calls NVML for one device and keeps what went wrong, by field."""

    nvml: ModuleType
    index: int
    handle: Any = None
    unsupported: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def call(self, label: str, function: str, *args: Any, with_handle: bool = True) -> Any:
        """The call's result, or None when unsupported/failed; raises DeviceLost."""
        fn: Callable[..., Any] | None = getattr(self.nvml, function, None)
        if fn is None:  # an older nvidia-ml-py without this call
            self.unsupported.append(label)
            return None
        try:
            return fn(self.handle, *args) if with_handle else fn(*args)
        except self.nvml.NVMLError as error:
            code = getattr(error, "value", None)
            if code in _NOT_SUPPORTED_CODES:
                self.unsupported.append(label)
                return None
            translated = translate(error, function)
            if isinstance(translated, DeviceLost):
                raise translated from error
            self.problems.append(f"{label}: {translated.detail}")
            return None


def translate(error: Exception, call: str) -> VendorError:
    """The hal error for an NVMLError (DeviceLost for the codes that mean the GPU is gone)."""
    code = getattr(error, "value", None)
    code = code if isinstance(code, int) else None
    kind = DeviceLost if code in _LOST_CODES else VendorError
    return kind(BACKEND, call, code, str(error))


class NvmlBackend(ManagedBackend):
    """NVIDIA GPUs through NVML. ``with NvmlBackend() as nvml: nvml.devices()``."""

    name = BACKEND

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._nvml: ModuleType | None = None
        self._clock = clock

    def open(self) -> None:
        if self._nvml is not None:
            return  # already open: NVML counts inits, and one shutdown must undo them all
        try:
            import pynvml
        except Exception as error:  # missing, or broken on import
            raise BackendUnavailable(f"cannot import pynvml: {error}", BACKEND) from error
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            raise BackendUnavailable(f"NVML did not initialise: {error}", BACKEND) from error
        self._nvml = pynvml

    def close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        # Shutting down after a lost GPU can fail; nothing is left to release then.
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()

    @property
    def nvml(self) -> ModuleType:
        if self._nvml is None:
            raise BackendUnavailable("NVML backend used before open()", BACKEND)
        return self._nvml

    def device_count(self) -> int:
        nvml = self.nvml
        try:
            return int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as error:
            raise translate(error, "nvmlDeviceGetCount") from error

    def devices(self) -> list[DeviceInfo]:
        return [self._read_device(index) for index in range(self.device_count())]

    def sample(self) -> list[Telemetry]:
        now_s = self._clock()
        return [self._read_telemetry(index, now_s) for index in range(self.device_count())]

    # -- inventory -------------------------------------------------------------------------

    def _read_device(self, index: int) -> DeviceInfo:
        reader = _Reader(self.nvml, index)
        values: dict[str, Any] = {}
        healthy = True
        try:
            reader.handle = reader.call(
                "handle", "nvmlDeviceGetHandleByIndex", index, with_handle=False
            )
            if reader.handle is None:
                raise DeviceLost(BACKEND, "nvmlDeviceGetHandleByIndex", None, "no handle")
            _read_identity(reader, values)
            _read_memory_and_clocks(reader, values)
            _read_pcie(reader, values)
            _read_power_and_modes(reader, values)
            _read_memory_health(reader, values)
            values["peers"] = _nvlink_peers(reader)
        except DeviceLost as lost:
            healthy = False
            reader.problems.append(f"GPU is lost ({lost.call}: {lost.detail})")
        if values.get("remap_failed"):
            healthy = False
            reader.problems.append("row remapping failed: the board needs service")
        if values.get("remap_pending"):
            reader.problems.append("a row remap is pending: reset the GPU to apply it")
        return DeviceInfo(
            index=index,
            vendor=Vendor.NVIDIA,
            backend=BACKEND,
            name=values.pop("name", None) or f"NVIDIA GPU {index}",
            healthy=healthy,
            problems=tuple(dict.fromkeys(reader.problems)),
            unsupported=tuple(dict.fromkeys(reader.unsupported)),
            **values,
        )

    # -- telemetry -------------------------------------------------------------------------

    def _read_telemetry(self, index: int, now_s: float) -> Telemetry:
        reader = _Reader(self.nvml, index)
        values: dict[str, Any] = {}
        try:
            reader.handle = reader.call(
                "handle", "nvmlDeviceGetHandleByIndex", index, with_handle=False
            )
            if reader.handle is None:
                raise DeviceLost(BACKEND, "nvmlDeviceGetHandleByIndex", None, "no handle")
            values["uuid"] = _optional_text(reader.call("uuid", "nvmlDeviceGetUUID"))
            values["temperature_c"] = _number(
                reader.call("temperature", "nvmlDeviceGetTemperature", _TEMPERATURE_GPU)
            )
            values["sm_clock_mhz"] = _number(
                reader.call("smClock", "nvmlDeviceGetClockInfo", _CLOCK_SM)
            )
            values["max_sm_clock_mhz"] = _number(
                reader.call("maxSmClock", "nvmlDeviceGetMaxClockInfo", _CLOCK_SM)
            )
            values["memory_clock_mhz"] = _number(
                reader.call("memoryClock", "nvmlDeviceGetClockInfo", _CLOCK_MEM)
            )
            values["power_watts"] = _scaled(
                reader.call("power", "nvmlDeviceGetPowerUsage"), 1 / _MILLI
            )
            values["power_limit_watts"] = _scaled(
                reader.call("powerLimit", "nvmlDeviceGetEnforcedPowerLimit"), 1 / _MILLI
            )
            utilization = reader.call("utilization", "nvmlDeviceGetUtilizationRates")
            values["utilization_percent"] = _number(getattr(utilization, "gpu", None))
            memory = reader.call("memory", "nvmlDeviceGetMemoryInfo")
            values["memory_used_bytes"] = _integer(getattr(memory, "used", None))
            values["pcie_tx_kbps"] = _number(
                reader.call("pcieTx", "nvmlDeviceGetPcieThroughput", _PCIE_TX)
            )
            values["pcie_rx_kbps"] = _number(
                reader.call("pcieRx", "nvmlDeviceGetPcieThroughput", _PCIE_RX)
            )
            reasons = _clock_event_reasons(reader)
            if reasons is not None:
                values["throttle_reasons"] = reasons
                values["thermal_throttled"] = bool(reasons & THERMAL_REASONS)
                values["power_throttled"] = bool(reasons & POWER_REASONS)
        except DeviceLost:
            return Telemetry(device_index=index, timestamp_s=now_s, healthy=False, **values)
        return Telemetry(device_index=index, timestamp_s=now_s, **values)


# -- field groups (each fills ``values`` with DeviceInfo fields) ---------------------------


def _read_identity(reader: _Reader, values: dict[str, Any]) -> None:
    values["name"] = _optional_text(reader.call("name", "nvmlDeviceGetName"))
    values["uuid"] = _optional_text(reader.call("uuid", "nvmlDeviceGetUUID"))
    pci = reader.call("pciInfo", "nvmlDeviceGetPciInfo")
    if pci is not None:
        values["pci_bus_id"] = pci_bus_id(pci)
        values["pci_device_id"] = pci_device_id(pci)
    capability = reader.call("computeCapability", "nvmlDeviceGetCudaComputeCapability")
    if capability is not None:
        major, minor = capability
        values["compute_capability"] = f"{int(major)}.{int(minor)}"
    values["shader_cores"] = _integer(reader.call("cudaCores", "nvmlDeviceGetNumGpuCores"))
    attributes = reader.call("attributes", "nvmlDeviceGetAttributes")
    values["compute_units"] = _integer(getattr(attributes, "multiprocessorCount", None))


def _read_memory_and_clocks(reader: _Reader, values: dict[str, Any]) -> None:
    memory = reader.call("memory", "nvmlDeviceGetMemoryInfo")
    if memory is not None:
        values["memory_total_bytes"] = _integer(getattr(memory, "total", None))
        values["memory_free_bytes"] = _integer(getattr(memory, "free", None))
    values["memory_bus_width_bits"] = _integer(
        reader.call("memoryBusWidth", "nvmlDeviceGetMemoryBusWidth")
    )
    values["max_memory_clock_mhz"] = _number(
        reader.call("maxMemoryClock", "nvmlDeviceGetMaxClockInfo", _CLOCK_MEM)
    )
    values["max_sm_clock_mhz"] = _number(
        reader.call("maxSmClock", "nvmlDeviceGetMaxClockInfo", _CLOCK_SM)
    )


def _read_pcie(reader: _Reader, values: dict[str, Any]) -> None:
    values["pcie_current"] = PCIeState(
        _integer(reader.call("pcieGeneration", "nvmlDeviceGetCurrPcieLinkGeneration")),
        _integer(reader.call("pcieWidth", "nvmlDeviceGetCurrPcieLinkWidth")),
    )
    values["pcie_max"] = PCIeState(
        _integer(reader.call("pcieMaxGeneration", "nvmlDeviceGetMaxPcieLinkGeneration")),
        _integer(reader.call("pcieMaxWidth", "nvmlDeviceGetMaxPcieLinkWidth")),
    )


def _read_power_and_modes(reader: _Reader, values: dict[str, Any]) -> None:
    values["power_limit_watts"] = _scaled(
        reader.call("powerLimit", "nvmlDeviceGetEnforcedPowerLimit"), 1 / _MILLI
    )
    mig = reader.call("migMode", "nvmlDeviceGetMigMode")
    if mig is not None:
        enabled = int(mig[0]) == _FEATURE_ENABLED
        values["partitioned"] = enabled
        values["partition_mode"] = "MIG" if enabled else None
    ecc = reader.call("eccMode", "nvmlDeviceGetEccMode")
    if ecc is not None:
        values["ecc_enabled"] = int(ecc[0]) == _FEATURE_ENABLED


def _read_memory_health(reader: _Reader, values: dict[str, Any]) -> None:
    if values.get("ecc_enabled"):
        values["ecc_corrected_errors"] = _integer(
            reader.call(
                "eccCorrected", "nvmlDeviceGetTotalEccErrors", _ECC_CORRECTED, _ECC_AGGREGATE
            )
        )
        values["ecc_uncorrected_errors"] = _integer(
            reader.call(
                "eccUncorrected", "nvmlDeviceGetTotalEccErrors", _ECC_UNCORRECTED, _ECC_AGGREGATE
            )
        )
    # Pre-Ampere boards retire pages; Ampere and later remap rows instead (and say
    # NOT_SUPPORTED to the other call).
    retired = [reader.call("retiredPages", "nvmlDeviceGetRetiredPages", cause) for cause in (0, 1)]
    if all(pages is not None for pages in retired):
        values["retired_pages"] = sum(len(pages) for pages in retired)
    remapped = reader.call("remappedRows", "nvmlDeviceGetRemappedRows")
    if remapped is not None:
        correctable, uncorrectable, pending, failure = remapped
        values["remapped_rows_correctable"] = int(correctable)
        values["remapped_rows_uncorrectable"] = int(uncorrectable)
        values["remap_pending"] = bool(pending)
        values["remap_failed"] = bool(failure)


def _nvlink_peers(reader: _Reader) -> tuple[PeerLink, ...]:
    """Active NVLinks grouped by the device at their far end (a GPU or an NVSwitch)."""
    nvml = reader.nvml
    links_by_peer: dict[str, int] = {}
    for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
        try:
            state = nvml.nvmlDeviceGetNvLinkState(reader.handle, link)
        except AttributeError:
            reader.unsupported.append("nvlink")
            break
        except nvml.NVMLError as error:
            code = getattr(error, "value", None)
            if code in _NOT_SUPPORTED_CODES or code == _INVALID_ARGUMENT:
                # No NVLink on this board, or past its last link: both end the walk.
                if link == 0:
                    reader.unsupported.append("nvlink")
                break
            translated = translate(error, "nvmlDeviceGetNvLinkState")
            if isinstance(translated, DeviceLost):
                raise translated from error
            reader.problems.append(f"nvlink: {translated.detail}")
            break
        if int(state) != _FEATURE_ENABLED:
            continue
        remote = reader.call("nvlinkRemote", "nvmlDeviceGetNvLinkRemotePciInfo", link)
        peer = pci_bus_id(remote) if remote is not None else None
        if peer is None:
            continue
        kind = reader.call("nvlinkRemoteType", "nvmlDeviceGetNvLinkRemoteDeviceType", link)
        if kind is not None and int(kind) == _NVLINK_DEVICE_TYPE_SWITCH:
            peer = "nvswitch"  # every GPU on the switch fabric reaches every other
        links_by_peer[peer] = links_by_peer.get(peer, 0) + 1
    return tuple(
        PeerLink(kind=Interconnect.NVLINK, peer_pci_bus_id=peer, links=count)
        for peer, count in sorted(links_by_peer.items())
    )


def _clock_event_reasons(reader: _Reader) -> int | None:
    """The current clock-event bitmask (called 'throttle reasons' before driver 535)."""
    if hasattr(reader.nvml, "nvmlDeviceGetCurrentClocksEventReasons"):
        reasons = reader.call("clockEventReasons", "nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is not None:
            return int(reasons)
    reasons = reader.call("clockEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")
    return int(reasons) if reasons is not None else None


# -- value coercion --------------------------------------------------------------------------


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    text = _text(value)
    return text or None


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _scaled(value: object, factor: float) -> float | None:
    number = _number(value)
    return number * factor if number is not None else None
