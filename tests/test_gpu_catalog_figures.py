"""The built-in GPU catalog (gridplace/specs/data/gpus.yaml) against published figures.

Reads the packaged YAML directly and validates it with ``GPUModel`` only, so it does not depend on
the catalog loader. Checks: every document validates and cites sources, the expected ids are all
there, reported names and PCI ids map to one id, a table of figures matches vendor datasheets and
whitepapers, and precision support follows each architecture's tensor-core generation.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib.resources import files

import pytest
import yaml

from gridplace.specs.common import Architecture, Interconnect, Vendor
from gridplace.specs.gpu import FormFactor, GPUModel, GPUModelSpec

EXPECTED_IDS = frozenset(
    {
        "rtx-3060",
        "rtx-3070",
        "rtx-3080",
        "rtx-3080-ti",
        "rtx-3090",
        "rtx-3090-ti",
        "rtx-4060-ti-16gb",
        "rtx-4070-ti",
        "rtx-4080",
        "rtx-4090",
        "rtx-5090",
        "rtx-a6000",
        "rtx-4000-ada",
        "rtx-5000-ada",
        "rtx-6000-ada",
        "t4",
        "v100-sxm-16gb",
        "a10",
        "a10g",
        "a40",
        "l4",
        "l40",
        "l40s",
        "a100-pcie-40gb",
        "a100-sxm-40gb",
        "a100-pcie-80gb",
        "a100-sxm-80gb",
        "h100-pcie",
        "h100-sxm",
        "h100-nvl",
        "h200-sxm",
        "b200",
        "mi210",
        "mi250x",
        "mi300x",
        "mi325x",
        "rx-7900-xtx",
        "rx-7900-xt",
    }
)

# Tensor-core generations with an FP8 path (Ada 4th gen, Hopper, Blackwell, CDNA3 matrix cores).
FP8_ARCHITECTURES = frozenset(
    {Architecture.ADA, Architecture.HOPPER, Architecture.BLACKWELL, Architecture.CDNA3}
)
# Volta tensor cores are FP16-only; Turing adds INT8/INT4 but not BF16.
NO_BF16_ARCHITECTURES = frozenset({Architecture.VOLTA, Architecture.TURING})
# Hopper and CDNA dropped (or never had) an INT4 matrix path.
NO_INT4_ARCHITECTURES = frozenset(
    {Architecture.VOLTA, Architecture.HOPPER, Architecture.CDNA2, Architecture.CDNA3}
)
# Datacenter Blackwell (sm_100) replaced INT4 with FP4; GeForce Blackwell publishes no INT4 rate.
NO_INT4_IDS = frozenset({"b200", "rtx-5090"})


@cache
def _catalog() -> dict[str, GPUModelSpec]:
    text = files("gridplace.specs").joinpath("data/gpus.yaml").read_text(encoding="utf-8")
    specs: dict[str, GPUModelSpec] = {}
    for document in yaml.safe_load_all(text):
        model = GPUModel.model_validate(document)
        assert model.metadata.name not in specs, f"duplicate id {model.metadata.name}"
        specs[model.metadata.name] = model.spec
    return specs


def _figure(spec: GPUModelSpec, field: str) -> object:
    """Follow a dotted snake_case path (``tensor_tflops.bf16``) into a spec."""
    value: object = spec
    for part in field.split("."):
        value = getattr(value, part)
    return value


# (id, field, expected): each figure cites its source in the trailing comment.
FIGURES = [
    # NVIDIA H100 datasheet, SXM: 3.35 TB/s HBM3; BF16 1979 TFLOPS sparse -> 989 dense.
    ("h100-sxm", "memory_bandwidth_gbps", 3350),
    ("h100-sxm", "tensor_tflops.bf16", 989),
    # NVIDIA H100 datasheet, SXM: FP8 3958 TFLOPS sparse -> 1979 dense.
    ("h100-sxm", "tensor_tflops.fp8", 1979),
    # NVIDIA H100 datasheet, NVL: 94 GB per GPU.
    ("h100-nvl", "memory_gib", 94),
    # NVIDIA H200 datasheet: 141 GB HBM3e at 4.8 TB/s.
    ("h200-sxm", "memory_gib", 141),
    ("h200-sxm", "memory_bandwidth_gbps", 4800),
    # NVIDIA A100 80GB datasheet, SXM4: 2039 GB/s.
    ("a100-sxm-80gb", "memory_bandwidth_gbps", 2039),
    # NVIDIA A100 datasheet: BF16 312 TFLOPS dense.
    ("a100-pcie-40gb", "tensor_tflops.bf16", 312),
    # NVIDIA Ada whitepaper v2.1 appendix: RTX 4090 FP16 165.2 TFLOPS with FP32 accumulate.
    ("rtx-4090", "tensor_tflops.fp16", 165.2),
    # NVIDIA Ada whitepaper v2.1 appendix: RTX 4090 FP8 330.3 TFLOPS with FP32 accumulate.
    ("rtx-4090", "tensor_tflops.fp8", 330.3),
    # NVIDIA GA102 whitepaper appendix A: RTX 3090 BF16 71 TFLOPS with FP32 accumulate.
    ("rtx-3090", "tensor_tflops.bf16", 71),
    # NVIDIA GA102 whitepaper appendix A: RTX 3090 INT8 284 TOPS dense.
    ("rtx-3090", "tensor_tflops.int8", 284),
    # NVIDIA L40S datasheet: FP16 362.05 TFLOPS dense, 350 W.
    ("l40s", "tensor_tflops.fp16", 362.05),
    ("l40s", "tdp_watts", 350),
    # NVIDIA L4 datasheet: 121 TFLOPS FP16 dense (242 sparse), 72 W.
    ("l4", "tensor_tflops.fp16", 121),
    # NVIDIA T4 datasheet: 65 TFLOPS FP16/FP32 mixed precision, 70 W, PCIe 3.0.
    ("t4", "tensor_tflops.fp16", 65),
    ("t4", "pcie.generation", 3),
    # NVIDIA V100 datasheet, SXM2: 125 TFLOPS tensor, 900 GB/s.
    ("v100-sxm-16gb", "tensor_tflops.fp16", 125),
    ("v100-sxm-16gb", "memory_bandwidth_gbps", 900),
    # NVIDIA RTX 4060 Ti spec page: PCIe 4.0 x8.
    ("rtx-4060-ti-16gb", "pcie.lanes", 8),
    # NVIDIA RTX 5090 spec page: 32 GB GDDR7, 1792 GB/s.
    ("rtx-5090", "memory_bandwidth_gbps", 1792),
    # Blackwell datasheet, HGX B200: 180 GB, 7.7 TB/s, BF16 2250 TFLOPS dense.
    ("b200", "memory_gib", 180),
    ("b200", "tensor_tflops.bf16", 2250),
    # AMD Instinct MI300X datasheet: FP16 1307.4 TFLOPS dense, 5.3 TB/s, 192 GB.
    ("mi300x", "tensor_tflops.fp16", 1307.4),
    ("mi300x", "memory_bandwidth_gbps", 5300),
    ("mi300x", "memory_gib", 192),
    # AMD Instinct MI325X datasheet: 256 GB HBM3E at 6 TB/s.
    ("mi325x", "memory_gib", 256),
    # AMD Instinct MI210 datasheet: FP16 181 TFLOPS, INT8 181 TOPS (CDNA2: INT8 = FP16 rate).
    ("mi210", "tensor_tflops.int8", 181),
    # AMD MI250X datasheet (383 TFLOPS, 3.2 TB/s per module), halved per GCD.
    ("mi250x", "memory_gib", 64),
    ("mi250x", "tensor_tflops.bf16", 191.5),
]


@pytest.mark.parametrize(
    ("gpu_id", "field", "expected"),
    FIGURES,
    ids=[f"{gpu_id}-{field}" for gpu_id, field, _ in FIGURES],
)
def test_figure_matches_published_source(gpu_id: str, field: str, expected: float) -> None:
    assert _figure(_catalog()[gpu_id], field) == pytest.approx(expected)


# (id, precision): the hardware has no tensor path for it, so the catalog leaves it absent.
ABSENT = [
    ("t4", "bf16"),  # Turing tensor cores: FP16/INT8/INT4 only.
    ("t4", "fp8"),
    ("v100-sxm-16gb", "bf16"),  # Volta tensor cores: FP16 only.
    ("v100-sxm-16gb", "int8"),
    ("a100-sxm-80gb", "fp8"),  # Ampere has no FP8.
    ("rtx-3090", "fp8"),
    ("h100-sxm", "int4"),  # Hopper has no INT4 tensor path.
    ("b200", "int4"),  # Blackwell datacenter: FP4 instead of INT4.
    ("mi300x", "int4"),  # CDNA3: no INT4.
    ("mi210", "fp8"),  # CDNA2: no FP8.
]


@pytest.mark.parametrize(
    ("gpu_id", "precision"), ABSENT, ids=[f"{gpu_id}-no-{p}" for gpu_id, p in ABSENT]
)
def test_precision_without_tensor_path_is_absent(gpu_id: str, precision: str) -> None:
    assert getattr(_catalog()[gpu_id].tensor_tflops, precision) is None


def test_catalog_has_exactly_the_expected_ids() -> None:
    assert set(_catalog()) == EXPECTED_IDS


def test_every_entry_cites_sources() -> None:
    for gpu_id, spec in _catalog().items():
        assert spec.sources, gpu_id
        assert all(source.strip() for source in spec.sources), gpu_id


def test_every_entry_is_identifiable() -> None:
    for gpu_id, spec in _catalog().items():
        assert spec.reported_names, f"{gpu_id} has no reported name"


def test_reported_names_map_to_one_id() -> None:
    counts = Counter(name for spec in _catalog().values() for name in spec.reported_names)
    assert [name for name, count in counts.items() if count > 1] == []


def test_pci_device_ids_map_to_one_id() -> None:
    counts = Counter(pci for spec in _catalog().values() for pci in spec.pci_device_ids)
    assert [pci for pci, count in counts.items() if count > 1] == []


def test_vendor_target_fields() -> None:
    for gpu_id, spec in _catalog().items():
        if spec.vendor is Vendor.NVIDIA:
            assert spec.compute_capability is not None, gpu_id
        else:
            assert spec.gfx_target is not None, gpu_id


@pytest.mark.parametrize("gpu_id", sorted(EXPECTED_IDS))
def test_precision_support_follows_architecture(gpu_id: str) -> None:
    spec = _catalog()[gpu_id]
    tensor = spec.tensor_tflops
    assert (tensor.fp8 is not None) == (spec.architecture in FP8_ARCHITECTURES)
    if spec.architecture in NO_BF16_ARCHITECTURES:
        assert tensor.bf16 is None
    else:
        assert tensor.bf16 is not None
    if spec.architecture in NO_INT4_ARCHITECTURES or gpu_id in NO_INT4_IDS:
        assert tensor.int4 is None
    if spec.architecture is not Architecture.VOLTA:
        assert tensor.int8 is not None


@pytest.mark.parametrize("gpu_id", sorted(EXPECTED_IDS))
def test_tensor_rates_are_ordered(gpu_id: str) -> None:
    """Narrower formats never run slower than wider ones on the same tensor cores."""
    tensor = _catalog()[gpu_id].tensor_tflops
    half = tensor.bf16 or tensor.fp16
    assert half is not None
    if tensor.fp16 is not None and tensor.bf16 is not None:
        assert tensor.fp16 == tensor.bf16
    for narrower in (tensor.fp8, tensor.int8, tensor.int4):
        if narrower is not None:
            assert narrower >= half
    if tensor.int8 is not None and tensor.int4 is not None:
        assert tensor.int4 >= tensor.int8


def test_sxm_and_oam_parts_have_a_peer_link() -> None:
    for gpu_id, spec in _catalog().items():
        if spec.form_factor in (FormFactor.SXM, FormFactor.OAM):
            assert spec.peer_link is not None, gpu_id
            expected = Interconnect.NVLINK if spec.vendor is Vendor.NVIDIA else Interconnect.XGMI
            assert spec.peer_link.kind is expected, gpu_id


def test_geforce_fp32_accumulate_is_half_rate() -> None:
    """GeForce FP16 with FP32 accumulate is half of INT8/4 (= half the FP16-accumulate rate)."""
    catalog = _catalog()
    for gpu_id in ("rtx-3070", "rtx-3080", "rtx-3090", "rtx-4080", "rtx-4090"):
        tensor = catalog[gpu_id].tensor_tflops
        assert tensor.fp16 is not None and tensor.int8 is not None
        assert tensor.int8 / tensor.fp16 == pytest.approx(4, rel=0.01), gpu_id
