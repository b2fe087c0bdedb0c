"""How many streaming multiprocessors (NVIDIA SMs, AMD CUs) each catalog GPU has.

Owns: the counts and the lookup from a GPU entry. The kernel models use them for two things a
rate alone cannot say: how a tiled GEMM's tiles fall into waves over the SMs, and how much memory
traffic a latency-bound kernel can keep in flight (bytes in flight scale with SMs, not with the
memory's bandwidth). The GPU spec has no field for it yet, so the figures live here, keyed by
catalog id; a GPU the table lacks gets ``None`` and the kernel models leave those terms out.

Figures: NVIDIA architecture whitepapers (GA102, GA100, AD102, GH100, GB202) and product pages
for cut-down parts; AMD CDNA2/CDNA3 whitepapers and the RDNA3 product pages (compute units).
"""

from __future__ import annotations

from functools import lru_cache

from gridplace.specs import builtin_catalog
from gridplace.specs.gpu import GPUModelSpec

COMPUTE_UNITS: dict[str, int] = {
    # GeForce RTX 30 (GA10x)
    "rtx-3060": 28, "rtx-3070": 46, "rtx-3080": 68, "rtx-3080-ti": 80, "rtx-3090": 82,
    "rtx-3090-ti": 84,
    # GeForce RTX 40 (AD10x) and 50 (GB202)
    "rtx-4060-ti-16gb": 34, "rtx-4070-ti": 60, "rtx-4080": 76, "rtx-4090": 128, "rtx-5090": 170,
    # Workstation
    "rtx-a6000": 84, "rtx-4000-ada": 48, "rtx-5000-ada": 100, "rtx-6000-ada": 142,
    # Datacenter, NVIDIA
    "t4": 40, "v100-sxm-16gb": 80, "a10": 72, "a10g": 80, "a40": 84, "l4": 58, "l40": 142,
    "l40s": 142, "a100-pcie-40gb": 108, "a100-sxm-40gb": 108, "a100-pcie-80gb": 108,
    "a100-sxm-80gb": 108, "h100-pcie": 114, "h100-sxm": 132, "h100-nvl": 132, "h200-sxm": 132,
    "b200": 148,
    # AMD (compute units; MI250X per GCD, as the catalog lists it)
    "mi210": 104, "mi250x": 110, "mi300x": 304, "mi325x": 304, "rx-7900-xtx": 96,
    "rx-7900-xt": 84,
}  # fmt: skip


@lru_cache(maxsize=1)
def _ids_by_name() -> dict[str, str]:
    return {spec.display_name: gpu_id for gpu_id, spec in builtin_catalog().gpus.items()}


def compute_units(gpu: GPUModelSpec, gpu_id: str | None = None) -> int | None:
    """The SM (CU) count of ``gpu``: by ``gpu_id``, else by its catalog display name; or None."""
    if gpu_id is not None and gpu_id in COMPUTE_UNITS:
        return COMPUTE_UNITS[gpu_id]
    found = _ids_by_name().get(gpu.display_name)
    return COMPUTE_UNITS.get(found) if found is not None else None
