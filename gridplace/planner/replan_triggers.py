"""When learned corrections or observed SLOs call for a new plan. The server (``api/replan.py``)
and the simulator's loop (``sim/loop.py``) run these same functions.

Owns: the replica queries a plan's capacity is judged by, and the replan triggers. Must not: read
or write anything (no I/O), solve, or estimate (``recalibrate`` does).

Triggers (``capacity_moves``, ``slo_shortfalls``): a replan is due when a replica's predicted
capacity under the new calibration differs by more than ``capacity_change`` (10%) from its
capacity under the calibration its plan was made with, or when a workload's observed SLO
attainment stayed under ``slo_target`` for ``slo_windows`` windows in a row since the plan took
effect. Hysteresis: the reference is the plan's own calibration, not the previous estimate, so
noise inside the band never triggers however long it lasts, drift accumulates until it crosses
the band, and each replan resets the reference; the SLO windows counted start after the plan took
effect, so the windows that caused a replan cannot cause the next one.

A third trigger (``cost_savings``) needs a solve: a plan made afresh under the current
calibration (a dry run) makes a replan due when it costs less by more than ``cost_saving`` (5%,
the planner's own ``move_tolerance``: the saving for which it moves replicas) and leaves no more
workloads unplaced. A replan starts from the plan in force and may keep replicas for up to that
tolerance, but a plan made from one made with very different numbers (the first calibration
after a large bias) can stay well above what the corrected numbers call for, and then neither
the capacity band (the calibration has settled) nor the SLO (the plan is over-provisioned) ever
fires again. Its hysteresis is the tolerance itself: a dry run within it changes nothing.
``due_reasons`` orders the triggers for both callers; the server runs the cost trigger at most
every ``cost_check_interval_s`` (it solves), the simulator's loop at every period's end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gridplace.planner.pools import effective_gpu
from gridplace.planner.ports import OptionPredictor, PredictionQuery
from gridplace.specs import Catalog, InferenceWorkload, Node, ObservationWindow, PlacementPlan


@dataclass(frozen=True)
class ReplanPolicy:
    capacity_change: float = 0.10
    slo_target: float = 0.99
    slo_windows: int = 2
    cost_saving: float = 0.05  # as the planner's move_tolerance (module docstring)


def replica_queries(
    plan: PlacementPlan,
    workloads: Sequence[InferenceWorkload],
    nodes: Sequence[Node],
    catalog: Catalog,
) -> list[tuple[str, PredictionQuery]]:
    """(label, the query that predicts its capacity) for each assignment the specs still know.
    The TTFT budget is the whole target (no RTT): the triggers compare capacities, not SLOs."""
    by_workload = {w.name: w for w in workloads}
    by_node = {n.name: n for n in nodes}
    queries = []
    for a in plan.spec.assignments:
        workload, node = by_workload.get(a.workload), by_node.get(a.node)
        if workload is None or node is None or not isinstance(workload.spec.model, str):
            continue
        groups = [g for g in node.spec.gpus for _ in range(g.count)]
        if max(a.gpus) >= len(groups) or groups[a.gpus[0]].model not in catalog.gpus:
            continue
        group = groups[a.gpus[0]]
        model_id = workload.spec.model
        spec, traffic = workload.spec, workload.spec.traffic
        query = PredictionQuery(
            model=catalog.models[model_id], model_id=model_id,
            gpu=effective_gpu(catalog.gpus[group.model], group), gpu_id=group.model,
            precision=a.precision, engine=spec.engine, tensor_parallel=a.tensor_parallel,
            share=a.gpu_share, interconnect=node.spec.interconnect,
            throttle_ratio=node.throttle_ratio, ttft_budget_ms=spec.slo.ttft_ms,
            itl_slo_ms=spec.slo.itl_ms, prompt_tokens=traffic.prompt_tokens,
            output_tokens=traffic.output_tokens,
        )  # fmt: skip
        queries.append((f"{a.workload} on {a.node}:{','.join(map(str, a.gpus))}", query))
    return queries


def capacity_moves(
    queries: Sequence[tuple[str, PredictionQuery]],
    before: OptionPredictor,
    after: OptionPredictor,
    policy: ReplanPolicy | None = None,
) -> list[str]:
    """Replicas whose predicted capacity moved by more than the policy's band."""
    policy = policy or ReplanPolicy()
    reasons = []
    for label, query in queries:
        old, new = before(query).capacity_rps, after(query).capacity_rps
        if old <= 0 and new <= 0:
            continue
        change = (new - old) / old if old > 0 else math.inf
        if abs(change) > policy.capacity_change:
            reasons.append(
                f"calibration moves {label} capacity {old:.2f} -> {new:.2f} req/s "
                f"({change:+.0%}, band {policy.capacity_change:.0%})"
            )
    return reasons


