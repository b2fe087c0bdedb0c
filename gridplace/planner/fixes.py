"""Fixes that work: for a workload the plan leaves (partly) unplaced, the changes to the inputs
that make it placeable, each tried before it is shown.

Owns finding fixes (what to try, in which order; a check is ``fix_checks``'s); must not render
reasons (``explain``) or parse their text: candidates come from the inputs and from compiles of
the workload alone on relaxed copies of them (every precision allowed, an SLO field at looser
targets, catalog nodes added), which say which values can work and what the predicted figures
are. A candidate is searched for on the reduced problem (``fix_reduced``: the workload alone on
the GPUs the base plan leaves it, compile first, then CP-SAT), and the one a kind settles on is
checked once on the whole problem (every workload, the unmet-demand stage of the CP-SAT plan:
whether all demand can be covered); it is shown only when both place the workload fully. Order,
smallest change first: a precision, an SLO relaxation (the smallest value that works: bisection
over the predicted figures, then between them), replicas.max, the budget, a pipeline over the
nodes, then hardware (the cheapest node as offered in the inputs; GPUs no input offers after,
fewest GPU-GiB first). When no single change works, two together: a precision with nodes, then
nodes with replicas.max or an SLO value.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from gridplace.planner.fix_changes import apply_change, offer_prices, peer_link
from gridplace.planner.fix_checks import (
    DEFAULT_BUDGET_S,
    FixSearch,
    check_reduced,
    check_whole,
    compile_charged,
    covered,
    fix_budget,
    options_alone,
    search_for,
)
from gridplace.planner.fix_reduced import alone, reduced_inputs
from gridplace.planner.ports import PlannerInputs, RttLookup
from gridplace.specs import InferenceWorkload, PlacementPlan, Precision
from gridplace.specs.fixes import (
    AddNodes,
    AllowPipeline,
    AllowPrecision,
    Change,
    Fix,
    RaiseBudget,
    RaiseReplicasMax,
    RelaxSlo,
    SloField,
)
from gridplace.specs.plan import Unplaced

__all__ = ["DEFAULT_BUDGET_S", "FixSearch", "find_fixes", "fix_budget", "search_for", "with_fixes"]

# Precisions a hint may allow, the least lossy first (GGUF types only for llama.cpp workloads).
GENERIC_PRECISIONS = (Precision.BF16, Precision.FP16, Precision.FP8, Precision.INT8, Precision.INT4)
GPUS_PER_NODE = (1, 2, 4, 8)
SLO_CEILING_MS = {"ttftMs": 600_000.0, "itlMs": 60_000.0}
SLO_LADDER = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)  # looser targets compiled in turn
SLO_RESOLUTION_MS, SLO_RESOLUTION = 0.1, 0.01  # how close to the smallest working value
MAX_NODE_TRIES = 3
PIPELINE_STAGES = (4, 16)  # pipeline.maxStages tried: the default, then the most allowed
NO_FIX = "no change tried (precision, SLO, replicas.max, budget, catalog nodes) places it"


def find_fixes(
    inputs: PlannerInputs, workload: str, search: FixSearch, latency: RttLookup
) -> list[Fix]:
    """Verified fixes for ``workload``, smallest change first (at most one per kind); two
    changes together when no single one works; [] when none was found in the budget."""

    def verified(found: Iterable[Fix]) -> list[Fix]:
        checked = (_verified(search, inputs, workload, fix, latency) for fix in found)
        return [fix for fix in checked if fix is not None]

    fixes = verified(_single_changes(inputs, workload, search, latency))
    return fixes or verified(_combined(inputs, workload, search, latency))


def _verified(search: FixSearch, inputs: PlannerInputs, workload: str, fix: Fix,
              latency: RttLookup) -> Fix | None:  # fmt: skip
    """``fix`` (found on the reduced problem) marked verified when the whole problem with its
    changes covers the workload too; None when it does not."""
    if fix.verified:
        return fix
    changed = _applied(inputs, workload, fix.changes)
    nodes_same = not any(isinstance(c, AddNodes) for c in fix.changes)
    if check_whole(search, changed, workload, latency if nodes_same else None) is None:
        return None
    return fix.model_copy(update={"verified": True})


def _applied(inputs: PlannerInputs, workload: str, changes: list[Change]) -> PlannerInputs:
    for change in changes:
        inputs = apply_change(inputs, workload, change)
    return inputs


def _single_changes(
    inputs: PlannerInputs, workload: str, search: FixSearch, latency: RttLookup
) -> Iterator[Fix]:
    finders = (
        _precision_fix,
        _slo_fix("itlMs"),
        _slo_fix("ttftMs"),
        _replicas_fix,
        _budget_fix,
        _pipeline_fix,
        _nodes_fix,
    )
    for finder in finders:
        if search.left_s() <= 0:
            return
        found = finder(inputs, workload, search, latency)
        if found is not None:
            yield found


def _try(
    search: FixSearch,
    inputs: PlannerInputs,
    workload: str,
    changes: list[Change],
    latency: RttLookup | None,
    whole: bool = False,
) -> Fix | None:
    """``changes`` tried on the reduced problem (a fix still to verify), or on the whole one
    (``whole``: verified when it works)."""
    changed = _applied(inputs, workload, changes)
    lookup = None if any(isinstance(c, AddNodes) for c in changes) else latency
    if whole:
        capacity = check_whole(search, changed, workload, lookup) if search.left_s() > 0 else None
    else:
        capacity = check_reduced(search, changed, workload, lookup)
    if capacity is None:
        return None
    return Fix(changes=changes, verified=whole, capacity_rps=round(capacity, 3))


def _workload(inputs: PlannerInputs, workload: str) -> InferenceWorkload:
    return next(w for w in inputs.workloads if w.name == workload)


def _open_precisions(inputs: PlannerInputs, workload: str, search: FixSearch,
                     latency: RttLookup | None) -> list[Precision]:  # fmt: skip
    """Precisions not allowed yet that compile keeps an option for (least lossy first)."""
    allowed = _workload(inputs, workload).spec.precisions
    extra = [p for p in GENERIC_PRECISIONS if p not in allowed]
    if not extra:
        return []
    widened = inputs
    for precision in extra:
        widened = apply_change(widened, workload, AllowPrecision(precision=precision))
    usable = {o.precision for o in options_alone(search, widened, workload, latency)}
    return [p for p in extra if p in usable]


def _precision_fix(inputs: PlannerInputs, workload: str, search: FixSearch,
                   latency: RttLookup | None) -> Fix | None:  # fmt: skip
    """The least lossy precision that places it: on the reduced problem first, then, when none
    does there (the GPUs it needs hold other workloads), on the whole problem."""
    precisions = _open_precisions(inputs, workload, search, latency)
    for whole in (False, True):
        for precision in precisions:
            change: list[Change] = [AllowPrecision(precision=precision)]
            fix = _try(search, inputs, workload, change, latency, whole)
            if fix is not None:
                return fix
    return None


Finder = Callable[[PlannerInputs, str, FixSearch, RttLookup | None], Fix | None]


def _slo_fix(field: SloField) -> Finder:
    """The smallest value of one SLO field that places the workload. The target sets how much
    a replica batches, so the figures compile predicts depend on it: compile at a ladder of
    looser targets until one keeps options, bisect with plan checks over the figures predicted
    there (each rounded up to 0.1 ms), then between the last value that failed and the first
    that worked."""

    def find(inputs: PlannerInputs, workload: str, search: FixSearch,
             latency: RttLookup | None) -> Fix | None:  # fmt: skip
        current = _workload(inputs, workload).spec.slo
        failed = current.itl_ms if field == "itlMs" else current.ttft_ms
        ceiling = SLO_CEILING_MS[field]
        levels = [failed * f for f in SLO_LADDER if failed * f < ceiling] + [ceiling]
        for level in levels:
            if search.left_s() <= 0:
                return None
            relaxed = apply_change(inputs, workload, RelaxSlo(field=field, value=level))
            figures = {
                math.ceil(_figure(o.itl_ms, o.ttft_ms, field) * 10) / 10
                for o in options_alone(search, relaxed, workload, latency)
            }
            values = sorted({v for v in figures if failed < v < level} | {round(level, 1)})
            best, below = _first_working(search, inputs, workload, latency, field, values)
            if best is not None:
                return _refine(search, inputs, workload, latency, best, max(failed, below))
            failed = level
        return None

    return find


def _first_working(search: FixSearch, inputs: PlannerInputs, workload: str,
                   latency: RttLookup | None, field: SloField,
                   values: list[float]) -> tuple[Fix | None, float]:  # fmt: skip
    """Bisection for the smallest of ``values`` that places the workload, and the value below
    it (0 when none is)."""
    best: Fix | None = None
    low, high = 0, len(values) - 1
    while low <= high and search.left_s() > 0:
        middle = (low + high) // 2
        fix = _try(search, inputs, workload, [RelaxSlo(field=field, value=values[middle])],
                   latency)  # fmt: skip
        if fix is not None:
            best, high = fix, middle - 1
        else:
            low = middle + 1
    return best, values[high] if high >= 0 else 0.0


def _refine(search: FixSearch, inputs: PlannerInputs, workload: str, latency: RttLookup | None,
            best: Fix, failed: float) -> Fix:  # fmt: skip
    """Bisection between a value that failed and ``best``'s, to SLO_RESOLUTION."""
    (change,) = best.changes
    assert isinstance(change, RelaxSlo)
    low, high = failed, change.value
    while high - low > max(SLO_RESOLUTION_MS, SLO_RESOLUTION * high) and search.left_s() > 0:
        middle = math.ceil((low + high) / 2 * 10) / 10
        if middle >= high:
            break
        fix = _try(search, inputs, workload, [change.model_copy(update={"value": middle})],
                   latency)  # fmt: skip
        if fix is not None:
            best, high = fix, middle
        else:
            low = middle
    return best


