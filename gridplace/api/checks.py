"""Placeability checks that ``gridplace validate`` runs after the schema and reference checks.

For now this answers one question per workload: is there any node whose total VRAM can hold the
model's weights at one of its acceptable precisions at all? The planner deepens it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gridplace.specs import InferenceWorkload, ModelArchitectureSpec, Node, SpecBundle

GIB = 2**30


@dataclass(frozen=True)
class WorkloadCheck:
    """Whether one workload can be placed at all, and why not."""

    workload: str
    ok: bool
    reasons: list[str]
    origin: str


def weights_gib(model: ModelArchitectureSpec, bytes_per_parameter: float) -> float:
    """Weights of the whole model at ``bytes_per_parameter``, GiB."""
    return model.parameters_billion * 1e9 * bytes_per_parameter / GIB


def node_vram_gib(node: Node, bundle: SpecBundle) -> float:
    """Sum of the node's GPU memory, GiB (a group's override wins over the catalog)."""
    return sum(
        (group.memory_gib or bundle.catalog.gpus[group.model].memory_gib) * group.count
        for group in node.spec.gpus
    )


def model_of(workload: InferenceWorkload, bundle: SpecBundle) -> ModelArchitectureSpec:
    model = workload.spec.model
    return model if isinstance(model, ModelArchitectureSpec) else bundle.catalog.models[model]


def check_workloads(bundle: SpecBundle) -> list[WorkloadCheck]:
    """One ``WorkloadCheck`` per workload, in input order."""
    healthy = [node for node in bundle.nodes if node.healthy]
    largest = max((node_vram_gib(n, bundle) for n in healthy), default=0.0)
    checks = []
    for workload in bundle.workloads:
        model = model_of(workload, bundle)
        needs = {
            p.value: weights_gib(model, p.bytes_per_parameter) for p in workload.spec.precisions
        }
        fits = [n for n in healthy if node_vram_gib(n, bundle) >= min(needs.values())]
        reasons: list[str] = []
        if not fits:
            smallest = min(needs, key=lambda p: needs[p])
            reasons.append(
                f"0/{len(healthy)} healthy nodes can hold {workload.name}'s weights: the smallest "
                f"acceptable precision {smallest} needs {needs[smallest]:.1f} GiB, the largest "
                f"node has {largest:.1f} GiB. To fix: add a node with >= {needs[smallest]:.0f} GiB "
                "of VRAM, or accept a smaller precision"
            )
        checks.append(
            WorkloadCheck(
                workload=workload.name,
                ok=not reasons,
                reasons=reasons,
                origin=bundle.origin("InferenceWorkload", workload.name),
            )
        )
    return checks