def slo_shortfalls(
    attainment: Mapping[str, Sequence[float]], policy: ReplanPolicy | None = None
) -> list[str]:
    """Workloads whose last ``slo_windows`` windows (oldest first, all since the plan took
    effect) were all under the target."""
    policy = policy or ReplanPolicy()
    reasons = []
    for workload, series in sorted(attainment.items()):
        last = list(series)[-policy.slo_windows :]
        if len(last) == policy.slo_windows and all(a < policy.slo_target for a in last):
            shown = ", ".join(f"{a:.1%}" for a in last)
            reasons.append(
                f"workload {workload} SLO attainment {shown} under {policy.slo_target:.0%} "
                f"for {policy.slo_windows} windows"
            )
    return reasons


def cost_savings(
    in_force: PlacementPlan,
    candidate: PlacementPlan,
    cost_per_hour: Callable[[PlacementPlan], float],
    policy: ReplanPolicy | None = None,
) -> list[str]:
    """Why the plan in force should be replaced: ``candidate`` (a dry-run plan made afresh
    under the current calibration) costs less by more than the policy's ``cost_saving`` and
    leaves no workload unplaced that ``in_force`` places. Made afresh, not as a replan from
    ``in_force``: a replan keeps replicas within its own move tolerance, and comparing against
    it would let the plan in force sit that much further above the best."""
    policy = policy or ReplanPolicy()
    if _unplaced(candidate) - _unplaced(in_force):
        return []
    old, new = cost_per_hour(in_force), cost_per_hour(candidate)
    if old <= 0 or (old - new) / old <= policy.cost_saving:
        return []
    return [
        f"a plan made now under the current calibration costs ${new:.2f}/h instead of ${old:.2f}/h "
        f"({(new - old) / old:+.0%}, band {policy.cost_saving:.0%})"
    ]


def due_reasons(
    reasons: Sequence[str],
    in_force: PlacementPlan,
    afresh: Callable[[], PlacementPlan | None],
    cost_per_hour: Callable[[PlacementPlan], float],
    policy: ReplanPolicy | None = None,
) -> list[str]:
    """Why a replan is due: ``reasons`` (the triggers that need no solve) when there are any,
    else the cost trigger's against the plan ``afresh`` makes now (None: no cost check this
    time). The order both the simulator's loop and the server's periodic check decide in: the
    solve is paid for only when nothing cheaper fired."""
    if reasons:
        return list(reasons)
    fresh = afresh()
    return [] if fresh is None else cost_savings(in_force, fresh, cost_per_hour, policy)


def _unplaced(plan: PlacementPlan) -> set[str]:
    return {u.workload for u in plan.status.unplaced} if plan.status else set()


def windowed_attainment(
    windows: Iterable[ObservationWindow], since_s: float, window_s: float
) -> dict[str, list[float]]:
    """Per workload, request-weighted SLO attainment of the windows reported since ``since_s``,
    bucketed by end time into ``window_s`` windows (oldest first)."""
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for window in windows:
        if window.slo_attainment is None or window.start_s < since_s or not window.requests:
            continue
        bucket = sums[window.workload][int((window.end_s - since_s) // window_s)]
        bucket[0] += window.slo_attainment * window.requests
        bucket[1] += window.requests
    return {
        workload: [met / count for _, (met, count) in sorted(buckets.items())]
        for workload, buckets in sums.items()
    }
