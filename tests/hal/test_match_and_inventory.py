"""Catalog matching (PCI id, name), measured-vs-catalog overrides, derived models for unknown GPUs,
node building (interconnect, placeholders, bad options) and the micro-benchmark's refusal."""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

import pytest

from gridplace.hal import (
    Benchmark,
    BenchmarkUnavailable,
    DeviceInfo,
    InventoryError,
    NodeOptions,
    PCIeState,
    PeerLink,
    build_inventory,
    match_device,
    microbench,
)
from gridplace.hal.match import (
    architecture_of,
    derive_gpu_model,
    derived_bandwidth_gbps,
    estimated_fp16_tflops,
)
from gridplace.specs import (
    Architecture,
    Interconnect,
    Vendor,
    build_bundle,
    builtin_catalog,
)
from gridplace.specs.loader import LoadedDocument, parse_document
from gridplace.specs.yamlsafe import ParsedDocument

GIB = 1024**3
CATALOG = builtin_catalog()


def nvidia(name: str, **fields: Any) -> DeviceInfo:
    return DeviceInfo(index=fields.pop("index", 0), vendor=Vendor.NVIDIA, backend="test",
                      name=name, **fields)  # fmt: skip


H100 = nvidia(
    "NVIDIA H100 80GB HBM3",
    pci_device_id="0x2330",
    memory_total_bytes=81559 * 1024**2,
    memory_bus_width_bits=5120,
    max_memory_clock_mhz=2619,
    max_sm_clock_mhz=1980,
    pcie_max=PCIeState(5, 16),
    compute_capability="9.0",
    power_limit_watts=700,
)
# Not in any catalog: a Blackwell workstation card with a made-up name.
UNKNOWN = nvidia(
    "NVIDIA RTX PRO 9999 Prototype",
    pci_device_id="0xffff",
    memory_total_bytes=96 * GIB,
    memory_bus_width_bits=512,
    max_memory_clock_mhz=14001,
    max_sm_clock_mhz=2600,
    compute_units=188,
    pcie_max=PCIeState(5, 16),
    compute_capability="12.0",
    power_limit_watts=600,
)


def test_pci_id_wins_over_a_conflicting_name() -> None:
    renamed = replace(H100, name="NVIDIA GeForce RTX 4090")
    match = match_device(renamed, CATALOG)
    assert (match.gpu_id, match.matched_by) == ("h100-sxm", "pci-id")
    assert any("the PCI id wins" in note for note in match.notes)


def test_name_matches_when_pci_id_is_unknown() -> None:
    match = match_device(replace(H100, pci_device_id=None), CATALOG)
    assert (match.gpu_id, match.matched_by) == ("h100-sxm", "name")


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({"memory_total_bytes": 40 * GIB}, "memory_gib_override", 40.0),
        ({"max_memory_clock_mhz": 1593}, "bandwidth_override_gbps", round(640 * 1593 * 2 / 1e3, 1)),
        ({"pcie_max": PCIeState(4, 16)}, "pcie_override", (4, 16)),
        ({"pcie_max": PCIeState(5, 8)}, "pcie_override", (5, 8)),
    ],
)  # fmt: skip
def test_what_differs_from_the_catalog_becomes_an_override(
    changes: dict[str, Any], field: str, expected: Any
) -> None:
    assert match_device(H100, CATALOG).notes == ()  # the unchanged card: nothing to override
    match = match_device(replace(H100, **changes), CATALOG)
    value = getattr(match, field)
    if field == "pcie_override":
        value = (value.generation, value.lanes)
    assert value == expected
    assert match.notes


def test_a_faster_measurement_never_raises_the_catalog() -> None:
    match = match_device(replace(H100, max_memory_clock_mhz=4000), CATALOG)
    assert match.bandwidth_override_gbps is None


