"""An independent MILP of the placement model (HiGHS through highspy), for benchmarks and tests.

It re-states the CP-SAT model's rows from the compiled ``Problem`` — written separately from
``gridplace.planner.model`` on purpose, so that agreement between the two is evidence, not an
echo — and solves the first two lexicographic stages: unmet demand x priority, then cost with
that fixed. Used only by ``bench/solver_scale.py`` and a test; highspy is a test extra.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import highspy

from gridplace.planner.core import MIN_POWER_FRACTION, RATE_SCALE, SLOTS_PER_GPU
from gridplace.planner.model import MAX_SOURCE_GROUPS
from gridplace.planner.objectives import COST_SCALE, SHORT_PENALTY, UNMET_WEIGHT
from gridplace.planner.problem import Option, Problem


@dataclass(frozen=True)
class MilpResult:
    status: str
    unmet_objective: float
    cost_per_hour: float
    bound_per_hour: float
    wall_s: float
    # HiGHS's proven lower bound on the unmet objective (its first stage's dual bound): the
    # referee where that stage does not finish (equal to ``unmet_objective`` when it does).
    unmet_bound: float = 0.0
    counts: dict[int, int] = field(default_factory=dict)  # replicas per option index


def solve_milp(
    problem: Problem, time_limit_s: float = 60.0, stage_one_share: float = 0.5, threads: int = 2
) -> MilpResult:
    """Both stages in ``time_limit_s`` (the first gets ``stage_one_share`` of it)."""
    started = time.perf_counter()
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", threads)
    h.setOptionValue("random_seed", 0)
    x = {
        o.index: h.addVariable(
            lb=0, ub=problem.workloads[o.workload].replicas_max, type=highspy.HighsVarType.kInteger
        )
        for o in problem.options
    }
    unmet = {
        (w.index, r): h.addVariable(lb=0, ub=_demand(problem, w.index, s))
        for w in problem.workloads
        for r, s in w.sources
    }
    short = {
        w.index: h.addVariable(lb=0, ub=w.replicas_min, type=highspy.HighsVarType.kInteger)
        for w in problem.workloads
    }
    by_pool: dict[int, list[Option]] = defaultdict(list)
    for o in problem.options:
        by_pool[o.pool].append(o)
    for pool_index, options in by_pool.items():
        pool = problem.pools[pool_index]
        node_slots = pool.gpus_per_node * SLOTS_PER_GPU
        total = pool.node_count * node_slots
        for size in sorted({o.slots for o in options}):
            large = [o for o in options if o.slots >= size]
            capacity = pool.node_count * (node_slots // size) * size if size >= 4 else total
            h.addConstr(sum(x[o.index] * o.slots for o in large) <= capacity)
        vram = math.floor(pool.memory_gib * 100) * pool.node_count * pool.gpus_per_node
        h.addConstr(
            sum(x[o.index] * math.ceil(o.vram_gib * 100) * o.tensor_parallel for o in options)
            <= vram
        )
        if pool.throttle_ratio > 0:
            fraction = max(MIN_POWER_FRACTION, 1 - pool.throttle_ratio)
            budget = math.floor(pool.node_count * pool.gpus_per_node * pool.tdp_watts * fraction)
            h.addConstr(sum(x[o.index] * math.ceil(o.power_watts) for o in options) <= budget)
    for w in problem.workloads:
        options = problem.options_of(w.index)
        carrying = [o for o in options if _carries_load(problem, o)]
        shares = dict(w.sources)
        groups: dict[frozenset[int], list[str]] = defaultdict(list)
        for region in shares:
            groups[frozenset(o.index for o in options if region in o.servable_sources)].append(
                region
            )
        parts = list(groups.values())
        sizes = range(1, len(parts) + 1) if len(parts) <= MAX_SOURCE_GROUPS else (1, len(parts))
        for size in sizes:
            for chosen in itertools.combinations(parts, size):
                regions = [r for part in chosen for r in part]
                serving = [o for o in options if set(o.servable_sources) & set(regions)]
                h.addConstr(
                    sum(x[o.index] * math.floor(o.capacity_rps * RATE_SCALE) for o in serving)
                    + sum(unmet[(w.index, r)] for r in regions)
                    >= sum(_demand(problem, w.index, shares[r]) for r in regions)
                )
        if options:
            h.addConstr(sum(x[o.index] for o in options) <= w.replicas_max)
        h.addConstr(sum(x[o.index] for o in carrying) + short[w.index] >= w.replicas_min)
        if w.spread_across and w.spread_max_per_domain is not None:
            domains: dict[str, list[Option]] = defaultdict(list)
            for o in options:
                pool = problem.pools[o.pool]
                domains[pool.provider if w.spread_across == "provider" else pool.region].append(o)
            # A domain's capacity limit when replicas.min > maxPerDomain: maxPerDomain /
            # replicas.min of the target, at least the largest replica.
            limit = None
            if w.spread_max_per_domain < w.replicas_min:
                limit = max(
                    w.spread_max_per_domain / w.replicas_min * _target(problem, w.index),
                    max(o.capacity_rps for o in options),
                )
            for members in domains.values():
                counted = [o for o in members if _carries_load(problem, o)]
                if counted:
                    h.addConstr(sum(x[o.index] for o in counted) <= w.spread_max_per_domain)
                if limit is not None:
                    h.addConstr(
                        sum(x[o.index] * math.floor(o.capacity_rps * RATE_SCALE) for o in members)
                        <= math.floor(limit * RATE_SCALE)
                    )
    uncovered = _failover_rows(h, problem, x)
    cost = sum(x[o.index] * math.ceil(o.cost_per_hour * COST_SCALE) for o in problem.options)
    if problem.budget_per_hour is not None:
        h.addConstr(cost <= math.floor(problem.budget_per_hour * COST_SCALE))
    unmet_objective = (
        sum(UNMET_WEIGHT * problem.workloads[w].priority * var for (w, _), var in unmet.items())
        + sum(
            UNMET_WEIGHT * problem.workloads[w].priority * SHORT_PENALTY * var
            for w, var in short.items()
        )
        + sum(problem.workloads[w].priority * var for w, var in uncovered.items())
    )
    h.setOptionValue("time_limit", time_limit_s * stage_one_share)
    h.minimize(unmet_objective)
    stage_one = h.getInfo().objective_function_value
    unmet_bound = h.getInfo().mip_dual_bound
    h.addConstr(unmet_objective <= stage_one + 1e-6)
    h.setOptionValue("time_limit", max(1.0, time_limit_s - (time.perf_counter() - started)))
    h.minimize(cost)
    info = h.getInfo()
    return MilpResult(
        status=h.modelStatusToString(h.getModelStatus()),
        unmet_objective=stage_one,
        cost_per_hour=info.objective_function_value / COST_SCALE,
        bound_per_hour=info.mip_dual_bound / COST_SCALE,
        wall_s=time.perf_counter() - started,
        unmet_bound=unmet_bound,
        counts={i: n for i, var in x.items() if (n := round(h.val(var))) > 0},
    )


def _target(problem: Problem, workload: int) -> float:
    return problem.workloads[workload].booked_rps


def _carries_load(problem: Problem, option: Option) -> bool:
    """A replica counts toward replicas.min, spread and failover when it carries minShare of the
    target, or as much as the workload's largest replica when that is less."""
    w = problem.workloads[option.workload]
    largest = max(o.capacity_rps for o in problem.options_of(w.index))
    return option.capacity_rps >= min(w.min_share * _target(problem, w.index), largest)


