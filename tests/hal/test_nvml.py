"""The NVML backend on scripted devices (the real pynvml module, its functions patched): records,
unsupported calls, lost GPUs, and the Node documents they become, checked field by field."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest

from gridplace.hal import BackendUnavailable, NodeOptions, build_inventory
from gridplace.hal.match import NVML_DATA_RATE_MULTIPLIER
from gridplace.hal.nvml import NvmlBackend
from gridplace.specs import ClaimLevel, Interconnect, builtin_catalog
from tests.hal.nvml_fakes import (
    GPU_IS_LOST,
    MIB,
    Fail,
    ScriptedNvml,
    a100_mig_in_x8_slot,
    h100_sxm,
    rtx_3090_reporting_little,
    rtx_4090,
)

OPTIONS = NodeOptions(name="box-1", region="eu-west", provider="casa", price_per_hour=0.4)


def read(monkeypatch: pytest.MonkeyPatch, devices: list[dict[str, Any]]) -> list[Any]:
    ScriptedNvml(monkeypatch, devices)
    with NvmlBackend() as nvml:
        return nvml.devices()


def node_document(monkeypatch: pytest.MonkeyPatch, devices: list[dict[str, Any]]) -> Any:
    return build_inventory(read(monkeypatch, devices), OPTIONS).node.to_yaml_dict()


def test_rtx_4090_record_has_every_field_nvml_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    (device,) = read(monkeypatch, [rtx_4090(bus=0x17)])
    assert device.name == "NVIDIA GeForce RTX 4090"
    assert device.uuid == "GPU-4090-23"
    assert device.pci_bus_id == "0000:17:00.0"
    assert device.pci_device_id == "0x2684"  # upper 16 bits of pciDeviceId
    assert device.memory_total_bytes == 24564 * MIB
    assert device.memory_free_bytes == (24564 - 1200) * MIB
    assert device.memory_bus_width_bits == 384
    assert device.max_memory_clock_mhz == 10501
    assert device.max_sm_clock_mhz == 3105
    assert (device.pcie_current.generation, device.pcie_current.lanes) == (1, 16)
    assert (device.pcie_max.generation, device.pcie_max.lanes) == (4, 16)
    assert device.compute_capability == "8.9"
    assert device.shader_cores == 16384
    assert device.power_limit_watts == 450.0
    assert device.partitioned is None and device.ecc_enabled is None  # GeForce: not supported
    assert device.peers == ()
    assert device.healthy and device.problems == ()
    assert {"migMode", "eccMode", "nvlink", "remappedRows"} <= set(device.unsupported)


def test_rtx_4090_node_document(monkeypatch: pytest.MonkeyPatch) -> None:
    document = node_document(monkeypatch, [rtx_4090()])
    assert document["kind"] == "Node"
    assert document["metadata"]["name"] == "box-1"
    spec = document["spec"]
    # Idle PCIe gen 1 is not an override: the link's max (gen4 x16) matches the catalog.
    assert spec["gpus"] == [{"model": "rtx-4090", "count": 1}]
    assert spec["interconnect"] == "pcie"
    assert spec["claims"] == "probed"
    assert (spec["region"], spec["provider"], spec["pricePerHour"]) == ("eu-west", "casa", 0.4)
    assert document["status"]["healthy"] is True


def test_h100_sxm_pair_over_nvlink(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = read(monkeypatch, [h100_sxm(0x18, peer_bus=0x2A), h100_sxm(0x2A, peer_bus=0x18)])
    first = devices[0]
    assert first.compute_capability == "9.0"
    assert first.ecc_enabled is True
    assert (first.ecc_corrected_errors, first.ecc_uncorrected_errors) == (12, 0)
    assert (first.remapped_rows_correctable, first.remap_pending, first.remap_failed) == (
        0,
        False,
        False,
    )
    assert first.partitioned is False
    assert len(first.peers) == 1
    assert first.peers[0].kind is Interconnect.NVLINK
    assert first.peers[0].peer_pci_bus_id == "0000:2a:00.0"
    assert first.peers[0].links == 18
    inventory = build_inventory(devices, OPTIONS)
    spec = inventory.node.to_yaml_dict()["spec"]
    assert spec["gpus"] == [{"model": "h100-sxm", "count": 2}]
    assert spec["interconnect"] == "nvlink"
    # Bandwidth from bus x clock: 5120 / 8 x 2619 x 2 / 1000 GB/s, within 1 % of the catalog.
    derived = inventory.matches[0].derived_bandwidth_gbps
    assert derived == pytest.approx(5120 / 8 * 2619 * NVML_DATA_RATE_MULTIPLIER / 1000)
    catalog = builtin_catalog().gpus["h100-sxm"].memory_bandwidth_gbps
    assert derived == pytest.approx(catalog, rel=0.01)


def test_a100_with_mig_in_an_x8_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    (device,) = read(monkeypatch, [a100_mig_in_x8_slot()])
    assert device.partitioned is True and device.partition_mode == "MIG"
    assert device.remap_pending is True and device.healthy  # pending: reset needed, still usable
    assert any("pending" in problem for problem in device.problems)
    document = build_inventory([device], OPTIONS).node.to_yaml_dict()
    (group,) = document["spec"]["gpus"]
    assert group["model"] == "a100-sxm-80gb"
    assert group["pcie"] == {"generation": 4, "lanes": 8}  # the slot, not the catalog's x16
    assert "memoryGiB" not in group  # 80 GiB measured, 80 catalogued
    assert "MIG" in document["status"]["message"]


def test_card_answering_not_supported_still_becomes_a_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (device,) = read(monkeypatch, [rtx_3090_reporting_little()])
    assert device.healthy
    assert device.pci_device_id is None and device.memory_bus_width_bits is None
    assert device.max_memory_clock_mhz is None and device.compute_capability is None
    assert {"pciInfo", "memoryBusWidth", "maxMemoryClock", "computeCapability"} <= set(
        device.unsupported
    )
    document = build_inventory([device], OPTIONS).node.to_yaml_dict()
    assert document["spec"]["gpus"] == [{"model": "rtx-3090", "count": 1}]  # matched by name


def test_old_driver_throttle_reasons_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    ScriptedNvml(monkeypatch, [rtx_3090_reporting_little()])
    with NvmlBackend(clock=lambda: 1000.0) as nvml:
        (sample,) = nvml.sample()
    assert sample.throttle_reasons == 0x40
    assert sample.thermal_throttled is True and sample.power_throttled is False


def test_lost_gpu_is_left_out_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = rtx_4090(bus=2) | {"nvmlDeviceGetMemoryInfo": GPU_IS_LOST}
    devices = read(monkeypatch, [rtx_4090(bus=1), lost])
    assert devices[0].healthy
    assert not devices[1].healthy
    assert devices[1].name == "NVIDIA GeForce RTX 4090"  # read before it went away
    assert devices[1].memory_total_bytes is None
    assert any("GPU is lost" in problem for problem in devices[1].problems)
    inventory = build_inventory(devices, OPTIONS)
    document = inventory.node.to_yaml_dict()
    assert document["spec"]["gpus"] == [{"model": "rtx-4090", "count": 1}]
    assert document["status"]["healthy"] is True
    assert "left out GPU 1" in document["status"]["message"]
    assert inventory.excluded == [devices[1]]


def test_gpu_lost_at_handle_and_in_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [rtx_4090(bus=1), {"nvmlDeviceGetHandleByIndex": GPU_IS_LOST}]
    ScriptedNvml(monkeypatch, devices)
    with NvmlBackend(clock=lambda: 42.0) as nvml:
        records = nvml.devices()
        samples = nvml.sample()
    assert [r.healthy for r in records] == [True, False]
    assert records[1].name == "NVIDIA GPU 1"
    assert [s.healthy for s in samples] == [True, False]
    assert samples[0].timestamp_s == 42.0


def test_every_gpu_lost_gives_an_unhealthy_node(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = rtx_4090() | {"nvmlDeviceGetMaxClockInfo": GPU_IS_LOST}
    document = node_document(monkeypatch, [lost])
    assert document["status"]["healthy"] is False
    assert document["spec"]["gpus"] == [{"model": "rtx-4090", "count": 1}]


def test_unexpected_error_is_a_problem_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    timeout = rtx_4090() | {"nvmlDeviceGetMemoryBusWidth": Fail(pynvml.NVML_ERROR_TIMEOUT)}
    (device,) = read(monkeypatch, [timeout])
    assert device.healthy
    assert device.memory_bus_width_bits is None
    assert any(problem.startswith("memoryBusWidth") for problem in device.problems)


def test_telemetry_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    ScriptedNvml(monkeypatch, [rtx_4090(), h100_sxm(0x18)])
    with NvmlBackend(clock=lambda: 1_700_000_000.0) as nvml:
        geforce, hopper = nvml.sample()
    assert geforce.temperature_c == 71
    assert (geforce.sm_clock_mhz, geforce.max_sm_clock_mhz) == (2520, 3105)
    assert geforce.power_watts == 431.0 and geforce.power_limit_watts == 450.0
    assert geforce.utilization_percent == 97
    assert (geforce.pcie_tx_kbps, geforce.pcie_rx_kbps) == (1500, 1501)
    assert geforce.power_throttled is True and geforce.thermal_throttled is False
    assert hopper.thermal_throttled is True and hopper.power_throttled is False
    assert hopper.throttled is True
    assert hopper.clock_ratio == pytest.approx(1755 / 1980)


def test_init_and_shutdown_in_the_context_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = ScriptedNvml(monkeypatch, [rtx_4090()])
    with NvmlBackend() as nvml:
        assert scripted.init_calls == 1
        nvml.devices()
    assert scripted.shutdown_calls == 1


def test_init_failure_is_backend_unavailable_from_the_nvml_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing_library() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", missing_library)
    with pytest.raises(BackendUnavailable) as raised, NvmlBackend():
        pass
    assert isinstance(raised.value.__cause__, pynvml.NVMLError)
    assert "Not Found" in raised.value.message


def test_benchmarked_claims_need_every_gpu_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    from gridplace.hal import Benchmark

    devices = read(monkeypatch, [rtx_4090(bus=1), rtx_4090(bus=2)])
    measured = Benchmark(memory_bandwidth_gbps=900.0, matmul_tflops=150.0)
    one = build_inventory(devices, OPTIONS, benchmarks={0: measured}).node.spec.claims
    both = build_inventory(devices, OPTIONS, benchmarks={0: measured, 1: measured}).node.spec.claims
    assert (one, both) == (ClaimLevel.PROBED, ClaimLevel.BENCHMARKED)