def _figure(itl_ms: float, ttft_ms: dict[str, float], field: str) -> float:
    return itl_ms if field == "itlMs" else max(ttft_ms.values(), default=0.0)


def _replicas_fix(inputs: PlannerInputs, workload: str, search: FixSearch,
                  latency: RttLookup | None) -> Fix | None:  # fmt: skip
    """replicas.max raised to what a plan without the bound uses."""
    bounds = _workload(inputs, workload).spec.replicas
    if bounds.max >= 10_000:
        return None
    unbounded = _try(search, inputs, workload, [RaiseReplicasMax(value=10_000)], latency)
    if unbounded is None:
        return None
    unbound = apply_change(inputs, workload, RaiseReplicasMax(value=10_000))
    problem = compile_charged(search, alone(unbound, workload), latency)
    per_replica = max(o.capacity_rps for o in problem.options)
    booked = problem.workloads[0].booked_rps
    for value in sorted({math.ceil(booked / per_replica - 1e-9), 10_000}):
        if value > bounds.max:
            fix = _try(search, inputs, workload, [RaiseReplicasMax(value=value)], latency)
            if fix is not None:
                return fix
    return None


def _budget_fix(inputs: PlannerInputs, workload: str, search: FixSearch,
                latency: RttLookup | None) -> Fix | None:  # fmt: skip
    """The budget raised to what the other workloads cost in the base plan plus what the
    workload costs placed alone on what they leave, without a budget."""
    if inputs.budget_per_hour is None:
        return None
    base = search.base(workload)
    unbounded = reduced_inputs(replace(inputs, budget_per_hour=None), base, workload)
    problem = compile_charged(search, unbounded, latency)
    if not problem.options or search.left_s() <= 0:
        return None
    plan = search.plan(problem)
    assert plan.status is not None
    if covered(plan, workload) is None:
        return None
    cost = math.ceil((base.others_cost + (plan.status.cost_per_hour or 0.0)) * 100) / 100
    if cost <= inputs.budget_per_hour:
        return None
    return _try(search, inputs, workload, [RaiseBudget(per_hour=cost)], latency)


