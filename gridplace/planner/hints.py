"""First hints for the CP-SAT search: where the staged solve starts.

Owns the choice of a starting plan; must not decide what a stage means (``solve``) or state a
rule (``model``). Candidates, each a replica count per option:
- the previous plan's replicas that still have an option (a replan starts where it is), and the
  same kept where the rules still allow them, topped up greedily (the previous counts break a
  hard rule when, say, a throttled pool lost nodes and with them power budget);
- greedy (``baselines.greedy``) with failover top-ups;
- greedy by scarcity (``scarcity``), pools priced by contention, with failover top-ups: on a
  grid short of capacity it leaves far less demand unmet than greedy;
- relaxed-and-repaired: the model solved without its soft failover rows (the cost optimum of the
  plain covering problem, which CP-SAT finds quickly), then topped up greedily until losing any
  node that may fail leaves the demand covered. Failover rows make CP-SAT's own search slow to
  leave an expensive start (from greedy's, the cost stage ends far above the MILP optimum:
  ``docs/solver-tuning.md``), while the relaxed optimum is one top-up away from a good plan.
  On a large model the relaxed solve is its unmet stage alone, cut to the replicas its demand
  needs and repaired by ``failover_repair`` (replicas booked for the workloads that fall short,
  room made for them by moving others' replicas);
- the greedy over every workload's shortfall (``failover_greedy``), with failover rows.
``choose_start`` checks each candidate on the full model (every replica count fixed, the first
stage's objective) and starts from the best.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Callable

from ortools.sat.python import cp_model

from gridplace.planner.baselines import Booking, greedy
from gridplace.planner.failover_greedy import demand_replicas, failover_greedy
from gridplace.planner.failover_repair import repair_shortfalls
from gridplace.planner.model import PlacementModel
from gridplace.planner.problem import Problem
from gridplace.planner.scarcity import scarcity_greedy
from gridplace.planner.solver_settings import Solution, SolverSettings, make_solver
from gridplace.planner.work import WorkClock

# Share of the time limit the relaxed solve of the first hint may take, when some workload has
# failover rows; the stages share what is left.
RELAXED_SHARE = 0.3
# The same for a large model (``SolverSettings.window_min_options``), whose relaxed solve is its
# unmet stage alone: at 10,000 x 1,000 (N+1 on every workload, moderate) it proves its optimum
# after 2.62 reference s (docs/solver-tuning.md), which 0.55 of a 5-second limit covers (0.4
# left it unfinished there: 6.17M against the optimum 4.89M); what it leaves passes on.
LARGE_RELAXED_SHARE = 0.55


def previous_counts(problem: Problem) -> dict[int, int]:
    """The previous plan's replicas where they still have an option."""
    counts: dict[int, int] = defaultdict(int)
    for replica in problem.previous:
        if replica.option is not None:
            counts[replica.option] += 1
    return dict(counts)


def previous_then_greedy(problem: Problem) -> dict[int, int]:
    """The previous plan's replicas that the rules still allow (pinned first; a pool whose
    power budget shrank with its vanished nodes keeps what it can still feed), then greedy for
    the demand they leave uncovered, then failover top-ups."""
    booking = Booking(problem)
    for replica in sorted(problem.previous, key=lambda r: not r.pinned):
        if replica.option is not None:
            booking.add(problem.options[replica.option])
    greedy(problem, booking)
    _top_up(problem, booking)
    return dict(booking.counts)


def greedy_with_failover(problem: Problem) -> dict[int, int]:
    """Greedy's plan, then failover top-ups after every workload's demand had its turn."""
    booking = Booking(problem)
    greedy(problem, booking)
    _top_up(problem, booking)
    return dict(booking.counts)


def scarce_with_failover(problem: Problem) -> dict[int, int]:
    """Greedy by scarcity's plan (``scarcity``), then failover top-ups."""
    booking = Booking(problem)
    scarcity_greedy(problem, booking)
    _top_up(problem, booking)
    return dict(booking.counts)


def relaxed_and_repaired(
    problem: Problem,
    solve_relaxed: Callable[[Problem], dict[int, int]],
    repair: PlacementModel | None = None,
) -> dict[int, int]:
    """``solve_relaxed`` on the problem without failover rows, then failover top-ups; with
    ``repair`` (a large model's), the replicas its demand needs instead
    (``failover_greedy.demand_replicas``) repaired by ``failover_repair`` on that model. Only
    for a problem with failover rows (without, the relaxed plan is just the plan)."""
    relaxed = dataclasses.replace(
        problem,
        workloads=tuple(dataclasses.replace(w, node_failures=0) for w in problem.workloads),
    )
    counts = solve_relaxed(relaxed)
    if repair is not None:
        return repair_shortfalls(repair, demand_replicas(relaxed, counts))
    booking = Booking(problem)
    for index, count in sorted(counts.items()):
        for _ in range(count):
            booking.add(problem.options[index])
    _top_up(problem, booking)
    return dict(booking.counts)


def _check_hint(
    pm: PlacementModel, counts: dict[int, int], settings: SolverSettings, clock: WorkClock
) -> cp_model.CpSolver | None:
    """Solve the first stage with every replica count fixed to the hint: a cheap check that the
    hint is valid, and its unmet demand. None when the hint breaks a rule (or time ran out)."""
    _, objective = pm.objectives[0]
    pm.model.minimize(objective)
    pm.model.clear_hints()  # type: ignore[no-untyped-call]
    for index, var in pm.x.items():
        pm.model.add_hint(var, counts.get(index, 0))
    solver = make_solver(settings, min(2.0, settings.time_limit_s / 10))
    solver.parameters.fix_variables_to_their_hinted_value = True
    status = solver.solve(pm.model)
    clock.charge(solver)
    return solver if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None


