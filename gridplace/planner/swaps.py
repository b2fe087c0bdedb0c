"""Cost-aware repair of a stage's start: each replica moved to a cheaper option of its workload
wherever every row of the model still holds.

Owns one local search over a full assignment (``windows.VariableValues``); it must not add rows
or decide what a stage minimizes. Why: the unmet stage has no reason to prefer cheap pools, and
its solution (after ``windows.drop_spare_replicas``) spreads replicas over pools of nearly the
same GPU at different prices: at 10,000 x 1,000, high utilization, 837 of 1,000 workloads cost
more than in the HiGHS optimum, by small amounts each (docs/solver-tuning.md). One replica for
one cheaper replica of the same workload, checked against every row the two options are in
(with every other variable as it is), removes most of that before the cost windows start.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable

from gridplace.planner.model import PlacementModel
from gridplace.planner.objectives import scaled_cost
from gridplace.planner.rows import IntArray, RowsAt, as_array
from gridplace.planner.windows import VariableValues


def _move_down(
    rows: RowsAt,
    values: IntArray,
    ref: int,
    cost: int,
    options: list[tuple[int, int]],
    upper: Callable[[int], int],
) -> int:
    """Move ``ref``'s replicas to the cheapest of ``options`` (cost, variable; cheapest first)
    that the rows allow, one at a time; how many moved."""
    moved = 0
    out = rows.entries(ref)
    for other_cost, other in options:
        if other_cost >= cost:
            break
        if other in rows.frozen:
            continue
        into = rows.entries(other)
        while values[ref] > 0 and values[other] < upper(other) and rows.move(out, into):
            values[ref] -= 1
            values[other] += 1
            moved += 1
    return moved


def cheaper_swaps(pm: PlacementModel, start: VariableValues) -> VariableValues:
    """``start`` with replicas moved, one at a time, to a cheaper option of the same workload
    (the most expensive replicas first, each to the cheapest option that every row allows);
    ``start`` itself when no move is allowed. Slacks and counters keep their values, so the
    stages' rows (unmet demand fixed) hold as they did."""
    proto = pm.model.proto
    values = as_array(start.values, len(proto.variables))
    rows = RowsAt(pm, values, list(start.values))
    by_workload: dict[int, list[tuple[int, int]]] = defaultdict(list)  # (cost, ref), cheapest 1st
    for option in pm.problem.options:
        by_workload[option.workload].append((scaled_cost(option), pm.x[option.index].index))
    for options in by_workload.values():
        options.sort()

    @functools.cache
    def upper(ref: int) -> int:  # (the proto's repeated field does not index from the end)
        return int(list(proto.variables[ref].domain)[-1])

    placed = sorted(
        ((cost, ref, workload) for workload, opts in by_workload.items() for cost, ref in opts),
        reverse=True,
    )
    # One pass: a second moved 0.1% more of the cost for twice the CPU (docs/solver-tuning.md).
    moved = 0
    for cost, ref, workload in placed:
        if values[ref] > 0 and ref not in rows.frozen:
            moved += _move_down(rows, values, ref, cost, by_workload[workload], upper)
    if not moved or not rows.holds():
        return start
    result = dict(start.values)
    for ref in start.values:
        result[ref] = int(values[ref])
    return VariableValues(result)
