"""AMD backend over the ``amdsmi`` Python package (ROCm's AMD SMI).

Owns: turning amdsmi calls into ``DeviceInfo`` and ``Telemetry`` records.
Must not: import ``amdsmi`` before ``open``. Importing it on a machine without ROCm raises
``KeyError`` (it reads ROCm's environment at import), not ``ImportError``, so *any* exception there
means "backend unavailable". Nor may one device's failure escape as a crash.

What amdsmi returns, and how it is read (amdsmi_interface.py, ROCm 6.x):
  asic info: market_name, device_id (hex string "0x74a1" or an int), target_graphics_version
      ("gfx942"), num_compute_units; vram info: vram_type (AmdSmiVramType), vram_size (MB),
      vram_bit_width (bits), vram_max_bandwidth (GB/s); vram usage: vram_total / vram_used (MB);
  pcie info: pcie_static.max_pcie_width / max_pcie_speed (MT/s), pcie_metric.pcie_width /
      pcie_speed (MT/s); clocks: clk / max_clk (MHz) for GFX and MEM; power info:
      current_socket_power (MI300+) or average_socket_power (W); power cap info: power_cap (uW);
  throttling: violation status (active_prochot_thrm / active_socket_thrm / active_vr_thrm /
      active_hbm_thrm = thermal, active_ppt_pwr = power) on MI300+, else gpu metrics'
      throttle_status (a bare flag, counted as thermal);
  ECC: total ecc count (correctable_count, uncorrectable_count); bad pages: bad page info;
  xGMI: topo link type between two GPUs (type == AmdSmiLinkType / AmdSmiIoLinkType XGMI).
Values the library cannot give arrive as "N/A" strings or all-ones integers: both become None.
Errors with status NOT_SUPPORTED / NOT_YET_IMPLEMENTED / NO_DATA are "not supported" (None);
DRIVER_NOT_LOADED / AMDGPU_RESTART_ERR mean the device is lost; anything else is recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from gridplace.hal.backend import ManagedBackend
from gridplace.hal.device import DeviceInfo, PCIeState, PeerLink, Telemetry
from gridplace.hal.errors import BackendUnavailable, DeviceLost, VendorError
from gridplace.specs import Interconnect, Vendor

BACKEND = "amdsmi"
_MB = 1024**2  # amdsmi's "MB" are MiB (it divides byte counts by 1024 * 1024)

# amdsmi_status_t names, resolved against the loaded library when it exposes them.
# A default of None: only known when the library names it (its number differs between releases).
_UNSUPPORTED_STATUSES: dict[str, int | None] = {
    "NOT_SUPPORTED": 2,
    "NOT_YET_IMPLEMENTED": 3,
    "NO_DATA": 40,
}
_LOST_STATUSES: dict[str, int | None] = {"DRIVER_NOT_LOADED": 34, "AMDGPU_RESTART_ERR": None}

# PCIe transfer rate per lane (MT/s) -> generation.
_GENERATION_BY_MTS = {2500: 1, 5000: 2, 8000: 3, 16000: 4, 32000: 5, 64000: 6}
_MAX_UINT = (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


def _status_codes(smi: ModuleType, names: dict[str, int | None]) -> frozenset[int]:
    wrapper = getattr(smi, "amdsmi_wrapper", None)
    codes: set[int] = set()
    for name, default in names.items():
        code = getattr(wrapper, f"AMDSMI_STATUS_{name}", default)
        if isinstance(code, int):
            codes.add(code)
    return frozenset(codes)


def _error_code(error: BaseException) -> int | None:
    code = getattr(error, "err_code", None)
    if code is None and callable(getattr(error, "get_error_code", None)):
        code = error.get_error_code()  # type: ignore[attr-defined]
    return int(code) if isinstance(code, int) else None


@dataclass
class _Reader:
    """Calls amdsmi for one device and keeps what went wrong, by field."""

    smi: ModuleType
    handle: Any
    unsupported_codes: frozenset[int]
    lost_codes: frozenset[int]
    unsupported: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def call(self, label: str, function: str, *args: Any) -> Any:
        """The call's result, or None when unsupported/failed; raises DeviceLost."""
        fn: Callable[..., Any] | None = getattr(self.smi, function, None)
        if fn is None:  # an older amdsmi without this call
            self.unsupported.append(label)
            return None
        base = getattr(self.smi, "AmdSmiException", Exception)
        try:
            return fn(self.handle, *args)
        except base as error:
            code = _error_code(error)
            if code in self.unsupported_codes:
                self.unsupported.append(label)
                return None
            kind = DeviceLost if code in self.lost_codes else VendorError
            translated = kind(BACKEND, function, code, str(error) or type(error).__name__)
            if isinstance(translated, DeviceLost):
                raise translated from error
            self.problems.append(f"{label}: {translated.detail}")
            return None

    def enum(self, enum_name: str, member: str) -> Any:
        """``amdsmi.<enum_name>.<member>``, or None when this amdsmi lacks it."""
        return getattr(getattr(self.smi, enum_name, None), member, None)


