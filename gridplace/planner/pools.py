"""Node classes: healthy nodes that are alike grouped into ``GpuPool``s (one per GPU model of a
class), so that the model counts replicas per class instead of per node.

Nodes with the same GPUs (and overrides), region, provider, price, interconnect, claims,
reliability (down to 0.01) and throttle bucket (to 0.05) are one class; pools are numbered in the
order of their class key, so numbering and every tie-break after it are stable. A node that
reports no reliability is assumed to be up ``ASSUMED_RELIABILITY`` of the time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from gridplace.planner.problem import GpuPool
from gridplace.specs import Catalog, GPUGroup, GPUModelSpec, Node, TensorThroughput

THROTTLE_BUCKET = 0.05
# A node that reports no observed availability: about what community nodes show (assumed), so
# that an unknown node neither passes a trust.minReliability rule nor escapes the failover rule.
ASSUMED_RELIABILITY = 0.98


def build_pools(
    nodes: Sequence[Node], catalog: Catalog
) -> tuple[list[GpuPool], list[GPUModelSpec]]:
    """Group healthy nodes into classes and split each class into per-GPU-model pools.

    Returns the pools and, at the same index, each pool's GPU figures after node overrides.
    """
    classes: dict[tuple[object, ...], list[Node]] = defaultdict(list)
    for node in nodes:
        if not node.healthy:
            continue
        spec = node.spec
        groups = tuple(
            (g.model, g.count, g.memory_gib, g.memory_bandwidth_gbps, g.pcie) for g in spec.gpus
        )
        key: tuple[object, ...] = (
            spec.region,
            spec.provider,
            spec.price_per_hour,
            groups,
            spec.interconnect,
            spec.claims,
            _reliability(node),
            _throttle_bucket(node.throttle_ratio),
        )
        classes[key].append(node)
    pools: list[GpuPool] = []
    gpus: list[GPUModelSpec] = []
    # Sorted by key text so pool numbering (and every tie-break that follows it) is stable.
    for _, members in sorted(classes.items(), key=lambda item: repr(item[0])):
        first = members[0]
        spec = first.spec
        gpu_total = spec.gpu_count
        next_index = 0
        for group in spec.gpus:
            gpu = effective_gpu(catalog.gpus[group.model], group)
            indices = tuple(range(next_index, next_index + group.count))
            next_index += group.count
            gpus.append(gpu)
            pools.append(
                GpuPool(
                    index=len(pools),
                    key=f"{spec.region}/{spec.provider}/{group.model}x{group.count}"
                    f"/${spec.price_per_hour:g}/{len(pools)}",
                    node_names=tuple(sorted(n.name for n in members)),
                    gpu_indices=indices,
                    gpu_model=group.model,
                    memory_gib=gpu.memory_gib,
                    region=spec.region,
                    provider=spec.provider,
                    price_per_gpu_hour=spec.price_per_hour / gpu_total,
                    claims=spec.claims,
                    reliability=_reliability(first),
                    throttle_ratio=_throttle_bucket(first.throttle_ratio),
                    interconnect=spec.interconnect,
                    tdp_watts=gpu.tdp_watts,
                )
            )
    return pools, gpus


def _throttle_bucket(ratio: float) -> float:
    """Throttle ratios within a bucket count as equal (nodes of one class share one derate)."""
    return round(round(ratio / THROTTLE_BUCKET) * THROTTLE_BUCKET, 2)


def effective_gpu(gpu: GPUModelSpec, group: GPUGroup) -> GPUModelSpec:
    """The catalog entry with the node's measured overrides (VRAM, bandwidth, PCIe) applied."""
    updates = {
        name: value
        for name in ("memory_gib", "memory_bandwidth_gbps", "pcie")
        if (value := getattr(group, name)) is not None
    }
    return gpu.model_copy(update=updates) if updates else gpu


def _reliability(node: Node) -> float:
    """The node's observed availability, or the assumption, rounded *down* to 0.01 (the class
    resolution): a 0.949 node must not pass a 0.95 rule on rounding."""
    reported = node.spec.reliability
    value = reported if reported is not None else ASSUMED_RELIABILITY
    return math.floor(value * 100 + 1e-9) / 100


def share_of(gpu: GPUModelSpec, share: int) -> GPUModelSpec:
    """The slice of ``gpu`` one of ``share`` replicas gets."""
    if share == 1:
        return gpu
    tflops = {
        name: value / share
        for name, value in gpu.tensor_tflops.model_dump().items()
        if value is not None
    }
    return gpu.model_copy(
        update={
            "memory_gib": gpu.memory_gib / share,
            "memory_bandwidth_gbps": gpu.memory_bandwidth_gbps / share,
            "tensor_tflops": TensorThroughput(**tflops),
        }
    )
