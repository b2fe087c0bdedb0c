"""Compile specs into a ``Problem``: node classes, candidate options and recorded rejections.

Pure (STYLE.md rule 2): no I/O, inputs untouched. Predictions come from a ``Predictor`` (the
performance model) and network RTTs from a ``LatencyLookup`` (topology); both are passed in.

Node classes: healthy nodes with the same GPUs, region, provider, price, interconnect, claims,
reliability (to 0.01) and throttle bucket (to 0.05) are one class; each GPU group of a class is a
``GpuPool``. For every workload x pool x precision x TP degree (powers of two up to the node's GPU
count) x GPU share (1, 2 or 4 replicas per GPU, TP 1 only) the predictor is asked for TTFT, ITL,
VRAM and per-replica capacity; the option is kept only if every compile-time rule holds. The rule
families checked here, in order, are ``trust``, ``precision-support``, ``vram``, ``slo-itl``,
``slo-ttft`` and ``demand-coverage`` (an option with no capacity inside the SLO); a dropped option
leaves a ``Rejection`` with its numbers. Options no better than another on any axis are dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gridplace.planner.problem import (
    SHARE_FACTORS,
    GpuPool,
    Option,
    PreviousReplica,
    Problem,
    Rejection,
    WorkloadDemand,
)
from gridplace.specs import (
    Catalog,
    ClaimLevel,
    GPUModelSpec,
    InferenceWorkload,
    ModelArchitectureSpec,
    Node,
    PlacementPlan,
    Precision,
)
from gridplace.specs.common import Engine, Interconnect
from gridplace.specs.workload import TrustRequirement

THROTTLE_BUCKET = 0.05
MAX_TENSOR_PARALLEL = 8
COMPILE_FAMILIES = (
    "trust",
    "precision-support",
    "vram",
    "slo-itl",
    "slo-ttft",
    "demand-coverage",
)


@dataclass(frozen=True)
class OptionPrediction:
    """What the performance model says about one replica (network RTT not included)."""

    supported: bool
    reason: str  # why not supported / why it does not fit; "" otherwise
    fits: bool
    vram_gib: float  # per GPU
    vram_available_gib: float  # per GPU (or per share of it)
    prefill_ms: float  # TTFT without network, at the planned load (incl. queueing)
    itl_ms: float
    capacity_rps: float  # per replica inside the SLO (TTFT budget after network), 0 if none


class Predictor(Protocol):
    def __call__(
        self,
        *,
        model: ModelArchitectureSpec,
        model_id: str,
        gpu: GPUModelSpec,
        gpu_id: str,
        precision: Precision,
        engine: Engine,
        tensor_parallel: int,
        share: int,
        interconnect: Interconnect,
        throttle_ratio: float,
        ttft_budget_ms: float,
        itl_slo_ms: float,
        prompt_tokens: int,
        output_tokens: int,
    ) -> OptionPrediction: ...


class LatencyLookup(Protocol):
    def rtt_p99_ms(self, region: str, node: str) -> float:
        """p99 round trip from clients in ``region`` to ``node``, ms (estimated if not probed)."""
        ...


@dataclass(frozen=True)
class PlannerInputs:
    """The validated specs a plan is made from."""

    nodes: Sequence[Node]
    workloads: Sequence[InferenceWorkload]
    catalog: Catalog
    previous: PlacementPlan | None = None
    budget_per_hour: float | None = None
    headroom: float = 0.1


def _model(workload: InferenceWorkload, catalog: Catalog) -> tuple[str, ModelArchitectureSpec]:
    reference = workload.spec.model
    if isinstance(reference, str):
        return reference, catalog.models[reference]
    return f"inline:{workload.name}", reference


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
            round(spec.reliability if spec.reliability is not None else 1.0, 2),
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
            gpu = _effective_gpu(catalog.gpus[group.model], group)
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
                    reliability=round(spec.reliability if spec.reliability is not None else 1.0, 2),
                    throttle_ratio=_throttle_bucket(first.throttle_ratio),
                    interconnect=spec.interconnect,
                    tdp_watts=gpu.tdp_watts,
                )
            )
    return pools, gpus


def _throttle_bucket(ratio: float) -> float:
    """Throttle ratios within a bucket count as equal (nodes of one class share one derate)."""
    return round(round(ratio / THROTTLE_BUCKET) * THROTTLE_BUCKET, 2)


def _effective_gpu(gpu: GPUModelSpec, group: object) -> GPUModelSpec:
    """The catalog entry with the node's measured overrides applied."""
    updates: dict[str, object] = {}
    memory = getattr(group, "memory_gib", None)
    bandwidth = getattr(group, "memory_bandwidth_gbps", None)
    pcie = getattr(group, "pcie", None)
    if memory is not None:
        updates["memory_gib"] = memory
    if bandwidth is not None:
        updates["memory_bandwidth_gbps"] = bandwidth
    if pcie is not None:
        updates["pcie"] = pcie
    return gpu.model_copy(update=updates) if updates else gpu