def _pipeline_fix(inputs: PlannerInputs, workload: str, search: FixSearch,
                  latency: RttLookup | None) -> Fix | None:  # fmt: skip
    """A pipeline over the grid's nodes, when the workload allows none yet (the default number
    of stages, then the most)."""
    if _workload(inputs, workload).spec.pipeline is not None:
        return None
    for stages in PIPELINE_STAGES:
        fix = _try(search, inputs, workload, [AllowPipeline(max_stages=stages)], latency)
        if fix is not None:
            return fix
    return None


def _nodes_fix(inputs: PlannerInputs, workload: str, search: FixSearch,
               latency: RttLookup | None) -> Fix | None:  # fmt: skip
    for change in _node_candidates(inputs, workload, search)[:MAX_NODE_TRIES]:
        for count in (change.count, change.count + 1):
            bigger = change.model_copy(update={"count": count})
            fix = _try(search, inputs, workload, [bigger], None)
            if fix is not None:
                return fix
    return None


def _combined(inputs: PlannerInputs, workload: str, search: FixSearch,
              latency: RttLookup | None) -> list[Fix]:  # fmt: skip
    """No single change worked: a precision (the most compact first) with nodes, then nodes
    with a raised replicas.max or a relaxed SLO."""
    allowed = _workload(inputs, workload).spec.precisions
    firsts: list[tuple[Change, tuple[Finder, ...]]] = [
        (AllowPrecision(precision=p), (_nodes_fix,))
        for p in reversed([p for p in GENERIC_PRECISIONS if p not in allowed])
    ]
    later = (_replicas_fix, _slo_fix("itlMs"), _slo_fix("ttftMs"))
    firsts += [(c, later) for c in _node_candidates(inputs, workload, search)[:MAX_NODE_TRIES]]
    for first, finders in firsts:
        widened = apply_change(inputs, workload, first)
        nodes_same = not isinstance(first, AddNodes)
        for finder in finders:
            if search.left_s() <= 0:
                return []
            # The lookup stands for the widened inputs only while their nodes are the same.
            fix = finder(widened, workload, search, latency if nodes_same else None)
            if fix is not None:
                return [fix.model_copy(update={"changes": [first, *fix.changes]})]
    return []