class AmdSmiBackend(ManagedBackend):
    """AMD GPUs through amdsmi. ``with AmdSmiBackend() as smi: smi.devices()``."""

    name = BACKEND

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._smi: ModuleType | None = None
        self._handles: list[Any] = []
        self._clock = clock

    def open(self) -> None:
        if self._smi is not None:
            return  # already open (open_backend opens; a `with` block then enters)
        try:
            import amdsmi
        except Exception as error:  # KeyError without ROCm, ImportError, OSError, ...
            raise BackendUnavailable(
                f"cannot import amdsmi ({type(error).__name__}: {error})", BACKEND
            ) from error
        try:
            amdsmi.amdsmi_init()
        except Exception as error:
            raise BackendUnavailable(f"amdsmi did not initialise: {error}", BACKEND) from error
        self._smi = amdsmi
        try:
            self._handles = list(amdsmi.amdsmi_get_processor_handles())
        except Exception as error:
            self.close()
            raise VendorError(
                BACKEND, "amdsmi_get_processor_handles", _error_code(error), str(error)
            ) from error

    def close(self) -> None:
        smi, self._smi = self._smi, None
        self._handles = []
        if smi is None:
            return
        with contextlib.suppress(Exception):  # nothing is left to release if shutdown fails
            smi.amdsmi_shut_down()

    @property
    def smi(self) -> ModuleType:
        if self._smi is None:
            raise BackendUnavailable("amdsmi backend used before open()", BACKEND)
        return self._smi

    def _reader(self, handle: Any) -> _Reader:
        return _Reader(
            self.smi,
            handle,
            _status_codes(self.smi, _UNSUPPORTED_STATUSES),
            _status_codes(self.smi, _LOST_STATUSES),
        )

    def devices(self) -> list[DeviceInfo]:
        bus_ids = [self._bus_id(handle) for handle in self._handles]
        return [
            self._read_device(index, handle, bus_ids) for index, handle in enumerate(self._handles)
        ]

    def sample(self) -> list[Telemetry]:
        now_s = self._clock()
        return [
            self._read_telemetry(index, handle, now_s) for index, handle in enumerate(self._handles)
        ]

    def _bus_id(self, handle: Any) -> str | None:
        try:
            return _optional_text(self.smi.amdsmi_get_gpu_device_bdf(handle))
        except Exception:
            return None

    # -- inventory -------------------------------------------------------------------------

    def _read_device(self, index: int, handle: Any, bus_ids: list[str | None]) -> DeviceInfo:
        reader = self._reader(handle)
        values: dict[str, Any] = {"pci_bus_id": bus_ids[index]}
        healthy = True
        try:
            _read_identity(reader, values)
            _read_memory(reader, values)
            _read_clocks_pcie_power(reader, values)
            _read_memory_health(reader, values)
            values["peers"] = _xgmi_peers(reader, self._handles, bus_ids, index)
        except DeviceLost as lost:
            healthy = False
            reader.problems.append(f"GPU is lost ({lost.call}: {lost.detail})")
        return DeviceInfo(
            index=index,
            vendor=Vendor.AMD,
            backend=BACKEND,
            name=values.pop("name", None) or f"AMD GPU {index}",
            healthy=healthy,
            problems=tuple(dict.fromkeys(reader.problems)),
            unsupported=tuple(dict.fromkeys(reader.unsupported)),
            **values,
        )

    # -- telemetry -------------------------------------------------------------------------

    def _read_telemetry(self, index: int, handle: Any, now_s: float) -> Telemetry:
        reader = self._reader(handle)
        values: dict[str, Any] = {}
        try:
            values["uuid"] = _optional_text(reader.call("uuid", "amdsmi_get_gpu_device_uuid"))
            edge, hotspot, vram = (
                _temperature(reader, sensor) for sensor in ("EDGE", "HOTSPOT", "VRAM")
            )
            values["temperature_c"] = edge if edge is not None else hotspot
            values["hotspot_temperature_c"] = hotspot
            values["memory_temperature_c"] = vram
            gfx = _clock(reader, "GFX")
            values["sm_clock_mhz"] = _number(gfx.get("clk"))
            values["max_sm_clock_mhz"] = _number(gfx.get("max_clk"))
            values["memory_clock_mhz"] = _number(_clock(reader, "MEM").get("clk"))
            power = _mapping(reader.call("power", "amdsmi_get_power_info"))
            values["power_watts"] = _first_number(
                power, "current_socket_power", "average_socket_power"
            )
            values["power_limit_watts"] = _power_cap_watts(reader, power)
            activity = _mapping(reader.call("activity", "amdsmi_get_gpu_activity"))
            values["utilization_percent"] = _number(activity.get("gfx_activity"))
            usage = _mapping(reader.call("vramUsage", "amdsmi_get_gpu_vram_usage"))
            used_mb = _number(usage.get("vram_used"))
            values["memory_used_bytes"] = int(used_mb * _MB) if used_mb is not None else None
            values.update(_throttle_state(reader))
        except DeviceLost:
            return Telemetry(device_index=index, timestamp_s=now_s, healthy=False, **values)
        return Telemetry(device_index=index, timestamp_s=now_s, **values)


