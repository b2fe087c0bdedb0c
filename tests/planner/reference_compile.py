"""The per-pool compile loop, kept as the oracle for ``gridplace.planner.options``.

This is how compile enumerated candidate options before it was vectorized: one Python loop over
workloads x pools x precision x TP x share, one ``Option`` per candidate, candidate selection on
the objects. Slow (minutes at 10,000 nodes x 1,000 workloads) but plain; the vectorized compile
must give the same ``Problem`` on every grid the tests build.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

from gridplace.planner.candidates import (
    CANDIDATE_COVER,
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    OPTION_BUDGET,
    drop_dominated,
)
from gridplace.planner.compile import (
    _demand,
    _model,
    _rule_failure,
    _trust_failure,
    assemble_problem,
    selection_order,
)
from gridplace.planner.core import SHARE_FACTORS, SLOTS_PER_GPU, TTFT_BUDGET_STEP_MS
from gridplace.planner.options import MAX_TENSOR_PARALLEL, _signature
from gridplace.planner.pools import build_pools
from gridplace.planner.ports import (
    OptionPredictor,
    PlannerInputs,
    PredictionQuery,
    RttLookup,
)
from gridplace.planner.previous import previous_keys
from gridplace.planner.problem import (
    GpuPool,
    Option,
    Problem,
    Rejection,
    WorkloadDemand,
)
from gridplace.planner.rules import Reason
from gridplace.specs import GPUModelSpec, InferenceWorkload, ModelArchitectureSpec

OptionKey = tuple[int, int, object, int, int]


def _tensor_parallel_degrees(gpus_per_node: int) -> list[int]:
    degrees, tp = [], 1
    while tp <= min(gpus_per_node, MAX_TENSOR_PARALLEL):
        degrees.append(tp)
        tp *= 2
    return degrees


def reference_compile(
    inputs: PlannerInputs, predictor: OptionPredictor, latency: RttLookup
) -> Problem:
    """Build the Problem: pools, surviving options, rejections with reasons, previous replicas."""
    pools, pool_gpus = build_pools(inputs.nodes, inputs.catalog)
    network = _PoolNetwork(pools, latency)
    keep = previous_keys(inputs, pools)
    per_workload = max(
        MIN_CANDIDATES, min(MAX_CANDIDATES, OPTION_BUDGET // max(1, len(inputs.workloads)))
    )
    workloads: list[WorkloadDemand] = []
    every: list[list[Option]] = []
    rejections: list[Rejection] = []
    for w_index, workload in enumerate(inputs.workloads):
        model_id, model = _model(workload, inputs.catalog)
        demand = _demand(w_index, workload, model_id, inputs.headroom)
        workloads.append(demand)
        candidates, dropped = _candidates(
            demand, workload, model, pools, pool_gpus, predictor, network
        )
        rejections.extend(dropped)
        every.append(candidates)
    # Selection in compile's order, each workload counting what those before it left of a pool.
    free = [p.node_count * p.gpus_per_node * SLOTS_PER_GPU for p in pools]
    for w_index in (w for members in selection_order(inputs) for w in members):
        chosen = select_candidates_reference(
            every[w_index], workloads[w_index], pools, keep, per_workload, free
        )
        every[w_index] = drop_dominated(chosen, keep)
        _reserve_reference(every[w_index], workloads[w_index], pools, free)
    options: list[Option] = []
    for candidates in every:
        base = len(options)
        options.extend([replace(o, index=base + i) for i, o in enumerate(candidates)])
    return assemble_problem(inputs, workloads, pools, options, rejections)


class _PoolNetwork:
    """p99 RTT from each client region to each pool (its worst node), computed once per pair."""

    def __init__(self, pools: list[GpuPool], latency: RttLookup) -> None:
        self._pools = pools
        self._latency = latency
        self._rtt: dict[tuple[int, str], float] = {}

    def rtt_ms(self, pool: int, region: str) -> float:
        key = (pool, region)
        if key not in self._rtt:
            names = self._pools[pool].node_names
            self._rtt[key] = max(self._latency.rtt_p99_ms(region, node) for node in names)
        return self._rtt[key]


def _candidates(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    model: ModelArchitectureSpec,
    pools: list[GpuPool],
    pool_gpus: list[GPUModelSpec],
    predictor: OptionPredictor,
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
        budget = (
            math.floor((spec.slo.ttft_ms - best_rtt) / TTFT_BUDGET_STEP_MS) * TTFT_BUDGET_STEP_MS
        )
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

        def reject(family: str, reason: Reason, covered: tuple[int, ...] = covered) -> None:
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
                            engine_options=spec.engine_options,
                        )
                    )
                    label = f"{precision.value} tp{tp}" + (f" 1/{share} GPU" if share > 1 else "")
                    failure = _rule_failure(prediction, spec.slo, budget, label)
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
                                queueing=prediction.queueing,
                            )
                        )
                    if unservable:
                        worst = prediction.prefill_ms + min(
                            network.rtt_ms(unservable[0], r) for r, _ in demand.sources
                        )
                        reject(
                            "slo-ttft",
                            Reason(label, "ttft", worst, spec.slo.ttft_ms, "ms"),
                            tuple(unservable),
                        )
    return found, rejections


def _room(option: Option, pools: list[GpuPool], free: list[int]) -> tuple[float, int]:
    """What the option could serve with the replicas of it its pool has left in ``free`` slots
    (all left: the whole pool), and those replicas."""
    pool = pools[option.pool]
    per_node = pool.gpus_per_node * SLOTS_PER_GPU // option.slots
    left = min(pool.node_count * per_node, free[option.pool] // option.slots)
    if left == pool.node_count * per_node:
        return option.capacity_rps * pool.node_count * per_node, left
    return option.capacity_rps * left, left


def _selection_key(option: Option, wanted: float) -> tuple[float, int, int, int, int]:
    """Cheapest way to serve the whole demand with this option alone first (so granularity
    counts: a small replica can beat a big efficient one); ties: preferred precision, more
    sources, pool order."""
    return (
        math.ceil(wanted / option.capacity_rps) * option.cost_per_hour, option.precision_rank,
        -len(option.servable_sources), option.pool, option.index,
    )  # fmt: skip


def select_candidates_reference(
    candidates: list[Option],
    demand: WorkloadDemand,
    pools: list[GpuPool],
    keep: set[OptionKey],
    limit: int,
    free: list[int],
) -> list[Option]:
    """Keep the cheapest candidates per request/s until they could serve every source
    ``CANDIDATE_COVER`` times over (and at least ``limit``), plus any the previous
    plan uses; each counts the replicas its pool has left in ``free`` slots, and one with none
    left there is passed over unless the previous plan uses it or fewer than ``limit`` are kept
    past the others.
    """
    if len(candidates) <= limit:
        return candidates
    ordered = sorted(candidates, key=lambda o: _selection_key(o, demand.booked_rps))
    need = {region: demand.booked_rps * share * CANDIDATE_COVER
            for region, share in demand.sources}  # fmt: skip
    kept: list[Option] = []
    closed: list[Option] = []
    for option in ordered:
        potential, replicas = _room(option, pools, free)
        useful = any(need[r] > 0 for r in option.servable_sources)
        forced = (demand.index, option.pool, option.precision, option.tensor_parallel,
                  option.share) in keep  # fmt: skip
        if not forced and replicas == 0:
            closed.append(option)
            continue
        if not (useful or forced or len(kept) < limit):
            continue
        kept.append(option)
        for region in option.servable_sources:
            need[region] -= potential
    kept.extend(closed[: max(0, limit - len(kept))])
    return sorted(kept, key=lambda o: o.index)


def _reserve_reference(
    kept: list[Option], demand: WorkloadDemand, pools: list[GpuPool], free: list[int]
) -> None:
    """Take the replicas the workload's booked demand needs (each source's share once) from the
    ``free`` slots of each pool: on its kept options in selection's order, as many as each pool
    has left."""
    need = {region: demand.booked_rps * share for region, share in demand.sources}
    for option in sorted(kept, key=lambda o: _selection_key(o, demand.booked_rps)):
        sources = [r for r in option.servable_sources if need[r] > 0]
        if not sources:
            continue
        wanted = sum(need[r] for r in sources)
        replicas = min(_room(option, pools, free)[1], math.ceil(wanted / option.capacity_rps))
        free[option.pool] -= replicas * option.slots
        served = min(replicas * option.capacity_rps, wanted)
        for region in sources:
            part = min(need[region], served)
            need[region], served = need[region] - part, served - part
        if all(value <= 0 for value in need.values()):
            return
