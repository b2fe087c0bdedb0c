"""Compile specs into a ``Problem``: node classes, candidate options and recorded rejections.

Pure (STYLE.md rule 2): no I/O, inputs untouched. Predictions come from an ``OptionPredictor``
(the performance model) and network RTTs from an ``RttLookup`` (topology): the ports, passed in.

Node classes (``pools.build_pools``): healthy nodes that are alike are one class; each GPU group
of a class is a ``GpuPool``. For every workload x pool x precision x TP degree (powers of two up
to the node's GPU count) x GPU share (1, 2 or 4 replicas per GPU, TP 1 only) the predictor is
asked for TTFT, ITL, VRAM and per-replica capacity; the option is kept only if every
compile-time rule of ``rules.RULES`` holds, checked in the registry's order; a dropped option
leaves a ``Rejection`` with its numbers (a ``rules.Reason``). Options no better than another
on any axis are dropped.

The enumeration itself is ``options.enumerate_candidates`` (vectorized over pools), once for
workloads that ask the same of the same pools; the questions go through
``group_predictor.GroupPredictor`` (once per workload kind and group, kept across plans by
``compile_cache``); this module orders the steps. Rejections are built per workload when read
(``problem.Rejections``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cache, partial

import numpy as np
import numpy.typing as npt

from gridplace import collector
from gridplace.planner.booking import booking_factor, usable_capacity_rps
from gridplace.planner.candidates import (
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    OPTION_BUDGET,
    PoolRoom,
    reserve,
    select_candidates,
    undominated_rows,
)
from gridplace.planner.compile_cache import PROCESS_CACHE, CompileCache, CompileView
from gridplace.planner.group_predictor import GroupPredictor
from gridplace.planner.options import (
    CandidateRows,
    PoolGrid,
    PredictGroups,
    enumerate_candidates,
    rejected_candidates,
)
from gridplace.planner.pipeline_options import PipelineEnumerator
from gridplace.planner.pools import build_pools
from gridplace.planner.ports import (
    OptionPrediction,
    OptionPredictor,
    PlannerInputs,
    PredictionQuery,
    RttLookup,
    StagePredictor,
)
from gridplace.planner.previous import previous_keys, previous_replicas, warm_nodes
from gridplace.planner.problem import (
    GpuPool,
    Option,
    Problem,
    Rejection,
    Rejections,
    WorkloadDemand,
)
from gridplace.planner.rules import COMPILE_RULES, PIPELINE_RULES, Reason, implements
from gridplace.specs import (
    Catalog,
    InferenceWorkload,
    ModelArchitectureSpec,
    Precision,
)
from gridplace.specs.workload import ServiceLevel, TrustRequirement

# Capacity booked above the mean demand (1.0 = twice the mean) for a workload whose traffic
# declares no burstiness (one that does is booked for its measured peaks: booking.py). Request
# rates are bursty: in the Azure LLM inference traces the per-minute rate runs 0.6-1.5x its
# hourly mean, and a node that fails takes one of a workload's few replicas with it.
DEFAULT_HEADROOM = 1.0


def _model(workload: InferenceWorkload, catalog: Catalog) -> tuple[str, ModelArchitectureSpec]:
    reference = workload.spec.model
    if isinstance(reference, str):
        return reference, catalog.models[reference]
    return f"inline:{workload.name}", reference


@implements("trust")
def _trust_failure(trust: TrustRequirement | None, pool: GpuPool) -> Reason | None:
    """Hard: the pool's claims and reliability meet the workload's trust requirement."""
    if trust is None:
        return None
    if pool.claims.rank < trust.min_claims.rank:
        return Reason("", "claims", pool.claims.value, trust.min_claims.value)
    if pool.reliability < trust.min_reliability:
        return Reason("", "reliability", pool.reliability, trust.min_reliability)
    return None


def compile_problem(
    inputs: PlannerInputs,
    predictor: OptionPredictor,
    latency: RttLookup,
    cache: CompileCache | None = PROCESS_CACHE,
    *,
    stage_predictor: StagePredictor | None = None,
) -> Problem:
    """Build the Problem: pools, surviving options (pipelines among them where a workload
    allows them: ``pipeline_options``), rejections with reasons, previous replicas (predictions
    kept in ``cache`` across compiles: ``compile_cache``; None: not kept)."""
    with collector.paused():  # see gridplace.collector
        return _compile(inputs, predictor, latency, cache, stage_predictor)


def _compile(
    inputs: PlannerInputs,
    predictor: OptionPredictor,
    latency: RttLookup,
    cache: CompileCache | None,
    stage_predictor: StagePredictor | None,
) -> Problem:
    pools, pool_gpus = build_pools(inputs.nodes, inputs.catalog)
    grid = PoolGrid(pools, pool_gpus, latency.rtt_p99_ms, getattr(latency, "rtt_p99_many", None))
    pipelines = PipelineEnumerator(pools, pool_gpus, inputs.nodes, latency, stage_predictor)
    view = CompileView.open(cache, predictor, grid)
    group_predictor = GroupPredictor(predictor, grid, view, _rule_failure, _booked_ok)
    keep = _by_workload(previous_keys(inputs, pools))
    per_workload = max(
        MIN_CANDIDATES, min(MAX_CANDIDATES, OPTION_BUDGET // max(1, len(inputs.workloads)))
    )
    workloads = [
        _demand(w, workload, _model(workload, inputs.catalog)[0], inputs.headroom)
        for w, workload in enumerate(inputs.workloads)
    ]
    predicts = [
        group_predictor.for_workload(workload, *_model(workload, inputs.catalog))
        for workload in inputs.workloads
    ]
    singles: dict[int, CandidateRows] = {}  # per workload: the rows it keeps
    room = PoolRoom(pools)  # what the workloads selected so far left of each pool
    # Workloads that ask the same of the same pools (one kind, TTFT target, sources and trust)
    # share one enumeration; selection and everything after it is per workload.
    for members in selection_order(inputs):
        first = inputs.workloads[members[0]]
        eligible = _trusted(first.spec.trust, grid)
        rows = enumerate_candidates(
            workloads[members[0]], first, grid, eligible, predicts[members[0]]
        )
        for w in members:
            singles[w] = _single_rows(inputs, workloads[w], rows, room, keep[w], per_workload)
    options: list[Option] = []
    builders: list[Callable[[], list[Rejection]]] = []
    for w, (workload, demand, predict) in enumerate(
        zip(inputs.workloads, workloads, predicts, strict=True)
    ):
        allowed = _trusted(workload.spec.trust, grid).tolist() if workload.spec.pipeline else []
        model = _model(workload, inputs.catalog)
        base = len(options)
        kept = singles.pop(w)
        single = [kept.option(r, demand, pools, base + r) for r in range(len(kept))]
        split, refused = pipelines.options(workload, demand, model, allowed, single)
        options.extend(single)
        options.extend([replace(o, index=base + len(single) + i) for i, o in enumerate(split)])
        builders.append(partial(_rejections_of, demand, workload, grid, predict, tuple(refused)))
    return assemble_problem(inputs, workloads, pools, options, Rejections(builders))


def selection_order(inputs: PlannerInputs) -> list[list[int]]:
    """The order compile selects candidates in (each workload counts only what those before it
    left of a pool: ``candidates.PoolRoom``), as groups of workloads that ask the same of the
    same pools (kind, TTFT target, sources in order, trust: one enumeration each). Strictest
    first (lowest TTFT target, then highest trust), so that the workloads few pools can serve
    take them before those that can go further; within a group highest priority first. Ties:
    input order (the same plan on any machine)."""
    alike: dict[tuple[object, ...], list[int]] = {}
    for w, workload in enumerate(inputs.workloads):
        spec = workload.spec
        key = (
            GroupPredictor.kind_of(workload, *_model(workload, inputs.catalog)),
            spec.slo.ttft_ms,
            tuple(dict.fromkeys(s.region for s in spec.traffic.sources)),
            spec.trust,
        )
        alike.setdefault(key, []).append(w)

    def strictness(members: list[int]) -> tuple[float, int, float, int]:
        spec = inputs.workloads[members[0]].spec
        claims = spec.trust.min_claims.rank if spec.trust else -1
        reliability = spec.trust.min_reliability if spec.trust else 0.0
        return (spec.slo.ttft_ms, -claims, -reliability, members[0])

    def priority(w: int) -> tuple[int, int]:
        return (-inputs.workloads[w].spec.priority, w)

    return [sorted(members, key=priority) for members in sorted(alike.values(), key=strictness)]


def _single_rows(
    inputs: PlannerInputs,
    demand: WorkloadDemand,
    rows: CandidateRows,
    room: PoolRoom,
    keep: set[tuple[int, Precision, int, int]],
    limit: int,
) -> CandidateRows:
    """One workload's options on single nodes, as rows: its booking applied to the enumerated
    rows, the cheapest ones selected (and the previous plan's), dominated ones dropped, its
    booked demand then taken from ``room``."""
    traffic = inputs.workloads[demand.index].spec.traffic
    if inputs.headroom is None and traffic.burstiness is not None:
        # The traffic decides the booking: replicas keep spare concurrency too (booking.py).
        in_system_ms = rows.prefill_ms + traffic.output_tokens * rows.itl_ms
        rows = replace(rows, capacity_rps=usable_capacity_rps(rows.capacity_rps, in_system_ms))
    forced = _forced_rows(rows, keep)
    selected = select_candidates(rows, demand, room, forced, limit)
    kept = np.array(undominated_rows(rows, selected, forced), dtype=np.int64)
    reserve(rows, demand, room, kept)
    # Only the kept rows outlive the enumeration (all of them were ~420 MB at 10,000 x 1,000).
    return replace(
        rows, pool=rows.pool[kept], config=rows.config[kept], prefill_ms=rows.prefill_ms[kept],
        itl_ms=rows.itl_ms[kept], capacity_rps=rows.capacity_rps[kept],
        vram_gib=rows.vram_gib[kept], cost_per_hour=rows.cost_per_hour[kept],
        ttft_ms=rows.ttft_ms[kept], servable=rows.servable[kept],
        answer=None if rows.answer is None else rows.answer[kept],
    )  # fmt: skip


def _trusted(trust: TrustRequirement | None, grid: PoolGrid) -> npt.NDArray[np.int64]:
    """The pools that meet ``trust`` (``_trust_failure`` over every pool at once)."""
    if trust is None:
        return np.arange(len(grid.pools), dtype=np.int64)
    ok = (grid.claims_rank >= trust.min_claims.rank) & (grid.reliability >= trust.min_reliability)
    return np.flatnonzero(ok)


def _rejections_of(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    grid: PoolGrid,
    predict: PredictGroups,
    refused: tuple[Rejection, ...],
) -> list[Rejection]:
    """One workload's rejections in compile's order: trust per pool, the compile-time rules per
    group of pools (the same predictions as its enumeration), then pipelines refused. Built only
    when read (``problem.Rejections``): a 10,000-node grid has over a million."""
    found: list[Rejection] = []
    trust = workload.spec.trust
    if trust is not None:
        for pool in grid.pools:
            failure = _trust_failure(trust, pool)
            if failure is not None:
                found.append(
                    Rejection(demand.index, pool.index, "trust", failure, pool.node_count,
                              (pool.index,))
                )  # fmt: skip
    eligible = _trusted(trust, grid)
    found.extend(rejected_candidates(demand, workload, grid, eligible, predict))
    found.extend(refused)
    return found


def assemble_problem(
    inputs: PlannerInputs,
    workloads: list[WorkloadDemand],
    pools: list[GpuPool],
    options: list[Option],
    rejections: Sequence[Rejection],
) -> Problem:
    """The Problem of compiled workloads, pools, options and rejections, with the previous
    plan's replicas matched to options (or released)."""
    previous, released = previous_replicas(inputs, pools, options, workloads)
    return Problem(
        workloads=tuple(workloads),
        pools=tuple(pools),
        options=tuple(options),
        rejections=rejections if isinstance(rejections, Rejections) else tuple(rejections),
        node_gpu_counts={n.name: n.spec.gpu_count for n in inputs.nodes if n.healthy},
        previous=tuple(previous),
        released=tuple(released),
        budget_per_hour=inputs.budget_per_hour,
        warm=warm_nodes(inputs, workloads),
    )


def _demand(
    index: int, workload: InferenceWorkload, model_id: str, headroom: float | None
) -> WorkloadDemand:
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
        min_share=spec.replicas.min_share,
        booking=booking_factor(
            spec.traffic.burstiness, spec.slo.ttft_ms, DEFAULT_HEADROOM, headroom
        ),
    )