# -- field groups ----------------------------------------------------------------------------


def _read_identity(reader: _Reader, values: dict[str, Any]) -> None:
    asic = _mapping(reader.call("asicInfo", "amdsmi_get_gpu_asic_info"))
    values["name"] = _optional_text(asic.get("market_name"))
    values["pci_device_id"] = _hex_id(asic.get("device_id"))
    target = _optional_text(asic.get("target_graphics_version"))
    values["gfx_target"] = target.lower() if target and target.lower() != "gfxn/a" else None
    values["compute_units"] = _integer(asic.get("num_compute_units"))
    values["uuid"] = _optional_text(reader.call("uuid", "amdsmi_get_gpu_device_uuid"))
    partition = _optional_text(reader.call("computePartition", "amdsmi_get_gpu_compute_partition"))
    if partition is not None:
        # SPX is the whole GPU as one device; DPX/QPX/CPX split it into several.
        values["partitioned"] = partition.upper() != "SPX"
        values["partition_mode"] = partition.upper()


def _read_memory(reader: _Reader, values: dict[str, Any]) -> None:
    vram = _mapping(reader.call("vramInfo", "amdsmi_get_gpu_vram_info"))
    values["memory_type"] = _vram_type_name(reader, vram.get("vram_type"))
    values["memory_bus_width_bits"] = _integer(vram.get("vram_bit_width"))
    values["reported_memory_bandwidth_gbps"] = _number(vram.get("vram_max_bandwidth"))
    size_mb = _number(vram.get("vram_size"))
    usage = _mapping(reader.call("vramUsage", "amdsmi_get_gpu_vram_usage"))
    total_mb = _number(usage.get("vram_total"))
    total_mb = total_mb if total_mb is not None else size_mb
    used_mb = _number(usage.get("vram_used"))
    if total_mb is not None:
        values["memory_total_bytes"] = int(total_mb * _MB)
        if used_mb is not None:
            values["memory_free_bytes"] = int(max(total_mb - used_mb, 0) * _MB)


def _read_clocks_pcie_power(reader: _Reader, values: dict[str, Any]) -> None:
    values["max_sm_clock_mhz"] = _number(_clock(reader, "GFX").get("max_clk"))
    values["max_memory_clock_mhz"] = _number(_clock(reader, "MEM").get("max_clk"))
    pcie = _mapping(reader.call("pcieInfo", "amdsmi_get_pcie_info"))
    static = _mapping(pcie.get("pcie_static"))
    metric = _mapping(pcie.get("pcie_metric"))
    max_generation = _generation(static.get("max_pcie_speed"))
    if max_generation is None:
        max_generation = _integer(static.get("pcie_interface_version"))
    values["pcie_max"] = PCIeState(max_generation, _integer(static.get("max_pcie_width")))
    values["pcie_current"] = PCIeState(
        _generation(metric.get("pcie_speed")), _integer(metric.get("pcie_width"))
    )
    power = _mapping(reader.call("power", "amdsmi_get_power_info"))
    values["power_limit_watts"] = _power_cap_watts(reader, power)


def _read_memory_health(reader: _Reader, values: dict[str, Any]) -> None:
    ecc = reader.call("eccCount", "amdsmi_get_gpu_total_ecc_count")
    if ecc is not None:
        counts = _mapping(ecc)
        values["ecc_corrected_errors"] = _integer(counts.get("correctable_count"))
        values["ecc_uncorrected_errors"] = _integer(counts.get("uncorrectable_count"))
    pages = reader.call("badPages", "amdsmi_get_gpu_bad_page_info")
    if isinstance(pages, list | tuple):
        values["retired_pages"] = len(pages)


