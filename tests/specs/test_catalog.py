"""The catalogs: lookups by id, reported name, PCI id and Hugging Face repo; near matches."""

from __future__ import annotations

import pytest

from gridplace.specs import SpecError, builtin_catalog

REQUIRED_GPUS = [
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
]


def test_every_required_gpu_is_there_and_reachable_by_its_reported_name() -> None:
    catalog = builtin_catalog()
    assert set(REQUIRED_GPUS) <= set(catalog.gpus)
    for gpu_id in REQUIRED_GPUS:
        gpu = catalog.gpus[gpu_id]
        assert gpu.reported_names, f"{gpu_id} has no reported name"
        for name in gpu.reported_names:
            assert catalog.gpu_id(name) == gpu_id
            assert catalog.gpu_id(name.upper()) == gpu_id  # case does not matter


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("AMD Instinct MI300X", "mi300x"),
        ("  rtx-3090 ", "rtx-3090"),
    ],
)
def test_gpu_lookup_by_name(reference: str, expected: str) -> None:
    assert builtin_catalog().gpu_id(reference) == expected


def test_gpu_lookup_by_pci_id() -> None:
    catalog = builtin_catalog()
    assert catalog.gpu_id_by_pci("0x2684") == "rtx-4090"
    assert catalog.gpu_id_by_pci("0x2330") == "h100-sxm"
    assert catalog.gpu_id_by_pci("0xffff") is None


def test_every_model_is_reachable_by_its_hugging_face_repo() -> None:
    catalog = builtin_catalog()
    for model_id, model in catalog.models.items():
        assert model.hugging_face_repo, model_id
        assert catalog.model_id(model.hugging_face_repo) == model_id
        for alias in model.aliases:
            assert catalog.model_id(alias) == model_id


def test_unknown_ids_list_near_matches() -> None:
    catalog = builtin_catalog()
    with pytest.raises(SpecError) as gpu_error:
        catalog.gpu("rtx-4099")
    assert "did you mean" in str(gpu_error.value) and "rtx-4090" in str(gpu_error.value)
    with pytest.raises(SpecError) as model_error:
        catalog.model("lama-3.1-70b")
    assert "llama-3.1-70b" in str(model_error.value)
    assert catalog.gpu_near_matches("zzzzzz") == []
