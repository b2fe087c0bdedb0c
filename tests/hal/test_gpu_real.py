"""On a machine with an NVIDIA GPU: the NVML backend reads real devices and they match the catalog.
Skipped where NVML cannot initialise (no driver, no GPU), which is every CI machine."""

from __future__ import annotations

import pytest

from gridplace.hal import BackendUnavailable, NodeOptions, build_inventory, match_device
from gridplace.hal.nvml import NvmlBackend
from gridplace.specs import builtin_catalog

pytestmark = pytest.mark.gpu


@pytest.fixture
def nvml() -> NvmlBackend:
    backend = NvmlBackend()
    try:
        backend.open()
    except BackendUnavailable as error:
        pytest.skip(f"no NVML here: {error.message}")
    if backend.device_count() == 0:
        backend.close()
        pytest.skip("NVML sees no GPU")
    return backend


def test_real_devices_are_read_and_match_the_catalog(nvml: NvmlBackend) -> None:
    try:
        devices = nvml.devices()
        samples = nvml.sample()
    finally:
        nvml.close()
    assert devices and all(d.healthy for d in devices), [d.problems for d in devices]
    catalog = builtin_catalog()
    for device in devices:
        assert device.name and device.uuid and device.pci_device_id
        assert device.memory_total_bytes and device.memory_total_bytes > 0
        assert device.compute_capability is not None
        match = match_device(device, catalog)
        if match.derived:
            continue  # a GPU the catalog lacks: nothing to compare with
        assert match.derived_bandwidth_gbps is not None
        assert match.derived_bandwidth_gbps == pytest.approx(
            match.spec.memory_bandwidth_gbps, rel=0.10
        )
        assert device.compute_capability == match.spec.compute_capability
    assert all(s.temperature_c is not None and s.healthy for s in samples)
    node = build_inventory(devices, NodeOptions(name="gpu-check")).node
    assert node.spec.gpu_count == len(devices)