def test_unknown_gpu_gets_a_derived_model() -> None:
    match = match_device(UNKNOWN, CATALOG)
    assert match.derived and match.gpu_id == "derived-nvidia-rtx-pro-9999-prototype"
    spec = match.spec
    assert spec.derived is True
    assert spec.architecture is Architecture.BLACKWELL
    assert spec.memory_gib == 96
    assert spec.memory_bandwidth_gbps == pytest.approx(512 / 8 * 14001 * 2 / 1000, abs=0.1)
    # GB20x workstation: 1024 FP16 FLOPs per clock per SM x 188 SMs x 0.8 of 2.6 GHz.
    assert spec.tensor_tflops.fp16 == pytest.approx(1024 * 188 * 0.8 * 2600e6 / 1e12, abs=0.1)
    assert spec.tensor_tflops.fp8 == pytest.approx(2 * spec.tensor_tflops.fp16, abs=0.2)
    assert spec.tdp_watts == 600
    assert (spec.pcie.generation, spec.pcie.lanes) == (5, 16)
    assert spec.pci_device_ids == ["0xffff"]
    assert any("estimated" in source for source in spec.sources)


def test_benchmark_figures_replace_estimates_in_derived_models() -> None:
    measured = Benchmark(memory_bandwidth_gbps=1500.0, matmul_tflops=300.0)
    spec = derive_gpu_model(UNKNOWN, measured)
    assert (spec.memory_bandwidth_gbps, spec.tensor_tflops.fp16) == (1500.0, 300.0)
    assert not any("tensor" in source for source in spec.sources)


def test_underivable_unknown_gpu_says_what_is_missing() -> None:
    bare = nvidia("Mystery Accelerator", memory_total_bytes=16 * GIB)
    with pytest.raises(InventoryError) as raised:
        match_device(bare, CATALOG)
    text = " ".join(raised.value.reasons)
    assert "memory bandwidth unknown" in text and "tensor throughput unknown" in text
    assert "--benchmark" in text


@pytest.mark.parametrize(
    ("gpu_id", "capability", "gfx", "units", "clock_mhz", "cores"),
    [
        # max SM clocks as the drivers report them (H100 read on a real one: 1980 MHz)
        ("h100-sxm", "9.0", None, 132, 1980, None),
        ("a100-sxm-80gb", "8.0", None, None, 1410, 6912),
        ("rtx-4090", "8.9", None, 128, 3105, None),
        ("mi300x", None, "gfx942", 304, 2100, None),
        ("rx-7900-xtx", None, "gfx1100", 96, 2500, None),
    ],
)
def test_tensor_estimate_is_conservative_and_close_to_the_catalog(
    gpu_id: str, capability: str | None, gfx: str | None, units: int | None, clock_mhz: int,
    cores: int | None,
) -> None:  # fmt: skip
    spec = CATALOG.gpus[gpu_id]
    device = DeviceInfo(
        index=0, vendor=spec.vendor, backend="test", name=spec.reported_names[0],
        compute_capability=capability, gfx_target=gfx, compute_units=units,
        shader_cores=cores, max_sm_clock_mhz=clock_mhz,
    )  # fmt: skip
    catalogued = spec.tensor_tflops.fp16
    estimate = estimated_fp16_tflops(device)
    assert catalogued is not None and estimate is not None
    # Conservative: 80-100 % of the published figure, never above it.
    assert 0.79 * catalogued <= estimate <= 1.0 * catalogued


def test_architecture_and_bandwidth_helpers() -> None:
    assert architecture_of(nvidia("x", compute_capability="7.5")) is Architecture.TURING
    assert architecture_of(nvidia("x", compute_capability="8.6")) is Architecture.AMPERE
    assert architecture_of(nvidia("x")) is Architecture.UNKNOWN
    amd = DeviceInfo(
        index=0,
        vendor=Vendor.AMD,
        backend="test",
        name="x",
        gfx_target="gfx90a",
        memory_type="HBM2E",
        memory_bus_width_bits=4096,
        max_memory_clock_mhz=1600,
    )
    assert architecture_of(amd) is Architecture.CDNA2
    assert derived_bandwidth_gbps(amd) == pytest.approx(4096 / 8 * 1600 * 2 / 1000)
    assert derived_bandwidth_gbps(replace(amd, memory_type="LPDDR5")) is None
    assert derived_bandwidth_gbps(replace(amd, reported_memory_bandwidth_gbps=1638.0)) == 1638.0