def _node_candidates(inputs: PlannerInputs, workload: str, search: FixSearch) -> list[AddNodes]:
    """One node of every catalog GPU x GPUs per node, added at once in the workload's main
    traffic region and compiled: the kinds compile keeps an option on, each with the count its
    best option's capacity needs, cheapest first (as offered; unoffered after, fewest GPU-GiB)."""
    spec = _workload(inputs, workload).spec
    region = max(spec.traffic.sources, key=lambda s: s.share).region
    spread = spec.spread is not None and spec.spread.across.value == "provider"
    prices = offer_prices(inputs)
    probe: list[AddNodes] = [
        AddNodes(
            gpu=gpu,
            gpus_per_node=k,
            count=1,
            region=region,
            interconnect=peer_link(inputs.catalog.gpus[gpu], k),
            distinct_providers=spread,
        )
        for gpu in sorted(inputs.catalog.gpus)
        for k in GPUS_PER_NODE
    ]
    added = inputs
    names: dict[str, AddNodes] = {}
    for change in probe:
        before = len(added.nodes)
        added = apply_change(added, workload, change)
        names[added.nodes[before].name] = change
    problem = compile_charged(search, alone(added, workload), None)
    per_node: dict[str, float] = defaultdict(float)
    for option in problem.options:
        pool = problem.pools[option.pool]
        name = pool.node_names[0]
        if name in names:
            replicas = pool.gpus_per_node // option.tensor_parallel * option.share
            per_node[name] = max(per_node[name], option.capacity_rps * replicas)
    booked = problem.workloads[0].booked_rps
    candidates = []
    for name, capacity in per_node.items():
        base = names[name]
        price = prices.get(base.gpu)
        candidates.append(
            base.model_copy(
                update={
                    "count": max(1, math.ceil(booked / capacity - 1e-9)),
                    "price_per_hour": round(price * base.gpus_per_node, 2) if price else None,
                }
            )
        )

    def cost(change: AddNodes) -> tuple[int, float]:
        if change.price_per_hour is not None:
            return 0, change.price_per_hour * change.count
        memory = inputs.catalog.gpu(change.gpu).memory_gib
        return 1, memory * change.gpus_per_node * change.count

    return sorted(candidates, key=lambda c: (cost(c), c.gpu, c.gpus_per_node))


def with_fixes(
    plan: PlacementPlan,
    inputs: PlannerInputs,
    search: FixSearch,
    latency: RttLookup,
    limit: int = 5,
) -> PlacementPlan:
    """``plan`` with each unplaced workload's hints replaced by its verified fixes (the first
    ``limit`` of them, highest priority first; the rest keep their unchecked hints)."""
    if plan.status is None or not plan.status.unplaced:
        return plan
    priority = {w.name: w.spec.priority for w in inputs.workloads}
    chosen = sorted(plan.status.unplaced, key=lambda u: -priority.get(u.workload, 0))[:limit]
    names = {u.workload for u in chosen}
    unplaced = [
        _fixed(u, find_fixes(inputs, u.workload, search, latency)) if u.workload in names else u
        for u in plan.status.unplaced
    ]
    return plan.model_copy(update={"status": plan.status.model_copy(update={"unplaced": unplaced})})


def _fixed(unplaced: Unplaced, fixes: list[Fix]) -> Unplaced:
    hints = [fix.text() for fix in fixes]
    if fixes and len(fixes[0].changes) > 1:
        hints.insert(0, "no single change suffices; together:")
    if not fixes:
        hints = [NO_FIX]
    return unplaced.model_copy(update={"hints": hints, "fixes": fixes})