def _xgmi_peers(
    reader: _Reader, handles: list[Any], bus_ids: list[str | None], index: int
) -> tuple[PeerLink, ...]:
    # amdsmi_link_type_t (ROCm 6.4+) and the older amdsmi_io_link_type_t both give xGMI as 2.
    xgmi = reader.enum("AmdSmiLinkType", "AMDSMI_LINK_TYPE_XGMI")
    if xgmi is None:
        xgmi = reader.enum("AmdSmiIoLinkType", "XGMI")
    if xgmi is None or not hasattr(reader.smi, "amdsmi_topo_get_link_type"):
        reader.unsupported.append("xgmi")
        return ()
    peers: list[PeerLink] = []
    for other, handle in enumerate(handles):
        if other == index or bus_ids[other] is None:
            continue
        link = _mapping(reader.call("xgmi", "amdsmi_topo_get_link_type", handle))
        if link.get("type") == xgmi:
            peers.append(PeerLink(kind=Interconnect.XGMI, peer_pci_bus_id=str(bus_ids[other])))
    return tuple(peers)


def _temperature(reader: _Reader, sensor: str) -> float | None:
    sensor_type = reader.enum("AmdSmiTemperatureType", sensor)
    current = reader.enum("AmdSmiTemperatureMetric", "CURRENT")
    if sensor_type is None or current is None:
        return None
    return _number(
        reader.call(f"temperature{sensor.title()}", "amdsmi_get_temp_metric", sensor_type, current)
    )


def _clock(reader: _Reader, kind: str) -> Mapping[str, Any]:
    clock_type = reader.enum("AmdSmiClkType", kind)
    if clock_type is None:
        return {}
    return _mapping(reader.call(f"clock{kind.title()}", "amdsmi_get_clock_info", clock_type))


def _power_cap_watts(reader: _Reader, power: Mapping[str, Any]) -> float | None:
    cap = _mapping(reader.call("powerCap", "amdsmi_get_power_cap_info"))
    micro_watts = _number(cap.get("power_cap"))
    if micro_watts:
        return micro_watts / 1_000_000
    return _number(power.get("power_limit"))  # already in W


def _throttle_state(reader: _Reader) -> dict[str, Any]:
    violation = reader.call("violationStatus", "amdsmi_get_violation_status")
    if violation is not None:
        status = _mapping(violation)
        thermal = any(
            status.get(key) is True
            for key in (
                "active_prochot_thrm",
                "active_socket_thrm",
                "active_vr_thrm",
                "active_hbm_thrm",
            )
        )
        return {
            "thermal_throttled": thermal,
            "power_throttled": status.get("active_ppt_pwr") is True,
        }
    metrics = _mapping(reader.call("gpuMetrics", "amdsmi_get_gpu_metrics_info"))
    flag = _integer(metrics.get("throttle_status"))
    if flag is None:
        return {}
    # The bare flag does not say why; thermal is what derates a node, so it counts as thermal.
    return {"thermal_throttled": flag != 0, "power_throttled": False, "throttle_reasons": flag}


# -- value coercion --------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _optional_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip("\x00 ")
    return None if not text or text.upper() == "N/A" else text


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool | str | bytes):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if number in _MAX_UINT else number


def _first_number(values: Mapping[str, Any], *keys: str) -> float | None:
    for key in keys:
        number = _number(values.get(key))
        if number:
            return number
    return None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _hex_id(value: object) -> str | None:
    """'0x74a1' from an int or a hex string ('0x74A1', '74a1')."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value & 0xFFFF:04x}"
    text = _optional_text(value)
    if text is None:
        return None
    try:
        return f"0x{int(text, 16) & 0xFFFF:04x}"
    except ValueError:
        return None


def _generation(speed_mts: object) -> int | None:
    """PCIe generation from the per-lane rate in MT/s (16000 -> 4)."""
    speed = _integer(speed_mts)
    return _GENERATION_BY_MTS.get(speed) if speed is not None else None


def _vram_type_name(reader: _Reader, value: object) -> str | None:
    """'HBM3' from AmdSmiVramType (an int) or from a string amdsmi already named."""
    if isinstance(value, str):
        return _optional_text(value.removeprefix("AMDSMI_VRAM_TYPE_"))
    vram_types = getattr(reader.smi, "AmdSmiVramType", None)
    if vram_types is None or not isinstance(value, int):
        return None
    try:
        name = str(vram_types(value).name)
    except (ValueError, TypeError):
        return None
    return None if name in ("UNKNOWN", "MAX") else name