def choose_start(
    pm: PlacementModel,
    settings: SolverSettings,
    clock: WorkClock,
    solve: Callable[[Problem, SolverSettings], Solution],
    given: dict[int, int] | None = None,
) -> tuple[dict[int, int], cp_model.CpSolver | None]:
    """Where the search starts: the candidate whose first-stage objective, then cost, is lowest
    among those valid on the full model (the solver holds every variable's value); greedy's plan
    and no solver when none is valid. A ``given`` start competes with greedy's plan (with a
    previous plan's candidates on a replan); ``solve`` solves the relaxed problem."""
    problem = pm.problem
    if given is not None:
        candidates = [given, greedy_with_failover(problem)]
        if problem.previous:
            candidates += [previous_counts(problem), previous_then_greedy(problem)]
    elif problem.previous:
        candidates = [previous_counts(problem), previous_then_greedy(problem)]
    else:
        candidates = _first_plan_candidates(pm, settings, clock, solve)
    best: tuple[tuple[int, float], dict[int, int], cp_model.CpSolver] | None = None
    for counts in candidates:
        hinted = _check_hint(pm, counts, settings, clock)
        if hinted is None:
            continue
        cost = sum(problem.options[i].cost_per_hour * n for i, n in counts.items())
        key = (round(hinted.objective_value), cost)
        if best is None or key < best[0]:
            best = (key, counts, hinted)
    if best is None:
        return candidates[0], None
    return best[1], best[2]


def _first_plan_candidates(
    pm: PlacementModel,
    settings: SolverSettings,
    clock: WorkClock,
    solve: Callable[[Problem, SolverSettings], Solution],
) -> list[dict[int, int]]:
    """A first plan's candidate starts, those that can win (docs/solver-tuning.md): greedy's;
    greedy by scarcity's on a model under ``window_min_options`` (on a large model without
    failover rows the core-based unmet stage reaches the optimum from either start, and
    pricing pools cost ~1 CPU s at 10,000 x 1,000); with failover rows, the relaxed problem's
    plan repaired: on a model under ``window_min_options`` its two first stages topped up
    greedily (``_top_up``), beside the greedy over every workload's shortfall
    (``failover_greedy``); on a large one, alone, its unmet stage's optimum cut to the
    replicas its demand needs, then ``failover_repair`` (from nothing, if the relaxed solve
    found nothing). At 10,000 x 1,000 with N+1 the scarcity start left 3.4x its unmet
    objective, the shortfall greedy alone 1.5x, greedy's 4.4x, the relaxed optimum cut and
    topped up by that greedy 2.3x; repaired instead, the optimum (4,886,200)."""
    problem = pm.problem
    large = len(problem.options) >= settings.window_min_options
    failover = any(w.node_failures > 0 for w in problem.workloads)
    candidates = [] if large and failover else [greedy_with_failover(problem)]
    if not large:
        candidates.append(scarce_with_failover(problem))
    if not failover:
        return candidates
    if not large:
        candidates.append(failover_greedy(problem))
    relaxed_settings = dataclasses.replace(
        settings,
        time_limit_s=settings.time_limit_s * (LARGE_RELAXED_SHARE if large else RELAXED_SHARE),
        stages=1 if large else 2,
    )

    def solve_relaxed(relaxed: Problem) -> dict[int, int]:
        inner = solve(relaxed, relaxed_settings)  # ``solve.solve_problem``
        clock.add(inner.work_s)  # the stages share what the relaxed solve left
        return inner.counts

    candidates.append(relaxed_and_repaired(problem, solve_relaxed, pm if large else None))
    return candidates


def capacity_after_node_loss(
    problem: Problem, counts: dict[int, int], workload: int, plus_one: int | None = None
) -> float:
    """Capacity of ``workload`` left after its worst node loss, as the model's failover rows
    count it: replicas that carry load only, each option's spread evenly over its group of
    identical nodes (ceil(x / N) per node), exempt nodes never failing. ``plus_one`` counts one
    more replica of that option."""
    lost: dict[tuple[str, ...], float] = defaultdict(float)
    total = 0.0
    demand = problem.workloads[workload]
    for option in problem.options_of(workload):
        if not problem.carries_load(option):
            continue
        count = counts.get(option.index, 0) + (option.index == plus_one)
        total += count * option.capacity_rps
        pool = problem.pools[option.pool]
        if count and demand.may_fail(pool.reliability):
            lost[pool.node_names] += option.capacity_rps * math.ceil(count / pool.node_count)
    return total - max(lost.values(), default=0.0)


def _top_up(problem: Problem, booking: Booking) -> None:
    """For each workload with failover, in priority order: add the replica that buys the
    capacity still missing after the worst node loss most cheaply (USD/h per request/s gained,
    counting no gain past the target), until the demand with headroom is covered (or nothing
    more helps)."""
    for workload in sorted(problem.workloads, key=lambda w: (-w.priority, w.index)):
        if workload.node_failures < 1:
            continue
        options = problem.options_of(workload.index)
        target = workload.booked_rps
        left = capacity_after_node_loss(problem, booking.counts, workload.index)
        while left + 1e-9 < target:
            scored = []
            for option in options:
                after = capacity_after_node_loss(
                    problem, booking.counts, workload.index, option.index
                )
                gain = min(after, target) - left
                if gain > 1e-9:
                    scored.append((option.cost_per_hour / gain, option.index, after))
            for _, index, after in sorted(scored):
                if booking.add(problem.options[index]):
                    left = after
                    break
            else:
                break