def _trust_failure(trust: TrustRequirement | None, pool: GpuPool) -> str | None:
    if trust is None:
        return None
    if pool.claims.rank < trust.min_claims.rank:
        return f"claims {pool.claims.value} < required {trust.min_claims.value}"
    if pool.reliability < trust.min_reliability:
        return f"reliability {pool.reliability:.2f} < required {trust.min_reliability:.2f}"
    return None


def _tensor_parallel_degrees(gpus_per_node: int) -> list[int]:
    degrees, tp = [], 1
    while tp <= min(gpus_per_node, MAX_TENSOR_PARALLEL):
        degrees.append(tp)
        tp *= 2
    return degrees


def compile_problem(inputs: PlannerInputs, predictor: Predictor, latency: LatencyLookup) -> Problem:
    """Build the Problem: pools, surviving options, rejections with reasons, previous replicas."""
    pools, pool_gpus = build_pools(inputs.nodes, inputs.catalog)
    workloads: list[WorkloadDemand] = []
    options: list[Option] = []
    rejections: list[Rejection] = []
    for w_index, workload in enumerate(inputs.workloads):
        spec = workload.spec
        model_id, model = _model(workload, inputs.catalog)
        demand = WorkloadDemand(
            index=w_index,
            name=workload.name,
            model=model_id,
            demand_rps=spec.traffic.requests_per_second,
            sources=tuple((s.region, s.share) for s in spec.traffic.sources),
            priority=spec.priority,
            replicas_min=spec.replicas.min,
            replicas_max=spec.replicas.max,
            ttft_slo_ms=spec.slo.ttft_ms,
            itl_slo_ms=spec.slo.itl_ms,
            spread_across=spec.spread.across.value if spec.spread else None,
            spread_max_per_domain=spec.spread.max_per_domain if spec.spread else None,
            precisions=tuple(spec.precisions),
        )
        workloads.append(demand)
        for pool in pools:
            found, dropped = _options_for(
                demand,
                workload,
                model_id,
                model,
                pool,
                pool_gpus[pool.index],
                predictor,
                latency,
                len(options),
            )
            options.extend(found)
            rejections.extend(dropped)
    options = _drop_dominated(options)
    previous, released = _previous_replicas(inputs, pools, options, workloads)
    return Problem(
        workloads=tuple(workloads),
        pools=tuple(pools),
        options=tuple(options),
        rejections=tuple(rejections),
        node_gpu_counts={n.name: n.spec.gpu_count for n in inputs.nodes if n.healthy},
        previous=tuple(previous),
        released=tuple(released),
        budget_per_hour=inputs.budget_per_hour,
        headroom=inputs.headroom,
    )


def _options_for(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    model_id: str,
    model: ModelArchitectureSpec,
    pool: GpuPool,
    gpu: GPUModelSpec,
    predictor: Predictor,
    latency: LatencyLookup,
    first_index: int,
) -> tuple[list[Option], list[Rejection]]:
    spec = workload.spec
    trust = _trust_failure(spec.trust, pool)
    if trust is not None:
        return [], [Rejection(demand.index, pool.index, "trust", trust, pool.node_count)]
    # The worst node of the pool decides its RTT (they share a region and provider).
    rtt = {
        region: max(latency.rtt_p99_ms(region, node) for node in pool.node_names)
        for region, _ in demand.sources
    }
    best_rtt = min(rtt.values())
    found: list[Option] = []
    dropped: list[Rejection] = []

    def reject(family: str, reason: str) -> None:
        dropped.append(Rejection(demand.index, pool.index, family, reason, pool.node_count))

    for rank, precision in enumerate(spec.precisions):
        for tp in _tensor_parallel_degrees(pool.gpus_per_node):
            for share in SHARE_FACTORS if tp == 1 else (1,):
                prediction = predictor(
                    model=model,
                    model_id=model_id,
                    gpu=gpu,
                    gpu_id=pool.gpu_model,
                    precision=precision,
                    engine=spec.engine,
                    tensor_parallel=tp,
                    share=share,
                    interconnect=pool.interconnect,
                    throttle_ratio=pool.throttle_ratio,
                    ttft_budget_ms=spec.slo.ttft_ms - best_rtt,
                    itl_slo_ms=spec.slo.itl_ms,
                    prompt_tokens=spec.traffic.prompt_tokens,
                    output_tokens=spec.traffic.output_tokens,
                )
                label = f"{precision.value} tp{tp}" + (f" 1/{share} GPU" if share > 1 else "")
                if not prediction.supported:
                    reject("precision-support", f"{label}: {prediction.reason}")
                    continue
                if not prediction.fits:
                    reject(
                        "vram",
                        f"{label}: needs {prediction.vram_gib:.1f} GiB per GPU, has "
                        f"{prediction.vram_available_gib:.1f}",
                    )
                    continue
                if prediction.itl_ms > spec.slo.itl_ms:
                    reject(
                        "slo-itl",
                        f"{label}: ITL {prediction.itl_ms:.0f} ms > {spec.slo.itl_ms:g} ms",
                    )
                    continue
                ttft = {region: prediction.prefill_ms + rtt[region] for region in rtt}
                servable = tuple(r for r, t in ttft.items() if t <= spec.slo.ttft_ms)
                if not servable:
                    worst = min(ttft.values())
                    reject(
                        "slo-ttft",
                        f"{label}: TTFT {worst:.0f} ms (RTT {best_rtt:.0f} ms) > "
                        f"{spec.slo.ttft_ms:g} ms",
                    )
                    continue
                if prediction.capacity_rps <= 0:
                    reject("demand-coverage", f"{label}: no load fits inside the SLO")
                    continue
                found.append(
                    Option(
                        index=first_index + len(found),
                        workload=demand.index,
                        pool=pool.index,
                        precision=precision,
                        tensor_parallel=tp,
                        share=share,
                        ttft_ms=ttft,
                        itl_ms=prediction.itl_ms,
                        capacity_rps=prediction.capacity_rps,
                        vram_gib=prediction.vram_gib,
                        cost_per_hour=pool.price_per_gpu_hour * tp / share,
                        power_watts=pool.tdp_watts * tp / share,
                        precision_rank=rank,
                        servable_sources=servable,
                    )
                )
    return found, dropped