def _demand(problem: Problem, workload: int, share: float) -> int:
    return math.ceil(problem.workloads[workload].booked_rps * share * RATE_SCALE)


def _failover_rows(
    h: highspy.Highs, problem: Problem, x: dict[int, highspy.highs_var]
) -> dict[int, highspy.highs_var]:
    """Capacity of replicas that carry load after losing the worst node of a group of identical
    nodes that may fail (all, unless exemptReliability exempts some), where a node holds
    ceil(replicas / nodes) of each option's replicas; returns the slacks."""
    uncovered = {}
    for w in problem.workloads:
        options = [o for o in problem.options_of(w.index) if _carries_load(problem, o)]
        demand = _demand(problem, w.index, 1.0)
        if w.node_failures < 1 or demand <= 0 or not options:
            continue
        uncovered[w.index] = h.addVariable(lb=0, ub=demand)
        capacity = sum(x[o.index] * math.floor(o.capacity_rps * RATE_SCALE) for o in options)
        groups: dict[tuple[str, ...], list[Option]] = defaultdict(list)
        for o in options:
            reliability = problem.pools[o.pool].reliability
            if w.exempt_reliability is None or reliability < w.exempt_reliability:
                groups[problem.pools[o.pool].node_names].append(o)
        for nodes, members in groups.items():
            lost = 0
            for o in members:
                per_node = h.addVariable(lb=0, type=highspy.HighsVarType.kInteger)
                h.addConstr(x[o.index] <= len(nodes) * per_node)
                lost += per_node * math.floor(o.capacity_rps * RATE_SCALE)
            h.addConstr(capacity - lost + uncovered[w.index] >= demand)
    return uncovered


def main() -> None:
    """Referee one compiled problem that ``solver_scale.py --cache DIR`` left: both stages, the
    first with most of the time, its proven bound printed beside the answer and the peak RSS."""
    import argparse
    import pickle
    import resource
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("problem", type=Path, help="a problem-*.pickle from --cache")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds, both stages")
    parser.add_argument("--stage-one-share", type=float, default=0.75)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with args.problem.open("rb") as file:
        problem: Problem = pickle.load(file)  # written by bench/solver_scale.py --cache
    result = solve_milp(problem, args.limit, args.stage_one_share, args.threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"reproduce: python bench/milp.py {args.problem} --limit {args.limit:g} "
        f"--stage-one-share {args.stage_one_share:g} --threads {args.threads}"
    )
    print(
        f"HiGHS {result.status} in {result.wall_s:.1f} s wall, peak RSS {peak:.0f} MiB: unmet "
        f"objective {result.unmet_objective:.0f} (proven bound {result.unmet_bound:.0f}), cost "
        f"{result.cost_per_hour:.2f} $/h (bound {result.bound_per_hour:.2f})"
    )


if __name__ == "__main__":
    main()