def _by_workload(
    keep: set[tuple[int, int, Precision, int, int]],
) -> defaultdict[int, set[tuple[int, Precision, int, int]]]:
    """The previous plan's (pool, precision, TP, share) per workload."""
    by_workload: defaultdict[int, set[tuple[int, Precision, int, int]]] = defaultdict(set)
    for workload, pool, precision, tensor_parallel, share in keep:
        by_workload[workload].add((pool, precision, tensor_parallel, share))
    return by_workload


def _forced_rows(
    rows: CandidateRows, keep: set[tuple[int, Precision, int, int]]
) -> npt.NDArray[np.bool_]:
    """Rows whose (pool, precision, TP, share) the previous plan uses: they always stay."""
    forced = np.zeros(len(rows), dtype=bool)
    for pool, precision, tensor_parallel, share in keep:
        configs = [
            i
            for i, c in enumerate(rows.configs)
            if (c.precision, c.tensor_parallel, c.share) == (precision, tensor_parallel, share)
        ]
        if configs:
            forced |= (rows.pool == pool) & np.isin(rows.config, configs)
    return forced


def _rule_failure(
    prediction: OptionPrediction, slo: ServiceLevel, ttft_budget_ms: float, label: str
) -> tuple[str, Reason] | None:
    """(rule id, reason) of the first compile-time rule a prediction breaks, in the registry's
    order, or None. Trust is checked per pool before any prediction (``_trust_failure``)."""
    for rule_id, check in _prediction_checks():
        reason = check(prediction, slo, ttft_budget_ms, label)
        if reason is not None:
            return rule_id, reason
    return None