def _drop_dominated(options: list[Option]) -> list[Option]:
    """Drop options no better than another of the same workload and pool on any axis.

    Axes: capacity per GPU slot (higher is better), slots per replica (fewer is better: finer
    steps of capacity), precision rank (lower is better) and the traffic sources served (a
    superset is better). Latency is not an axis: every option left meets the SLO, and which one
    is faster is only the last objective's concern. Ties keep the first.
    """
    by_key: dict[tuple[int, int], list[Option]] = defaultdict(list)
    for option in options:
        by_key[(option.workload, option.pool)].append(option)
    kept: list[Option] = []
    for group in by_key.values():
        for option in group:
            if not any(_dominates(other, option) for other in group if other is not option):
                kept.append(option)
    return [
        _renumber(option, index) for index, option in enumerate(sorted(kept, key=lambda o: o.index))
    ]


def _dominates(a: Option, b: Option) -> bool:
    """True if ``a`` is at least as good as ``b`` on every axis and strictly better on one."""
    if not set(b.servable_sources) <= set(a.servable_sources):
        return False
    a_key = (a.capacity_rps / a.slots, -a.slots, -a.precision_rank, len(a.servable_sources))
    b_key = (b.capacity_rps / b.slots, -b.slots, -b.precision_rank, len(b.servable_sources))
    at_least = all(x >= y - 1e-12 for x, y in zip(a_key, b_key, strict=True))
    if not at_least:
        return False
    if a_key != b_key:
        return True
    return a.index < b.index  # identical on every axis: keep the first


def _renumber(option: Option, index: int) -> Option:
    from dataclasses import replace

    return replace(option, index=index)


def _previous_replicas(
    inputs: PlannerInputs,
    pools: list[GpuPool],
    options: list[Option],
    workloads: list[WorkloadDemand],
) -> tuple[list[PreviousReplica], list[str]]:
    """Match the previous plan's replicas to today's options; list those whose node is gone."""
    if inputs.previous is None:
        return [], []
    healthy = {n.name: n for n in inputs.nodes if n.healthy}
    workload_index = {w.name: w.index for w in workloads}
    pool_of: dict[tuple[str, int], GpuPool] = {}
    for pool in pools:
        for node in pool.node_names:
            for gpu in pool.gpu_indices:
                pool_of[(node, gpu)] = pool
    option_of = {
        (o.workload, o.pool, o.precision, o.tensor_parallel, o.share): o.index for o in options
    }
    kept: list[PreviousReplica] = []
    released: list[str] = []
    for assignment in inputs.previous.spec.assignments:
        label = f"{assignment.workload} on {assignment.node} gpus {assignment.gpus}"
        if assignment.node not in healthy:
            released.append(f"{label}: node gone or unhealthy")
            continue
        if assignment.workload not in workload_index:
            released.append(f"{label}: workload no longer requested")
            continue
        found = pool_of.get((assignment.node, assignment.gpus[0]))
        w = workload_index[assignment.workload]
        share = assignment.gpu_share
        option = None
        if found is not None:
            option = option_of.get(
                (w, found.index, assignment.precision, assignment.tensor_parallel, share)
            )
        kept.append(
            PreviousReplica(
                workload=w,
                node=assignment.node,
                gpus=tuple(assignment.gpus),
                precision=assignment.precision,
                tensor_parallel=assignment.tensor_parallel,
                option=option,
                pinned=assignment.pinned,
            )
        )
    return kept, released


__all__ = [
    "COMPILE_FAMILIES",
    "ClaimLevel",
    "LatencyLookup",
    "OptionPrediction",
    "PlannerInputs",
    "Predictor",
    "compile_problem",
]
