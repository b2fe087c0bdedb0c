"""Scripted GPUs behind the real ``pynvml`` module: every NVML call the backend makes is patched
on the module (``monkeypatch.setattr``) and answered per device from a table.

A device is a dict from NVML function name to its answer: a value, a callable taking the call's
extra arguments, or an NVML error code (``Fail(code)``) to raise. Calls a device does not list
raise NVML_ERROR_NOT_SUPPORTED, the way a driver answers a query a board lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

MIB = 1024**2


@dataclass(frozen=True)
class Fail:
    """Raise ``pynvml.NVMLError(code)`` (pynvml maps it to its NVMLError_* subclass)."""

    code: int


NOT_SUPPORTED = Fail(pynvml.NVML_ERROR_NOT_SUPPORTED)
GPU_IS_LOST = Fail(pynvml.NVML_ERROR_GPU_IS_LOST)

# Every per-device function the NVML backend may call (it must be patched even when unlisted).
DEVICE_FUNCTIONS = (
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetCudaComputeCapability",
    "nvmlDeviceGetNumGpuCores",
    "nvmlDeviceGetAttributes",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetMemoryBusWidth",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetEccMode",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRetiredPages",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetNvLinkRemotePciInfo",
    "nvmlDeviceGetNvLinkRemoteDeviceType",
)


def pci(bus: int, device_id: int) -> SimpleNamespace:
    """An nvmlPciInfo_t look-alike: NVIDIA's vendor id 0x10de in the low 16 bits."""
    return SimpleNamespace(domain=0, bus=bus, device=0, pciDeviceId=(device_id << 16) | 0x10DE)


def memory(total_mib: int, used_mib: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        total=total_mib * MIB, free=(total_mib - used_mib) * MIB, used=used_mib * MIB
    )


def clocks(sm_mhz: int, memory_mhz: int) -> Callable[[int], int]:
    """Answer nvmlDeviceGetMaxClockInfo / GetClockInfo by clock type (1 SM, 2 memory)."""
    return lambda clock_type: {pynvml.NVML_CLOCK_SM: sm_mhz, pynvml.NVML_CLOCK_MEM: memory_mhz}[
        clock_type
    ]


