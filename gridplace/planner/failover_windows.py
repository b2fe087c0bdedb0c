"""The first stage of a large model with failover rows, window by window around its shortfalls.

Owns how that stage improves its start; must not change what the stage means: every window is
the full model with the replica counts of the workloads outside it fixed (``windows.window_model``),
and the incumbent only gets better. Why: with N+1 on every workload the stage's full-model solve
found nothing better than its start in 50 reference seconds (core-based, 10,000 x 1,000), while
what is short is a matter of a few contended pools: a workload that falls short (demand not
covered, or capacity missing after a node loss) gains only when others give up room in the pools
it can use. Each window is one such workload and others drawn from those holding replicas in its
pools, first those with room elsewhere (an option in a pool the short workload cannot use with a
replica's GPU slots free): a holder with nowhere to go gives up room only by taking another's,
and windows drawn without that preference took ~13x the deterministic time each. The workloads
that fall short the most come first in every pass (the figures: ``docs/solver-tuning.md``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

from ortools.sat.python import cp_model

from gridplace.planner.core import SLOTS_PER_GPU
from gridplace.planner.model import PlacementModel
from gridplace.planner.objectives import flat_terms
from gridplace.planner.window_state import WindowState, dense_terms
from gridplace.planner.windows import (
    MIN_WINDOW_TIME_S,
    VariableValues,
    WindowSearch,
    evaluate,
)
from gridplace.planner.work import SMALL_WINDOW_CHARGE_S, WorkClock

# Workloads per window and each window's limit (reference seconds): from the greedy start at
# 10,000 x 1,000, 8 reference s of windows of 10 workloads at 0.5 s left an unmet objective of
# 12.4M, of 5 at 0.3 s 12.8M, of 30 at 1 s 17.3M; random windows of 10 and 30, 14.6M and 15.1M.
SHORTFALL_WINDOW_WORKLOADS = 10
SHORTFALL_WINDOW_S = 0.5
# A pass whose first this many windows gained nothing ends there, and with it the search (what
# the stage leaves passes on to the cost stage): from the repaired start (``hints``) none of 39
# windows gained at 5 reference s, and the cost stage's plan went from $1,158.50 to $1,130.18/h
# (before its windows were charged ``SMALL_WINDOW_CHARGE_S``: docs/solver-tuning.md).
SHORTFALL_PATIENCE = 8


def shortfalls(pm: PlacementModel, incumbent: VariableValues) -> dict[int, int]:
    """Each workload's part of the first objective at ``incumbent`` (its unmet demand,
    replicas short of the minimum and capacity uncovered after a node loss, weighted as the
    objective weighs them), for the workloads where it is not 0."""
    terms = evaluate_terms(pm)
    found: dict[int, int] = defaultdict(int)
    for workload, ref, coeff in terms:
        found[workload] += coeff * incumbent.values[ref]
    return {w: v for w, v in found.items() if v > 0}


def evaluate_terms(pm: PlacementModel) -> list[tuple[int, int, int]]:
    """(workload, proto index, coefficient) of every slack of the first objective."""
    _, objective = pm.objectives[0]
    owners = pm.owners()
    flat = flat_terms(objective)
    return [
        (owners[ref], ref, coeff)
        for ref, coeff in zip(flat.refs, flat.coeffs, strict=True)
        if ref in owners
    ]


def shortfall_windows(
    pm: PlacementModel,
    start: VariableValues,
    deadline: float,
    clock: WorkClock,
    random_seed: int,
    make_solver: Callable[[float], cp_model.CpSolver],
) -> WindowSearch:
    """Improve ``start`` for the model's objective (the first stage's, set by the caller)
    window by window (module docstring) until ``clock`` reaches ``deadline``, no workload falls
    short, or a pass over those that do gained nothing (``SHORTFALL_PATIENCE``)."""
    _, objective = pm.objectives[0]
    best = evaluate(objective, start)
    state = WindowState(pm, start.values)
    incumbent = VariableValues(state.values)  # (updated in place: ``WindowState.accept``)
    dense = dense_terms(objective, len(pm.model.proto.variables))
    # (workload, proto index, GPU slots of one replica) of each option, per pool
    by_pool: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for option in pm.problem.options:
        by_pool[option.pool].append((option.workload, pm.x[option.index].index, option.slots))
    rng = random.Random(random_seed)
    windows = improved = 0
    while True:
        short = shortfalls(pm, incumbent)
        before = improved
        for tried, seed in enumerate(sorted(short, key=lambda w: (-short[w], w))):
            left_s = deadline - clock.spent_s
            if left_s < MIN_WINDOW_TIME_S:
                return WindowSearch(incumbent, best, windows, improved)
            if improved == before and tried >= SHORTFALL_PATIENCE:
                break
            free = _window(pm, seed, incumbent, by_pool, rng)
            solver = make_solver(min(SHORTFALL_WINDOW_S, left_s))
            solved = state.solve(free, solver, None)
            clock.charge(solver, SMALL_WINDOW_CHARGE_S)
            windows += 1
            if solved is not None and (value := best + state.change(dense, *solved)) <= best:
                improved += value < best
                state.accept(*solved)
                best = value
        if improved == before:  # (none falls short, or a pass gained nothing)
            return WindowSearch(incumbent, best, windows, improved)


def _window(
    pm: PlacementModel,
    seed: int,
    incumbent: VariableValues,
    by_pool: dict[int, list[tuple[int, int, int]]],
    rng: random.Random,
) -> set[int]:
    """``seed`` and, drawn at random, others that hold replicas in the pools it could use:
    first those that could move a replica to a pool ``seed`` cannot use (``_movable``)."""
    pools = sorted({o.pool for o in pm.problem.options_of(seed)})
    holders = sorted(
        {
            workload
            for pool in pools
            for workload, ref, _ in by_pool[pool]
            if incumbent.values[ref] > 0 and workload != seed
        }
    )
    rng.shuffle(holders)
    movable = _movable(pm, set(holders), set(pools), incumbent, by_pool)
    holders.sort(key=lambda w: w not in movable)  # stable: the draw's order within each
    return {seed, *holders[: SHORTFALL_WINDOW_WORKLOADS - 1]}


def _movable(
    pm: PlacementModel,
    holders: set[int],
    taken: set[int],
    incumbent: VariableValues,
    by_pool: dict[int, list[tuple[int, int, int]]],
) -> set[int]:
    """The ``holders`` with an option in a pool outside ``taken`` whose free GPU slots at
    ``incumbent`` (all its nodes together) hold one more replica of it."""
    problem, free = pm.problem, {}
    movable = set()
    for workload in sorted(holders):
        for option in problem.options_of(workload):
            pool = option.pool
            if pool in taken or option.stages:
                continue
            if pool not in free:
                size = problem.pools[pool]
                used = sum(slots * incumbent.values[ref] for _, ref, slots in by_pool[pool])
                free[pool] = size.node_count * size.gpus_per_node * SLOTS_PER_GPU - used
            if free[pool] >= option.slots:
                movable.add(workload)
                break
    return movable
