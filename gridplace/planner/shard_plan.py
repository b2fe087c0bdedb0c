"""A sharded plan's replicas: the grid cut into shards (``shards``), each compiled and solved
apart, joined, the demand left unmet placed on the shards' leftover capacity (``reconcile``),
all in one problem whose options are the pass's and then the shards'.

Owns putting those together for ``planning.make_plan`` (which builds the plan document); must
not: build a plan document, or change a shard's replicas. The pass's pools come first in the
joined problem: a node's free GPUs are in one of its pools and in its shard's pool too, and the
first pool of a node that holds a replica's GPUs is where the ``validate_plan`` oracle books it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from gridplace.planner.deaggregate import Placement, deaggregate
from gridplace.planner.decompose import merge
from gridplace.planner.ports import OptionPredictor, PlannerInputs, RttLookup
from gridplace.planner.problem import Problem
from gridplace.planner.reconcile import RECONCILE_SHARE, Reconciled, reconcile
from gridplace.planner.shards import Shard, join, shard_inputs, solve_shards
from gridplace.planner.solver_settings import Solution, SolverSettings


@dataclass(frozen=True)
class ShardReport:
    """What one shard held and cost where it ran (CPU seconds: an idle core's wall time)."""

    nodes: int
    workloads: int
    options: int
    compile_cpu_s: float
    solve_cpu_s: float
    unmet_rps: float  # booked req/s its solve left unmet


@dataclass(frozen=True)
class ReconcileReport:
    """What the pass did: the short workloads (and those it left out: ``Reconciled.left_out``),
    the replicas it added and their capacity, booked req/s unmet before and after, its CPU s."""

    short_workloads: int
    left_out: int
    replicas: int
    capacity_rps: float
    unmet_before_rps: float
    unmet_after_rps: float
    cpu_s: float


@dataclass(frozen=True)
class Sharded:
    """The joined problem, its merged solution and replicas, and what each step did."""

    problem: Problem
    solution: Solution
    placements: list[Placement]
    failures: list[str]
    shards: tuple[ShardReport, ...]
    reconciled: ReconcileReport | None


def plan_shards(
    inputs: PlannerInputs,
    predictor: OptionPredictor,
    latency: RttLookup,
    count: int,
    settings: SolverSettings,
    make: Callable[[], OptionPredictor] | None = None,
) -> Sharded:
    """``inputs`` planned in ``count`` shards, then the pass. The shards get the time limit
    less ``RECONCILE_SHARE`` of it (each: they run apart), the pass that share. ``make`` makes
    the predictor where a shard runs (needed when shards run in other processes); without it,
    shards use ``predictor`` here."""
    started = time.perf_counter()
    remote = settings.workers > 1 or settings.ray_address is not None
    if remote and make is None:
        raise ValueError("shards run in other processes need ``make`` (a predictor is a closure)")
    shards = [
        Shard(sub, members, latency, None, make)
        if remote and make
        else Shard(sub, members, latency, predictor)
        for sub, members in shard_inputs(inputs, count)
    ]
    shard_settings = dataclasses.replace(
        settings, time_limit_s=settings.time_limit_s * (1 - RECONCILE_SHARE)
    )
    joined, solved, results = solve_shards(shards, shard_settings)
    placements, failures = deaggregate(joined, solved.counts)
    cpu = time.process_time()
    found = reconcile(inputs, joined, placements, solved.unmet_rps, predictor, latency, settings)
    reports = tuple(
        ShardReport(
            len(shard.inputs.nodes), len(shard.workloads), len(r.problem.options),
            r.compile_cpu_s, r.solve_cpu_s, sum(r.solution.unmet_rps.values()),
        )
        for shard, r in zip(shards, results, strict=True)
    )  # fmt: skip
    if found is None:
        return Sharded(joined, solved, placements, failures, reports, None)
    problems = [_with_demands(found, joined), *(r.problem for r in results)]
    whole, parts = join(problems, [found.workloads, *(s.workloads for s in shards)])
    offset = len(found.problem.options)
    placements = [
        *(dataclasses.replace(p, option=parts[0].options[p.option]) for p in found.placements),
        *(dataclasses.replace(p, option=offset + p.option) for p in placements),
    ]
    solution = merge(
        [*parts[1:], parts[0]],
        [*(r.solution for r in results), found.solution],
        time.perf_counter() - started,
    )
    solution.unmet_rps = {  # the pass's remaining demand replaces its workloads' shard figures
        **{k: v for k, v in solved.unmet_rps.items() if k[0] not in found.workloads},
        **{(found.workloads[w], s): v for (w, s), v in found.solution.unmet_rps.items()},
    }
    report = ReconcileReport(
        short_workloads=len(found.workloads) + len(found.left_out),
        left_out=len(found.left_out),
        replicas=len(found.placements),
        capacity_rps=sum(found.problem.options[p.option].capacity_rps for p in found.placements),
        unmet_before_rps=sum(solved.unmet_rps.values()),
        unmet_after_rps=sum(solution.unmet_rps.values()),
        cpu_s=time.process_time() - cpu,
    )
    return Sharded(whole, solution, placements, failures, reports, report)


def _with_demands(found: Reconciled, joined: Problem) -> Problem:
    """The pass's problem with its workloads' whole demand (as the plan reports coverage)."""
    workloads = tuple(
        dataclasses.replace(joined.workloads[w], index=i) for i, w in enumerate(found.workloads)
    )
    return dataclasses.replace(found.problem, workloads=workloads)


__all__ = ["ReconcileReport", "ShardReport", "Sharded", "plan_shards"]