def _booked_ok(itl_ms: npt.NDArray[np.float64], slo: ServiceLevel) -> npt.NDArray[np.bool_]:
    """``_rule_failure`` is None, at any budget, for booked predictions (supported, fitting, a
    positive rate) of these ITLs: of the rules below only slo-itl reads a figure that differs
    between them (``tests/planner/test_booked_verdicts.py`` holds them to the rules)."""
    ok: npt.NDArray[np.bool_] = itl_ms <= slo.itl_ms
    return ok


@cache
def _prediction_checks() -> tuple[tuple[str, Callable[..., Reason | None]], ...]:
    """The compile-time rules a prediction meets, in order, with their functions (looked up
    once: compile checks ~100,000 predictions on a 10,000-node grid)."""
    return tuple(
        (rule.id, rule.function)
        for rule in COMPILE_RULES
        if rule.id != "trust" and rule.id not in PIPELINE_RULES
    )


@implements("precision-support")
def _precision_support(
    prediction: OptionPrediction, slo: ServiceLevel, ttft_budget_ms: float, label: str
) -> Reason | None:
    """Hard: the GPU and engine support the precision."""
    if prediction.supported:
        return None
    return Reason(label, "support", "", "", detail=prediction.reason)


@implements("vram-per-gpu")
def _vram_per_gpu(
    prediction: OptionPrediction, slo: ServiceLevel, ttft_budget_ms: float, label: str
) -> Reason | None:
    """Hard: one replica's weights, KV cache and runtime fit its GPU (or its share of one)."""
    if prediction.fits:
        return None
    return Reason(label, "vram", prediction.vram_gib, prediction.vram_available_gib, "GiB")


@implements("slo-itl")
def _slo_itl(
    prediction: OptionPrediction, slo: ServiceLevel, ttft_budget_ms: float, label: str
) -> Reason | None:
    """Hard: the predicted inter-token latency is within the workload's target."""
    if prediction.itl_ms <= slo.itl_ms:
        return None
    return Reason(label, "itl", prediction.itl_ms, slo.itl_ms, "ms")


@implements("slo-ttft")
def _slo_ttft(
    prediction: OptionPrediction, slo: ServiceLevel, ttft_budget_ms: float, label: str
) -> Reason | None:
    """Hard: some load fits inside the TTFT target after the nearest source's network RTT
    (``ttft_budget_ms`` is what the target leaves); per-source TTFT is checked in
    ``options``."""
    if prediction.capacity_rps > 0:
        return None
    network_ms = slo.ttft_ms - ttft_budget_ms
    return Reason(
        label, "ttft-no-load", prediction.prefill_ms, slo.ttft_ms, "ms", network_ms=network_ms
    )


__all__ = [
    "DEFAULT_HEADROOM",
    "OptionPrediction",  # the ports' value types, still importable from here for older callers
    "PlannerInputs",
    "PredictionQuery",
    "compile_problem",
]
