"""How a fix changes the inputs: a copy of them with a precision allowed, an SLO relaxed,
``replicas.max`` or the budget raised, or catalog nodes added (named, priced from the inputs'
own offers, linked as their GPU's peer link allows).

Owns turning a typed ``Change`` into inputs; must not search or check fixes (``fixes``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace

from gridplace.planner.ports import PlannerInputs
from gridplace.specs import GPUModelSpec, InferenceWorkload, Node
from gridplace.specs.common import Interconnect, Metadata
from gridplace.specs.fixes import (
    AddNodes,
    AllowPipeline,
    AllowPrecision,
    Change,
    RaiseBudget,
    RaiseReplicasMax,
    RelaxSlo,
)
from gridplace.specs.node import GPUGroup, NodeSpec
from gridplace.specs.workload import PipelinePolicy

FIX_NODE_PREFIX = "fix-"


def apply_change(inputs: PlannerInputs, workload: str, change: Change) -> PlannerInputs:
    """A copy of ``inputs`` with ``change`` made for ``workload``."""
    if isinstance(change, RaiseBudget):
        return replace(inputs, budget_per_hour=change.per_hour)
    if isinstance(change, AddNodes):
        return replace(inputs, nodes=[*inputs.nodes, *new_nodes(inputs, workload, change)])
    workloads = [_changed(w, change) if w.name == workload else w for w in inputs.workloads]
    return replace(inputs, workloads=workloads)


def _changed(workload: InferenceWorkload, change: Change) -> InferenceWorkload:
    spec = workload.spec
    update: dict[str, object]
    if isinstance(change, AllowPrecision):
        update = {"precisions": [*spec.precisions, change.precision]}
    elif isinstance(change, RelaxSlo):
        name = "itl_ms" if change.field == "itlMs" else "ttft_ms"
        update = {"slo": spec.slo.model_copy(update={name: change.value})}
    elif isinstance(change, RaiseReplicasMax):
        update = {"replicas": spec.replicas.model_copy(update={"max": change.value})}
    elif isinstance(change, AllowPipeline):
        update = {"pipeline": PipelinePolicy(max_stages=change.max_stages)}
    else:
        raise ValueError(f"not a workload change: {change.kind}")
    return workload.model_copy(update={"spec": spec.model_copy(update=update)})


def new_nodes(inputs: PlannerInputs, workload: str, change: AddNodes) -> list[Node]:
    """The nodes an ``AddNodes`` buys: trusted as far as the workload asks (a node bought for it
    is one the operator can attest), linked as its GPU's peer link allows."""
    trust = next(w.spec.trust for w in inputs.workloads if w.name == workload)
    taken = {n.name for n in inputs.nodes}
    nodes = []
    for i in range(change.count):
        name = f"{FIX_NODE_PREFIX}{change.gpu}x{change.gpus_per_node}-{i}"
        while name in taken:
            name += "x"
        trusted = (
            {"reliability": trust.min_reliability, "claims": trust.min_claims} if trust else {}
        )
        spec = NodeSpec(
            region=change.region,
            provider=f"fix-{i}" if change.distinct_providers else "fix",
            price_per_hour=change.price_per_hour or 0.0,
            gpus=[GPUGroup(model=change.gpu, count=change.gpus_per_node)],
            interconnect=change.interconnect,
            **trusted,
        )
        nodes.append(Node(metadata=Metadata(name=name), spec=spec))
    return nodes


def offer_prices(inputs: PlannerInputs) -> dict[str, float]:
    """USD per GPU-hour per catalog GPU: the median over the inputs' single-model nodes."""
    prices: dict[str, list[float]] = defaultdict(list)
    for node in inputs.nodes:
        models = {inputs.catalog.gpu_id(g.model) for g in node.spec.gpus}
        if len(models) == 1 and None not in models:
            prices[str(models.pop())].append(node.spec.price_per_hour / node.spec.gpu_count)
    return {gpu: statistics.median(p) for gpu, p in prices.items()}


def peer_link(gpu: GPUModelSpec, gpus: int) -> Interconnect:
    """The peer link a node of ``gpus`` of this GPU is sold with (PCIe for one GPU or none)."""
    return gpu.peer_link.kind if gpu.peer_link and gpus > 1 else Interconnect.PCIE
