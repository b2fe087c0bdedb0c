"""Compile specs into a ``Problem``: node classes, candidate options and recorded rejections.

Pure (STYLE.md rule 2): no I/O, inputs untouched. Predictions come from a ``Predictor`` (the
performance model) and network RTTs from a ``LatencyLookup`` (topology); both are passed in.

Node classes (``pools.build_pools``): healthy nodes that are alike are one class; each GPU group
of a class is a ``GpuPool``. For every workload x pool x precision x TP degree (powers of two up
to the node's GPU count) x GPU share (1, 2 or 4 replicas per GPU, TP 1 only) the predictor is
asked for TTFT, ITL, VRAM and per-replica capacity; the option is kept only if every compile-time
rule holds. The rule families checked here, in order, are ``trust``, ``precision-support``,
``vram``, ``slo-itl``, ``slo-ttft`` and ``demand-coverage`` (an option with no capacity inside the
SLO); a dropped option leaves a ``Rejection`` with its numbers. Options no better than another
on any axis are dropped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gridplace.planner.candidates import (
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    OPTION_BUDGET,
    drop_dominated,
    select_candidates,
)
from gridplace.planner.pools import build_pools
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

# Capacity booked above the mean demand (1.0 = twice the mean). Request rates are bursty: in the
# Azure LLM inference traces the per-minute rate runs 0.6-1.5x its hourly mean, and a node that
# fails takes one of a workload's few replicas with it. bench/sla.py measured SLA attainment on
# the example grid at 98.1% with 0.5 and 99.7% with 1.0 (cost +21%).
DEFAULT_HEADROOM = 1.0
BUDGET_STEP_MS = 25.0  # TTFT budgets are rounded down to this step (conservative)
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


@dataclass(frozen=True)
class PredictionQuery:
    """One replica configuration to predict, and the SLO and traffic it must serve."""

    model: ModelArchitectureSpec
    model_id: str
    gpu: GPUModelSpec  # after the node's overrides, whole GPU
    gpu_id: str
    precision: Precision
    engine: Engine
    tensor_parallel: int
    share: int  # replicas per GPU: the replica gets 1/share of it
    interconnect: Interconnect
    throttle_ratio: float
    ttft_budget_ms: float  # the TTFT target minus the best network RTT
    itl_slo_ms: float
    prompt_tokens: int
    output_tokens: int


class Predictor(Protocol):
    def __call__(self, query: PredictionQuery) -> OptionPrediction: ...


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
    headroom: float = DEFAULT_HEADROOM


def _model(workload: InferenceWorkload, catalog: Catalog) -> tuple[str, ModelArchitectureSpec]:
    reference = workload.spec.model
    if isinstance(reference, str):
        return reference, catalog.models[reference]
    return f"inline:{workload.name}", reference


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
    network = _PoolNetwork(pools, latency)
    keep = _previous_keys(inputs, pools)
    per_workload = max(
        MIN_CANDIDATES, min(MAX_CANDIDATES, OPTION_BUDGET // max(1, len(inputs.workloads)))
    )
    workloads: list[WorkloadDemand] = []
    options: list[Option] = []
    rejections: list[Rejection] = []
    for w_index, workload in enumerate(inputs.workloads):
        model_id, model = _model(workload, inputs.catalog)
        demand = _demand(w_index, workload, model_id)
        workloads.append(demand)
        candidates, dropped = _candidates(
            demand, workload, model, pools, pool_gpus, predictor, network
        )
        rejections.extend(dropped)
        candidates = select_candidates(
            candidates, demand, pools, inputs.headroom, keep, per_workload
        )
        candidates = drop_dominated(candidates, keep)
        base = len(options)
        options.extend([replace(o, index=base + i) for i, o in enumerate(candidates)])
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


def _demand(index: int, workload: InferenceWorkload, model_id: str) -> WorkloadDemand:
    spec = workload.spec
    return WorkloadDemand(
        index=index,
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
        node_failures=spec.redundancy.node_failures,
        exempt_reliability=spec.redundancy.exempt_reliability,
    )


class _PoolNetwork:
    """p99 RTT from each client region to each pool (its worst node), computed once per pair."""

    def __init__(self, pools: list[GpuPool], latency: LatencyLookup) -> None:
        self._pools = pools
        self._latency = latency
        self._rtt: dict[tuple[int, str], float] = {}

    def rtt_ms(self, pool: int, region: str) -> float:
        key = (pool, region)
        if key not in self._rtt:
            names = self._pools[pool].node_names
            self._rtt[key] = max(self._latency.rtt_p99_ms(region, node) for node in names)
        return self._rtt[key]


def _signature(pool: GpuPool, gpu: GPUModelSpec) -> tuple[object, ...]:
    """Pools with equal signatures get equal predictions (price and place aside)."""
    return (
        pool.gpu_model, gpu.memory_gib, gpu.memory_bandwidth_gbps, pool.gpus_per_node,
        pool.interconnect, pool.throttle_ratio,
    )  # fmt: skip


def _candidates(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    model: ModelArchitectureSpec,
    pools: list[GpuPool],
    pool_gpus: list[GPUModelSpec],
    predictor: Predictor,
    network: _PoolNetwork,
) -> tuple[list[Option], list[Rejection]]:
    """Every option of one workload that meets the compile-time rules, and why others do not.

    Pools sharing a signature and a TTFT budget (SLO minus their best RTT, in 25 ms steps) are
    predicted once; a rejection then covers all of their nodes.
    """
    spec = workload.spec
    rejections: list[Rejection] = []
    groups: dict[tuple[object, ...], list[GpuPool]] = defaultdict(list)
    for pool in pools:
        trust = _trust_failure(spec.trust, pool)
        if trust is not None:
            rejections.append(
                Rejection(demand.index, pool.index, "trust", trust, pool.node_count, (pool.index,))
            )
            continue
        best_rtt = min(network.rtt_ms(pool.index, region) for region, _ in demand.sources)
        budget = math.floor((spec.slo.ttft_ms - best_rtt) / BUDGET_STEP_MS) * BUDGET_STEP_MS
        groups[(*_signature(pool, pool_gpus[pool.index]), budget)].append(pool)
    rtts = {
        pool.index: {region: network.rtt_ms(pool.index, region) for region, _ in demand.sources}
        for members in groups.values()
        for pool in members
    }
    found: list[Option] = []
    for key, members in groups.items():
        first = members[0]
        covered = tuple(p.index for p in members)
        budget = float(key[-1])  # type: ignore[arg-type]

        def reject(family: str, reason: str, covered: tuple[int, ...] = covered) -> None:
            count = sum(pools[i].node_count for i in covered)
            rejections.append(Rejection(demand.index, covered[0], family, reason, count, covered))

        for rank, precision in enumerate(spec.precisions):
            for tp in _tensor_parallel_degrees(first.gpus_per_node):
                for share in SHARE_FACTORS if tp == 1 else (1,):
                    prediction = predictor(
                        PredictionQuery(
                            model=model,
                            model_id=demand.model,
                            gpu=pool_gpus[first.index],
                            gpu_id=first.gpu_model,
                            precision=precision,
                            engine=spec.engine,
                            tensor_parallel=tp,
                            share=share,
                            interconnect=first.interconnect,
                            throttle_ratio=first.throttle_ratio,
                            ttft_budget_ms=budget,
                            itl_slo_ms=spec.slo.itl_ms,
                            prompt_tokens=spec.traffic.prompt_tokens,
                            output_tokens=spec.traffic.output_tokens,
                        )
                    )
                    label = f"{precision.value} tp{tp}" + (f" 1/{share} GPU" if share > 1 else "")
                    failure = _rule_failure(prediction, spec.slo.itl_ms, label)
                    if failure is not None:
                        reject(*failure)
                        continue
                    unservable: list[int] = []
                    for pool in members:
                        ttft = {
                            region: prediction.prefill_ms + rtt
                            for region, rtt in rtts[pool.index].items()
                        }
                        servable = tuple(r for r, t in ttft.items() if t <= spec.slo.ttft_ms)
                        if not servable:
                            unservable.append(pool.index)
                            continue
                        found.append(
                            Option(
                                index=len(found),
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
                    if unservable:
                        worst = prediction.prefill_ms + min(
                            network.rtt_ms(unservable[0], r) for r, _ in demand.sources
                        )
                        reject(
                            "slo-ttft",
                            f"{label}: TTFT {worst:.0f} ms incl. network > {spec.slo.ttft_ms:g} ms",
                            tuple(unservable),
                        )
    return found, rejections


def _rule_failure(
    prediction: OptionPrediction, itl_slo_ms: float, label: str
) -> tuple[str, str] | None:
    """(family, reason) of the first compile-time rule a prediction breaks, or None."""
    if not prediction.supported:
        return "precision-support", f"{label}: {prediction.reason}"
    if not prediction.fits:
        return (
            "vram",
            f"{label}: needs {prediction.vram_gib:.1f} GiB per GPU, has "
            f"{prediction.vram_available_gib:.1f}",
        )
    if prediction.itl_ms > itl_slo_ms:
        return "slo-itl", f"{label}: ITL {prediction.itl_ms:.0f} ms > {itl_slo_ms:g} ms"
    if prediction.capacity_rps <= 0:
        return (
            "slo-ttft",
            f"{label}: TTFT {prediction.prefill_ms:.0f} ms before network: no load fits",
        )
    return None


def _previous_keys(
    inputs: PlannerInputs, pools: list[GpuPool]
) -> set[tuple[int, int, Precision, int, int]]:
    """(workload, pool, precision, tp, share) of every replica in the previous plan."""
    if inputs.previous is None:
        return set()
    workload_index = {w.name: i for i, w in enumerate(inputs.workloads)}
    pool_of = {(n, g): p.index for p in pools for n in p.node_names for g in p.gpu_indices}
    keys: set[tuple[int, int, Precision, int, int]] = set()
    for a in inputs.previous.spec.assignments:
        pool = pool_of.get((a.node, a.gpus[0]))
        if pool is not None and a.workload in workload_index:
            keys.add(
                (workload_index[a.workload], pool, a.precision, a.tensor_parallel, a.gpu_share)
            )
    return keys


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