def nvlinks(peers_by_link: dict[int, SimpleNamespace]) -> dict[str, Any]:
    """Answers for NVLink state and remote PCI info; links past the last say INVALID_ARGUMENT."""
    last = max(peers_by_link) if peers_by_link else -1

    def state(link: int) -> int | Fail:
        return 1 if link <= last else Fail(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    return {
        "nvmlDeviceGetNvLinkState": state,
        "nvmlDeviceGetNvLinkRemotePciInfo": lambda link: peers_by_link[link],
        "nvmlDeviceGetNvLinkRemoteDeviceType": lambda link: pynvml.NVML_NVLINK_DEVICE_TYPE_GPU,
    }


class ScriptedNvml:
    """Installs ``devices`` on the real pynvml module; ``calls`` counts init/shutdown."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, devices: list[dict[str, Any]]) -> None:
        self.devices = devices
        self.init_calls = 0
        self.shutdown_calls = 0
        monkeypatch.setattr(pynvml, "nvmlInit", self._init)
        monkeypatch.setattr(pynvml, "nvmlShutdown", self._shutdown)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(self.devices))
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", self._handle)
        for function in DEVICE_FUNCTIONS:
            monkeypatch.setattr(pynvml, function, self._dispatcher(function))

    def _init(self) -> None:
        self.init_calls += 1

    def _shutdown(self) -> None:
        self.shutdown_calls += 1

    def _handle(self, index: int) -> int:
        answer = self.devices[index].get("nvmlDeviceGetHandleByIndex", index)
        if isinstance(answer, Fail):
            raise pynvml.NVMLError(answer.code)
        return index  # the handle is the index: the dispatcher looks the device up by it

    def _dispatcher(self, function: str) -> Callable[..., Any]:
        def call(handle: int, *args: Any) -> Any:
            answer = self.devices[handle].get(function, NOT_SUPPORTED)
            if callable(answer) and not isinstance(answer, Fail):
                answer = answer(*args)
            if isinstance(answer, Fail):
                raise pynvml.NVMLError(answer.code)
            return answer

        return call


def rtx_4090(bus: int = 1) -> dict[str, Any]:
    """A GeForce RTX 4090 at idle: PCIe dropped to gen 1, no ECC, no MIG, no NVLink."""
    return {
        "nvmlDeviceGetName": "NVIDIA GeForce RTX 4090",
        "nvmlDeviceGetUUID": f"GPU-4090-{bus}",
        "nvmlDeviceGetPciInfo": pci(bus, 0x2684),
        "nvmlDeviceGetCudaComputeCapability": (8, 9),
        "nvmlDeviceGetNumGpuCores": 16384,
        "nvmlDeviceGetMemoryInfo": memory(24564, used_mib=1200),
        "nvmlDeviceGetMemoryBusWidth": 384,
        "nvmlDeviceGetMaxClockInfo": clocks(3105, 10501),
        "nvmlDeviceGetClockInfo": clocks(2520, 10501),
        "nvmlDeviceGetCurrPcieLinkGeneration": 1,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkGeneration": 4,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
        "nvmlDeviceGetPcieThroughput": lambda counter: 1500 + counter,
        "nvmlDeviceGetTemperature": lambda sensor: 71,
        "nvmlDeviceGetCurrentClocksEventReasons": 0x4,  # SW power cap
        "nvmlDeviceGetPowerUsage": 431_000,
        "nvmlDeviceGetEnforcedPowerLimit": 450_000,
        "nvmlDeviceGetUtilizationRates": SimpleNamespace(gpu=97, memory=60),
    }


def h100_sxm(bus: int, peer_bus: int | None = None) -> dict[str, Any]:
    """An H100 SXM5 80GB with ECC on, healthy row remapper and 18 NVLinks to ``peer_bus``."""
    device = {
        "nvmlDeviceGetName": "NVIDIA H100 80GB HBM3",
        "nvmlDeviceGetUUID": f"GPU-h100-{bus}",
        "nvmlDeviceGetPciInfo": pci(bus, 0x2330),
        "nvmlDeviceGetCudaComputeCapability": (9, 0),
        "nvmlDeviceGetNumGpuCores": 16896,
        "nvmlDeviceGetMemoryInfo": memory(81559),
        "nvmlDeviceGetMemoryBusWidth": 5120,
        "nvmlDeviceGetMaxClockInfo": clocks(1980, 2619),
        "nvmlDeviceGetClockInfo": clocks(1755, 2619),
        "nvmlDeviceGetCurrPcieLinkGeneration": 5,
        "nvmlDeviceGetCurrPcieLinkWidth": 16,
        "nvmlDeviceGetMaxPcieLinkGeneration": 5,
        "nvmlDeviceGetMaxPcieLinkWidth": 16,
        "nvmlDeviceGetTemperature": lambda sensor: 64,
        "nvmlDeviceGetCurrentClocksEventReasons": 0x20,  # SW thermal slowdown
        "nvmlDeviceGetPowerUsage": 690_000,
        "nvmlDeviceGetEnforcedPowerLimit": 700_000,
        "nvmlDeviceGetUtilizationRates": SimpleNamespace(gpu=100, memory=80),
        "nvmlDeviceGetMigMode": [0, 0],
        "nvmlDeviceGetEccMode": [1, 1],
        "nvmlDeviceGetTotalEccErrors": lambda kind, counter: {0: 12, 1: 0}[kind],
        "nvmlDeviceGetRemappedRows": (0, 0, 0, 0),
    }
    if peer_bus is not None:
        device.update(nvlinks({link: pci(peer_bus, 0x2330) for link in range(18)}))
    return device


def a100_mig_in_x8_slot(bus: int = 0x41) -> dict[str, Any]:
    """An A100 SXM4 80GB with MIG enabled, in a slot that gives it PCIe gen4 x8."""
    return {
        "nvmlDeviceGetName": "NVIDIA A100-SXM4-80GB",
        "nvmlDeviceGetUUID": "GPU-a100-mig",
        "nvmlDeviceGetPciInfo": pci(bus, 0x20B2),
        "nvmlDeviceGetCudaComputeCapability": (8, 0),
        "nvmlDeviceGetMemoryInfo": memory(81920),
        "nvmlDeviceGetMemoryBusWidth": 5120,
        "nvmlDeviceGetMaxClockInfo": clocks(1410, 1593),
        "nvmlDeviceGetCurrPcieLinkGeneration": 4,
        "nvmlDeviceGetCurrPcieLinkWidth": 8,
        "nvmlDeviceGetMaxPcieLinkGeneration": 4,
        "nvmlDeviceGetMaxPcieLinkWidth": 8,
        "nvmlDeviceGetEnforcedPowerLimit": 400_000,
        "nvmlDeviceGetMigMode": [1, 1],
        "nvmlDeviceGetEccMode": [1, 1],
        "nvmlDeviceGetTotalEccErrors": lambda kind, counter: 0,
        "nvmlDeviceGetRemappedRows": (2, 0, 1, 0),  # a remap waits for a reset
    }


def rtx_3090_reporting_little() -> dict[str, Any]:
    """A GeForce RTX 3090 on a driver that answers only name and memory (everything else
    NOT_SUPPORTED, or FUNCTION_NOT_FOUND for the newer calls)."""
    function_not_found = Fail(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    return {
        "nvmlDeviceGetName": "NVIDIA GeForce RTX 3090",
        "nvmlDeviceGetMemoryInfo": memory(24576),
        "nvmlDeviceGetMemoryBusWidth": function_not_found,
        "nvmlDeviceGetCurrentClocksEventReasons": function_not_found,
        "nvmlDeviceGetCurrentClocksThrottleReasons": 0x40,  # HW thermal, via the old call
    }
