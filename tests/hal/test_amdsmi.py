"""The amdsmi backend against an injected ``amdsmi`` module: MI300X hive and RX 7900 XTX, their
Node documents field by field, and amdsmi's import failing the way it does without ROCm."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gridplace.hal import BackendUnavailable, NodeOptions, build_inventory
from gridplace.hal.amdsmi_backend import AmdSmiBackend
from gridplace.hal.match import AMD_DATA_RATE_MULTIPLIERS
from gridplace.specs import Interconnect
from tests.hal.amdsmi_fake import NOT_SUPPORTED, Status, build_module, mi300x, rx_7900_xtx

OPTIONS = NodeOptions(name="fra-mi300x-1", region="eu-central", provider="dc", price_per_hour=20)
MIB = 1024**2


def install(monkeypatch: pytest.MonkeyPatch, gpus: list[dict[str, Any]]) -> ModuleType:
    module = build_module(gpus)
    monkeypatch.setitem(sys.modules, "amdsmi", module)
    return module


def read(monkeypatch: pytest.MonkeyPatch, gpus: list[dict[str, Any]]) -> list[Any]:
    install(monkeypatch, gpus)
    with AmdSmiBackend() as smi:
        return smi.devices()


def test_mi300x_record(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = read(monkeypatch, [mi300x(i, hive_size=8) for i in range(8)])
    first = devices[0]
    assert first.name == "AMD Instinct MI300X"
    assert first.pci_device_id == "0x74a1"
    assert first.pci_bus_id == "0000:10:00.0"
    assert first.gfx_target == "gfx942"
    assert first.compute_units == 304
    assert first.memory_type == "HBM3"
    assert first.memory_bus_width_bits == 8192
    assert first.reported_memory_bandwidth_gbps == 5300
    assert first.memory_total_bytes == 196592 * MIB
    assert first.memory_free_bytes == (196592 - 2048) * MIB
    assert (first.max_sm_clock_mhz, first.max_memory_clock_mhz) == (2100, 1300)
    assert (first.pcie_max.generation, first.pcie_max.lanes) == (5, 16)  # 32000 MT/s = gen5
    assert first.power_limit_watts == 750.0  # power_cap is in microwatts
    assert (first.ecc_corrected_errors, first.ecc_uncorrected_errors) == (3, 0)
    assert first.retired_pages == 0
    assert first.partitioned is False and first.partition_mode == "SPX"
    assert {p.peer_pci_bus_id for p in first.peers} == {
        f"0000:{0x10 + i:02x}:00.0" for i in range(1, 8)
    }
    assert all(p.kind is Interconnect.XGMI for p in first.peers)
    assert first.healthy


def test_mi300x_hive_node_document(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = read(monkeypatch, [mi300x(i, hive_size=8) for i in range(8)])
    document = build_inventory(devices, OPTIONS).node.to_yaml_dict()
    spec = document["spec"]
    assert spec["gpus"] == [{"model": "mi300x", "count": 8}]
    assert spec["interconnect"] == "xgmi"
    assert spec["claims"] == "probed"
    assert (spec["region"], spec["provider"], spec["pricePerHour"]) == ("eu-central", "dc", 20.0)


def test_partial_xgmi_hive_is_described_as_pcie(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = read(monkeypatch, [mi300x(i, hive_size=2) for i in range(4)])
    document = build_inventory(devices, OPTIONS).node.to_yaml_dict()
    assert document["spec"]["interconnect"] == "pcie"
    assert "only some GPU pairs" in document["status"]["message"]


def test_mi300x_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [mi300x(0, hive_size=1)])
    with AmdSmiBackend(clock=lambda: 5.0) as smi:
        (sample,) = smi.sample()
    assert sample.temperature_c == 48  # no edge sensor on MI300X: the hotspot stands in
    assert sample.memory_temperature_c == 41
    assert sample.power_watts == 612  # current_socket_power; average is "N/A"
    assert sample.power_limit_watts == 750
    assert sample.utilization_percent == 99
    assert sample.memory_used_bytes == 2048 * MIB
    assert sample.power_throttled is True and sample.thermal_throttled is False
    assert sample.clock_ratio == 1.0


def test_rx_7900_xtx_record_and_node(monkeypatch: pytest.MonkeyPatch) -> None:
    (device,) = read(monkeypatch, [rx_7900_xtx()])
    assert device.pci_device_id == "0x744c"  # an int device id is formatted like a hex one
    assert device.memory_type == "GDDR6"
    assert device.reported_memory_bandwidth_gbps is None  # "N/A"
    assert (device.pcie_max.generation, device.pcie_current.generation) == (4, 1)
    assert device.partitioned is None  # not supported on this card
    inventory = build_inventory([device], OPTIONS)
    (match,) = inventory.matches
    assert match.matched_by == "name"
    # Derived from bus x MCLK x the GDDR6 multiplier: 384 / 8 x 1250 x 16 / 1000 = 960 GB/s.
    assert match.derived_bandwidth_gbps == pytest.approx(
        384 / 8 * 1250 * AMD_DATA_RATE_MULTIPLIERS["GDDR6"] / 1000
    )
    assert match.derived_bandwidth_gbps == pytest.approx(match.spec.memory_bandwidth_gbps)
    document = inventory.node.to_yaml_dict()
    assert document["spec"]["gpus"] == [{"model": "rx-7900-xtx", "count": 1}]
    assert document["spec"]["interconnect"] == "pcie"


def test_rx_7900_xtx_telemetry_uses_the_bare_throttle_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    install(monkeypatch, [rx_7900_xtx()])
    with AmdSmiBackend() as smi:
        (sample,) = smi.sample()
    assert sample.temperature_c == 52  # edge
    assert sample.hotspot_temperature_c == 70
    assert sample.power_watts == 280  # average_socket_power on RDNA
    assert sample.thermal_throttled is True and sample.throttle_reasons == 1


def test_unsupported_calls_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = rx_7900_xtx() | {"amdsmi_get_gpu_vram_info": Status(NOT_SUPPORTED)}
    (device,) = read(monkeypatch, [gpu])
    assert device.memory_type is None and device.memory_bus_width_bits is None
    assert "vramInfo" in device.unsupported
    assert device.memory_total_bytes == 24560 * MIB  # still known from vram usage
    assert device.healthy


def test_driver_gone_marks_the_device_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = rx_7900_xtx() | {"amdsmi_get_gpu_vram_usage": Status(34)}  # DRIVER_NOT_LOADED
    (device,) = read(monkeypatch, [gpu])
    assert not device.healthy
    assert device.name == "Radeon RX 7900 XTX"
    assert any("GPU is lost" in problem for problem in device.problems)


def test_init_and_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    module = install(monkeypatch, [rx_7900_xtx()])
    with AmdSmiBackend() as smi:
        assert len(smi.devices()) == 1
    assert module.state == {"init": 1, "shutdown": 1}


def test_import_raising_key_error_means_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # What `import amdsmi` does on a machine without ROCm: its module body reads ROCm's
    # environment and raises KeyError, not ImportError.
    (tmp_path / "amdsmi.py").write_text("import os\nos.environ['ROCM_PATH_FOR_TEST_ONLY']\n")
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(BackendUnavailable) as raised, AmdSmiBackend():
        pass
    assert isinstance(raised.value.__cause__, KeyError)
    assert "KeyError" in raised.value.message
    monkeypatch.delitem(sys.modules, "amdsmi", raising=False)


def test_auto_falls_back_to_amdsmi_when_nvml_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynvml

    from gridplace.hal import BackendKind, open_backend

    def no_driver() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(pynvml, "nvmlInit", no_driver)
    module = install(monkeypatch, [rx_7900_xtx()])
    with open_backend(BackendKind.AUTO) as backend:
        assert backend.name == "amdsmi"
        assert [d.name for d in backend.devices()] == ["Radeon RX 7900 XTX"]
    assert module.state == {"init": 1, "shutdown": 1}  # opened once, though entered after open