def links_to(*buses: str, kind: Interconnect = Interconnect.NVLINK) -> tuple[PeerLink, ...]:
    return tuple(PeerLink(kind=kind, peer_pci_bus_id=bus, links=4) for bus in buses)


def test_interconnect_needs_every_pair_or_a_switch() -> None:
    buses = ["0000:01:00.0", "0000:02:00.0", "0000:03:00.0"]
    full = [replace(H100, index=i, pci_bus_id=b, peers=links_to(*(set(buses) - {b})))
            for i, b in enumerate(buses)]  # fmt: skip
    switched = [replace(H100, index=i, pci_bus_id=b, peers=links_to("nvswitch"))
                for i, b in enumerate(buses)]  # fmt: skip
    pairs_only = [replace(d, peers=d.peers[:1]) for d in full]
    options = NodeOptions(name="n")
    assert build_inventory(full, options).node.spec.interconnect is Interconnect.NVLINK
    assert build_inventory(switched, options).node.spec.interconnect is Interconnect.NVLINK
    partial = build_inventory(pairs_only, options).node
    assert partial.spec.interconnect is Interconnect.PCIE
    assert partial.status is not None and "only some GPU pairs" in (partial.status.message or "")


def test_placeholders_are_reported_and_used() -> None:
    inventory = build_inventory([H100], NodeOptions())
    spec = inventory.node.spec
    assert (spec.region, spec.provider, spec.price_per_hour) == ("unassigned", "unassigned", 0)
    assert len(inventory.placeholders) == 4
    assert inventory.node.name  # the host name, made a valid node name


def test_invalid_options_are_an_inventory_error() -> None:
    with pytest.raises(InventoryError) as raised:
        build_inventory([H100], NodeOptions(name="Bad Name!"))
    assert any("name" in reason for reason in raised.value.reasons)


def test_no_devices_is_an_inventory_error() -> None:
    with pytest.raises(InventoryError):
        build_inventory([], NodeOptions(name="n"))


def test_derived_documents_load_with_the_node() -> None:
    inventory = build_inventory([UNKNOWN, H100], NodeOptions(name="mixed-box"))
    documents = [
        parse_document(ParsedDocument(data=data, index=i), "<inventory>")
        for i, data in enumerate(inventory.documents())
    ]
    assert [d.kind for d in documents] == ["GPUModel", "Node"]
    bundle = build_bundle(documents)  # resolves the derived id through the GPUModel document
    (node,) = bundle.nodes
    assert [g.model for g in node.spec.gpus] == [
        "derived-nvidia-rtx-pro-9999-prototype",
        "h100-sxm",
    ]
    assert isinstance(documents[0], LoadedDocument)


def test_benchmark_says_it_cannot_run_without_torch_or_cupy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = importlib.import_module

    def no_frameworks(name: str, package: str | None = None) -> Any:
        if name in ("torch", "cupy"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(microbench.importlib, "import_module", no_frameworks)
    assert microbench.available_framework() is None
    with pytest.raises(BenchmarkUnavailable) as raised:
        microbench.run_microbenchmark(H100)
    assert "neither torch nor cupy" in raised.value.message


def test_benchmark_report_lines_compare_with_the_catalog() -> None:
    report = microbench.BenchmarkReport(
        device_index=0, framework="torch", memory_bandwidth_gbps=3015.0, matmul_tflops=790.0,
        matmul_dtype="bf16", catalog_bandwidth_gbps=3350.0, catalog_tflops=989.0,
    )  # fmt: skip
    bandwidth, matmul = report.lines()
    assert "90% of catalog 3350" in bandwidth
    assert "bf16 matmul 790 TFLOPS = 80% of catalog 989" in matmul
    assert report.benchmark == Benchmark(3015.0, 790.0)
