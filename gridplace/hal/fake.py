"""The fake backend: a fleet of GPUs described in YAML, with telemetry scripted over time.

Owns: the fleet file format and replaying it as ``DeviceInfo`` / ``Telemetry``.
Must not: touch a real GPU or a vendor library. Every test without a GPU, and the agent in tests,
runs on this backend.

A fleet file (camelCase like every gridplace document; unknown fields are errors)::

    kind: FakeFleet
    interconnect: nvlink          # optional: pcie (default) | nvlink | xgmi, between all GPUs
    devices:
      - name: NVIDIA GeForce RTX 4090
        vendor: nvidia
        count: 2                  # this many identical GPUs
        pciDeviceId: "0x2684"
        memoryGiB: 24
        memoryBusWidthBits: 384
        maxMemoryClockMhz: 10501
        maxSmClockMhz: 2520
        pcie: {generation: 4, lanes: 16}
        computeCapability: "8.9"
        powerLimitWatts: 450
        telemetry: {temperatureC: 62, smClockMhz: 2520, powerWatts: 320, utilizationPercent: 90}
        script:                   # from each step's minute on, its fields replace the baseline
          - {atMinute: 10, thermalThrottled: true, smClockMhz: 1900, temperatureC: 87}
        cycleMinutes: 1440        # optional: the script repeats (a daily pattern)
        lostAtMinute: 30          # optional: the GPU falls off the bus at minute 30

Minutes count from ``open()`` on the backend's clock (injectable, so tests step time by hand).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from gridplace.hal.backend import ManagedBackend
from gridplace.hal.device import BYTES_PER_GIB, DeviceInfo, PCIeState, PeerLink, Telemetry
from gridplace.hal.errors import BackendUnavailable, FleetError
from gridplace.specs import Interconnect, SpecError, Vendor
from gridplace.specs.common import StrictModel
from gridplace.specs.yamlsafe import dotted_path, parse_yaml_text

BACKEND = "fake"


class FakeLink(StrictModel):
    generation: int = Field(ge=1, le=6)
    lanes: int = Field(ge=1, le=32)


class TelemetryState(StrictModel):
    """Telemetry fields; in a script step, only the ones given change."""

    temperature_c: float | None = Field(default=None, ge=-50, le=150)
    hotspot_temperature_c: float | None = Field(default=None, ge=-50, le=150)
    sm_clock_mhz: float | None = Field(default=None, ge=0)
    memory_clock_mhz: float | None = Field(default=None, ge=0)
    power_watts: float | None = Field(default=None, ge=0)
    utilization_percent: float | None = Field(default=None, ge=0, le=100)
    memory_used_gib: float | None = Field(default=None, ge=0)
    thermal_throttled: bool | None = None
    power_throttled: bool | None = None


class ScriptStep(TelemetryState):
    at_minute: float = Field(ge=0, description="Minute (since open) this step takes effect.")


class FakeDevice(StrictModel):
    """One kind of GPU in the fleet, ``count`` times."""

    name: str = Field(min_length=1, max_length=200)
    vendor: Vendor = Vendor.NVIDIA
    count: int = Field(default=1, ge=1, le=64)
    pci_device_id: str | None = Field(default=None, pattern=r"^0x[0-9a-f]{4}$")
    memory_gib: float = Field(gt=0, le=4096)
    memory_type: str | None = None
    memory_bus_width_bits: int | None = Field(default=None, gt=0)
    max_memory_clock_mhz: float | None = Field(default=None, gt=0)
    reported_memory_bandwidth_gbps: float | None = Field(default=None, gt=0)
    max_sm_clock_mhz: float | None = Field(default=None, gt=0)
    pcie: FakeLink | None = None
    pcie_max: FakeLink | None = None
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    gfx_target: str | None = None
    shader_cores: int | None = Field(default=None, gt=0)
    compute_units: int | None = Field(default=None, gt=0)
    power_limit_watts: float | None = Field(default=None, gt=0)
    partitioned: bool | None = None
    ecc_enabled: bool | None = None
    ecc_uncorrected_errors: int | None = Field(default=None, ge=0)
    unsupported: list[str] = Field(default_factory=list)
    telemetry: TelemetryState = Field(default_factory=TelemetryState)
    script: list[ScriptStep] = Field(default_factory=list)
    cycle_minutes: float | None = Field(default=None, gt=0)
    lost_at_minute: float | None = Field(default=None, ge=0)


class FakeFleet(StrictModel):
    """A fleet file."""

    kind: Literal["FakeFleet"] = "FakeFleet"
    interconnect: Interconnect = Interconnect.PCIE
    devices: list[FakeDevice] = Field(min_length=0, max_length=64)


def load_fleet(text: str, source: str = "<fleet>") -> FakeFleet:
    """Parse and validate a fleet description; raises FleetError listing every problem."""
    try:
        documents = parse_yaml_text(text, source)
    except SpecError as error:
        raise FleetError(source, [issue.message for issue in error.issues]) from error
    if len(documents) != 1:
        raise FleetError(source, [f"expected one YAML document, found {len(documents)}"])
    try:
        return FakeFleet.model_validate(documents[0].data)
    except ValidationError as error:
        issues = [
            f"{dotted_path(tuple(item['loc'])) or '<top>'}: {item['msg']}"
            for item in error.errors(include_url=False)
        ]
        raise FleetError(source, issues) from error


def _bus_id(index: int) -> str:
    return f"0000:{index + 1:02x}:00.0"


class FakeBackend(ManagedBackend):
    """Replays a ``FakeFleet``. ``clock`` returns seconds; minutes count from ``open``."""

    name = BACKEND

    def __init__(self, fleet: FakeFleet, clock: Callable[[], float] = time.time) -> None:
        self.fleet = fleet
        self._clock = clock
        self._start_s: float | None = None
        # One entry per GPU: its description and its index in the node.
        self._slots = [device for device in fleet.devices for _ in range(device.count)]

    @classmethod
    def from_file(cls, path: Path, clock: Callable[[], float] = time.time) -> FakeBackend:
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise FleetError(str(path), [f"cannot read: {error}"]) from error
        return cls(load_fleet(text, str(path)), clock)

    def open(self) -> None:
        if self._start_s is None:  # opening twice must not restart the script
            self._start_s = self._clock()

    def close(self) -> None:
        self._start_s = None

    def minutes(self) -> float:
        """Minutes since ``open``."""
        if self._start_s is None:
            raise BackendUnavailable("fake backend used before open()", BACKEND)
        return (self._clock() - self._start_s) / 60.0

    def devices(self) -> list[DeviceInfo]:
        minute = self.minutes()
        return [self._device(index, slot, minute) for index, slot in enumerate(self._slots)]

    def sample(self) -> list[Telemetry]:
        now_s = self._clock()
        minute = self.minutes()
        return [self._sample(index, slot, now_s, minute) for index, slot in enumerate(self._slots)]

    def _peers(self, index: int) -> tuple[PeerLink, ...]:
        if self.fleet.interconnect is Interconnect.PCIE:
            return ()
        return tuple(
            PeerLink(kind=self.fleet.interconnect, peer_pci_bus_id=_bus_id(other))
            for other in range(len(self._slots))
            if other != index
        )

    def _device(self, index: int, slot: FakeDevice, minute: float) -> DeviceInfo:
        lost = slot.lost_at_minute is not None and minute >= slot.lost_at_minute
        total = int(slot.memory_gib * BYTES_PER_GIB)
        used = int((_state(slot, minute).memory_used_gib or 0.0) * BYTES_PER_GIB)
        pcie = PCIeState(slot.pcie.generation, slot.pcie.lanes) if slot.pcie else None
        pcie_max = (
            PCIeState(slot.pcie_max.generation, slot.pcie_max.lanes) if slot.pcie_max else pcie
        )
        return DeviceInfo(
            index=index,
            vendor=slot.vendor,
            backend=BACKEND,
            name=slot.name,
            uuid=f"GPU-fake-{index:04d}",
            pci_bus_id=_bus_id(index),
            pci_device_id=slot.pci_device_id,
            memory_total_bytes=total,
            memory_free_bytes=max(total - used, 0),
            memory_type=slot.memory_type,
            memory_bus_width_bits=slot.memory_bus_width_bits,
            max_memory_clock_mhz=slot.max_memory_clock_mhz,
            reported_memory_bandwidth_gbps=slot.reported_memory_bandwidth_gbps,
            max_sm_clock_mhz=slot.max_sm_clock_mhz,
            pcie_current=pcie or PCIeState(None, None),
            pcie_max=pcie_max or PCIeState(None, None),
            compute_capability=slot.compute_capability,
            gfx_target=slot.gfx_target,
            shader_cores=slot.shader_cores,
            compute_units=slot.compute_units,
            power_limit_watts=slot.power_limit_watts,
            partitioned=slot.partitioned,
            partition_mode="MIG" if slot.partitioned and slot.vendor is Vendor.NVIDIA else None,
            ecc_enabled=slot.ecc_enabled,
            ecc_uncorrected_errors=slot.ecc_uncorrected_errors,
            peers=self._peers(index),
            healthy=not lost,
            problems=(f"GPU is lost (scripted at minute {slot.lost_at_minute:g})",) if lost else (),
            unsupported=tuple(slot.unsupported),
        )

    def _sample(self, index: int, slot: FakeDevice, now_s: float, minute: float) -> Telemetry:
        if slot.lost_at_minute is not None and minute >= slot.lost_at_minute:
            return Telemetry(device_index=index, timestamp_s=now_s, healthy=False)
        state = _state(slot, minute)
        used = state.memory_used_gib
        return Telemetry(
            device_index=index,
            timestamp_s=now_s,
            uuid=f"GPU-fake-{index:04d}",
            temperature_c=state.temperature_c,
            hotspot_temperature_c=state.hotspot_temperature_c,
            sm_clock_mhz=state.sm_clock_mhz,
            max_sm_clock_mhz=slot.max_sm_clock_mhz,
            memory_clock_mhz=state.memory_clock_mhz,
            power_watts=state.power_watts,
            power_limit_watts=slot.power_limit_watts,
            utilization_percent=state.utilization_percent,
            memory_used_bytes=int(used * BYTES_PER_GIB) if used is not None else None,
            thermal_throttled=state.thermal_throttled,
            power_throttled=state.power_throttled,
        )


def _state(slot: FakeDevice, minute: float) -> TelemetryState:
    """The baseline with every script step due by ``minute`` applied, in order."""
    if slot.cycle_minutes is not None:
        minute %= slot.cycle_minutes
    fields = slot.telemetry.model_dump()
    for step in sorted(slot.script, key=lambda s: s.at_minute):
        if step.at_minute > minute:
            break
        fields.update(step.model_dump(exclude={"at_minute"}, exclude_unset=True))
    return TelemetryState.model_validate(fields)
