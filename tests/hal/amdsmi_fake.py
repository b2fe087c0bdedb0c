"""A stand-in ``amdsmi`` module, shaped like ROCm's amdsmi_interface (same function names, dict
keys, enums and exception classes), for injecting into ``sys.modules``.

Each GPU is a dict from amdsmi function name to its answer: a value, a callable taking the call's
extra arguments, or ``Status(code)`` to raise ``AmdSmiLibraryException(code)``. Unlisted calls
raise AMDSMI_STATUS_NOT_SUPPORTED.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

NOT_SUPPORTED = 2
NOT_AVAILABLE = "N/A"  # what amdsmi puts where the library has no value


@dataclass(frozen=True)
class Status:
    code: int


class AmdSmiException(Exception):
    pass


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        super().__init__(f"amdsmi status {err_code}")
        self.err_code = err_code


class AmdSmiTemperatureType(IntEnum):
    EDGE = 0
    HOTSPOT = 1
    JUNCTION = 1
    VRAM = 2


class AmdSmiTemperatureMetric(IntEnum):
    CURRENT = 0
    MAX = 1


class AmdSmiClkType(IntEnum):
    SYS = 0
    GFX = 0
    DF = 1
    DCEF = 2
    SOC = 3
    MEM = 4


class AmdSmiIoLinkType(IntEnum):
    UNDEFINED = 0
    PCIEXPRESS = 1
    XGMI = 2


class AmdSmiVramType(IntEnum):
    UNKNOWN = 0
    HBM = 1
    HBM2 = 2
    HBM2E = 3
    HBM3 = 4
    GDDR6 = 13


class Handle:
    """amdsmi_processor_handle stand-in; ``index`` finds the scripted GPU."""

    def __init__(self, index: int) -> None:
        self.index = index


def build_module(gpus: list[dict[str, Any]]) -> types.ModuleType:
    module = types.ModuleType("amdsmi")
    state = {"init": 0, "shutdown": 0}
    module.state = state  # type: ignore[attr-defined]
    for cls in (
        AmdSmiException,
        AmdSmiLibraryException,
        AmdSmiTemperatureType,
        AmdSmiTemperatureMetric,
        AmdSmiClkType,
        AmdSmiIoLinkType,
        AmdSmiVramType,
    ):
        setattr(module, cls.__name__, cls)
    wrapper = types.SimpleNamespace(AMDSMI_STATUS_NOT_SUPPORTED=NOT_SUPPORTED)
    module.amdsmi_wrapper = wrapper  # type: ignore[attr-defined]

    def init(*_: Any) -> None:
        state["init"] += 1

    def shut_down() -> None:
        state["shutdown"] += 1

    module.amdsmi_init = init  # type: ignore[attr-defined]
    module.amdsmi_shut_down = shut_down  # type: ignore[attr-defined]
    handles = [Handle(index) for index in range(len(gpus))]
    module.amdsmi_get_processor_handles = lambda: list(handles)  # type: ignore[attr-defined]

    def dispatcher(function: str) -> Callable[..., Any]:
        def call(handle: Handle, *args: Any) -> Any:
            answer = gpus[handle.index].get(function, Status(NOT_SUPPORTED))
            if callable(answer) and not isinstance(answer, Status):
                answer = answer(*args)
            if isinstance(answer, Status):
                raise AmdSmiLibraryException(answer.code)
            return answer

        return call

    functions = {name for gpu in gpus for name in gpu} | {
        "amdsmi_get_gpu_device_bdf",
        "amdsmi_get_gpu_device_uuid",
        "amdsmi_get_gpu_asic_info",
        "amdsmi_get_gpu_vram_info",
        "amdsmi_get_gpu_vram_usage",
        "amdsmi_get_pcie_info",
        "amdsmi_get_temp_metric",
        "amdsmi_get_clock_info",
        "amdsmi_get_power_info",
        "amdsmi_get_power_cap_info",
        "amdsmi_get_gpu_activity",
        "amdsmi_get_violation_status",
        "amdsmi_get_gpu_metrics_info",
        "amdsmi_get_gpu_total_ecc_count",
        "amdsmi_get_gpu_bad_page_info",
        "amdsmi_get_gpu_compute_partition",
        "amdsmi_topo_get_link_type",
    }
    for function in functions:
        setattr(module, function, dispatcher(function))
    return module


def temperatures(**by_sensor: float | Status) -> Callable[[Any, Any], Any]:
    """Answer amdsmi_get_temp_metric(sensor, CURRENT) by sensor name; others unsupported."""

    def answer(sensor: Any, metric: Any) -> Any:
        return by_sensor.get(AmdSmiTemperatureType(sensor).name, Status(NOT_SUPPORTED))

    return answer


def mi300x(index: int, hive_size: int) -> dict[str, Any]:
    """One MI300X OAM of an xGMI hive of ``hive_size`` (newer amdsmi: violation status, hex
    device id string, vram_max_bandwidth reported; no edge sensor)."""
    return {
        "amdsmi_get_gpu_device_bdf": f"0000:{0x10 + index:02x}:00.0",
        "amdsmi_get_gpu_device_uuid": f"mi300x-{index}",
        "amdsmi_get_gpu_asic_info": {
            "market_name": "AMD Instinct MI300X",
            "vendor_id": "0x1002",
            "device_id": "0x74a1",
            "target_graphics_version": "gfx942",
            "num_compute_units": 304,
        },
        "amdsmi_get_gpu_vram_info": {
            "vram_type": AmdSmiVramType.HBM3,
            "vram_vendor": "HYNIX",
            "vram_size": 196592,
            "vram_bit_width": 8192,
            "vram_max_bandwidth": 5300,
        },
        "amdsmi_get_gpu_vram_usage": {"vram_total": 196592, "vram_used": 2048},
        "amdsmi_get_pcie_info": {
            "pcie_static": {"max_pcie_width": 16, "max_pcie_speed": 32000,
                            "pcie_interface_version": 5},
            "pcie_metric": {"pcie_width": 16, "pcie_speed": 32000, "pcie_bandwidth": 64000},
        },
        "amdsmi_get_temp_metric": temperatures(HOTSPOT=48, VRAM=41),
        "amdsmi_get_clock_info": lambda clock_type: {
            AmdSmiClkType.GFX: {"clk": 2100, "min_clk": 132, "max_clk": 2100},
            AmdSmiClkType.MEM: {"clk": 1300, "min_clk": 900, "max_clk": 1300},
        }[clock_type],
        "amdsmi_get_power_info": {
            "current_socket_power": 612, "average_socket_power": NOT_AVAILABLE, "power_limit": 750
        },
        "amdsmi_get_power_cap_info": {"power_cap": 750_000_000, "default_power_cap": 750_000_000},
        "amdsmi_get_gpu_activity": {"gfx_activity": 99, "umc_activity": 70, "mm_activity": 0},
        "amdsmi_get_violation_status": {
            "active_prochot_thrm": False,
            "active_ppt_pwr": True,
            "active_socket_thrm": False,
            "active_vr_thrm": False,
            "active_hbm_thrm": False,
        },
        "amdsmi_get_gpu_total_ecc_count": {"correctable_count": 3, "uncorrectable_count": 0,
                                           "deferred_count": 0},
        "amdsmi_get_gpu_bad_page_info": [],
        "amdsmi_get_gpu_compute_partition": "SPX",
        "amdsmi_topo_get_link_type": lambda other: {
            "hops": 1, "type": AmdSmiIoLinkType.XGMI if other.index < hive_size else 1
        },
    }  # fmt: skip


def rx_7900_xtx() -> dict[str, Any]:
    """A Radeon RX 7900 XTX on an older amdsmi: int device id, no vram_max_bandwidth, the bare
    throttle flag in GPU metrics instead of violation status."""
    return {
        "amdsmi_get_gpu_device_bdf": "0000:03:00.0",
        "amdsmi_get_gpu_device_uuid": "7900xtx-0",
        "amdsmi_get_gpu_asic_info": {
            "market_name": "Radeon RX 7900 XTX",
            "device_id": 0x744C,
            "target_graphics_version": "gfx1100",
            "num_compute_units": 96,
        },
        "amdsmi_get_gpu_vram_info": {
            "vram_type": AmdSmiVramType.GDDR6,
            "vram_size": 24560,
            "vram_bit_width": 384,
            "vram_max_bandwidth": NOT_AVAILABLE,
        },
        "amdsmi_get_gpu_vram_usage": {"vram_total": 24560, "vram_used": 512},
        "amdsmi_get_pcie_info": {
            "pcie_static": {"max_pcie_width": 16, "max_pcie_speed": 16000},
            "pcie_metric": {"pcie_width": 16, "pcie_speed": 2500},
        },
        "amdsmi_get_temp_metric": temperatures(EDGE=52, HOTSPOT=70, VRAM=66),
        "amdsmi_get_clock_info": lambda clock_type: {
            AmdSmiClkType.GFX: {"clk": 2300, "max_clk": 2500},
            AmdSmiClkType.MEM: {"clk": 1250, "max_clk": 1250},
        }[clock_type],
        "amdsmi_get_power_info": {"average_socket_power": 280, "power_limit": 355},
        "amdsmi_get_power_cap_info": {"power_cap": 355_000_000},
        "amdsmi_get_gpu_metrics_info": {"throttle_status": 1},
        "amdsmi_get_gpu_activity": {"gfx_activity": 80},
    }
