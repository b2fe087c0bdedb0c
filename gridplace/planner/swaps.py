"""Cost-aware repair of a stage's start: each replica moved to a cheaper option of its workload
wherever every row of the model still holds.

Owns one local search over a full assignment (``windows.VariableValues``); it must not add rows
or decide what a stage minimizes. Why: the unmet stage has no reason to prefer cheap pools, and
its solution (after ``windows.drop_spare_replicas``) spreads replicas over pools of nearly the
same GPU at different prices: at 10,000 x 1,000, high utilization, 837 of 1,000 workloads cost
more than in the HiGHS optimum, by small amounts each (docs/solver-tuning.md). One replica for
one cheaper replica of the same workload, checked against every row the two options are in
(with every other variable as it is), removes most of that before the cost windows start. On an
N+1 model (failover rows) a move first lowers the left option's counters (its ``per_node``, its
workload's ``worst_loss``) as far as their rows allow and then raises the new option's as far as
they need (``_Counters``): held as they were, no replica could move into an option the unmet
stage left empty. There, too, all replicas of an option may give way to more replicas of a
cheaper one that cost less together (``_more_for_less``): the best known N+1 plan holds more,
smaller replicas (2 at $1.08/h -> 3 at $0.54/h; docs/solver-tuning.md).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable

from gridplace.planner.model import PlacementModel
from gridplace.planner.objectives import scaled_cost
from gridplace.planner.rows import IntArray, RowLists, RowsAt, as_array
from gridplace.planner.windows import VariableValues


class _Counters(RowLists):
    """An N+1 model's counters beside a replica variable (by proto index): its option's
    ``per_node`` and its workload's ``worst_loss``, lowered by a move as far as their rows
    allow and raised as far as they need (``model.failover``)."""

    def __init__(self, pm: PlacementModel, rows: RowsAt, values: IntArray) -> None:
        super().__init__(rows)
        self.values = values
        self.of: dict[int, tuple[int, ...]] = {}
        for option in pm.problem.options:
            pair = (pm.per_node.get(option.index), pm.worst_loss.get(option.workload))
            self.of[pm.x[option.index].index] = tuple(v.index for v in pair if v is not None)

    def _need(self, ref: int, deltas: dict[int, int]) -> int:
        """How much ``ref`` must rise for its rows to hold after ``deltas`` (0: they hold)."""
        need = 0
        for row, coeff in self.pairs(ref):
            at = self.activity[row] + deltas.get(row, 0)
            if at < self.low[row] and coeff > 0:
                need = max(need, -((at - self.low[row]) // coeff))
            elif at > self.high[row] and coeff < 0:
                need = max(need, -((self.high[row] - at) // -coeff))
        return need

    def swap(
        self, ref: int, other: int, upper: Callable[[int], int], counts: tuple[int, int] = (1, 1)
    ) -> bool:
        """``counts[0]`` replicas of ``ref`` replaced by ``counts[1]`` of ``other``, with
        ``ref``'s counters lowered as far as allowed and then ``other``'s raised as far as
        needed, if every row then holds (else nothing changes)."""
        if self.values[other] + counts[1] > upper(other):
            return False
        change = [(ref, -counts[0]), (other, counts[1])]
        deltas: dict[int, int] = {}
        for var, delta in change:
            self.add(deltas, var, delta)
        for counter in self.of[ref]:  # first: the workload's ``worst_loss`` may fall with it
            spare = self._spare(counter, deltas)
            if spare:
                change.append((counter, -spare))
                self.add(deltas, counter, -spare)
        for counter in self.of[other]:
            need = self._need(counter, deltas)
            if need:
                if self.values[counter] + need > upper(counter):
                    return False
                change.append((counter, need))
                self.add(deltas, counter, need)
        if not self.within(deltas):
            return False
        self._apply(change, deltas)
        return True

    def _spare(self, ref: int, deltas: dict[int, int]) -> int:
        """How far ``ref`` may fall with its rows holding after ``deltas`` (0 where one of
        them does not hold)."""
        steps = int(self.values[ref])
        for row, coeff in self.pairs(ref):
            at = self.activity[row] + deltas.get(row, 0)
            if coeff > 0:
                steps = min(steps, (at - self.low[row]) // coeff)
            elif coeff < 0:
                steps = min(steps, (self.high[row] - at) // -coeff)
        return max(steps, 0)

    def _apply(self, change: list[tuple[int, int]], deltas: dict[int, int]) -> None:
        self.shift(deltas)
        for var, delta in change:
            self.values[var] += delta

    def sync(self) -> None:
        """Write the activities back to ``rows`` (for its final check)."""
        self.at.activity[:] = self.activity


def _move_down(
    rows: RowsAt,
    values: IntArray,
    ref: int,
    cost: int,
    options: list[tuple[int, int]],
    upper: Callable[[int], int],
    counters: _Counters | None,
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
        while values[ref] > 0 and values[other] < upper(other):
            if counters is not None:
                if not counters.swap(ref, other, upper):
                    break
            elif rows.move(out, into):
                values[ref] -= 1
                values[other] += 1
            else:
                break
            moved += 1
    return moved


def _more_for_less(
    counters: _Counters,
    values: IntArray,
    placed: list[tuple[int, int, int]],
    by_workload: dict[int, list[tuple[int, int]]],
    upper: Callable[[int], int],
) -> int:
    """All replicas of an option replaced by more replicas of a cheaper option of the same
    workload that cost less together (the fewest that every row allows); how many options."""
    moved = 0
    for cost, ref, workload in placed:
        held = int(values[ref])
        if not held:
            continue
        for other_cost, other in by_workload[workload]:
            if other_cost >= cost:
                break
            into = held + 1
            while into * other_cost < held * cost:
                if counters.swap(ref, other, upper, (held, into)):
                    moved += 1
                    break
                into += 1
            if not values[ref]:
                break
    return moved


def cheaper_swaps(pm: PlacementModel, start: VariableValues) -> VariableValues:
    """``start`` with replicas moved, one at a time, to a cheaper option of the same workload
    (the most expensive replicas first, each to the cheapest option that every row allows);
    ``start`` itself when no move is allowed. Slacks keep their values, so the stages' rows
    (unmet demand fixed) hold as they did; an N+1 model's counters move with its replicas
    (``_Counters``) where the start holds them all."""
    proto = pm.model.proto
    values = as_array(start.values, len(proto.variables))
    rows = RowsAt(pm, values, list(start.values))
    held = set(start.values)
    counters = None
    if pm.per_node and all(
        v.index in held for v in [*pm.per_node.values(), *pm.worst_loss.values()]
    ):
        counters = _Counters(pm, rows, values)
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
            options = by_workload[workload]
            moved += _move_down(rows, values, ref, cost, options, upper, counters)
    if counters is not None:
        moved += _more_for_less(counters, values, placed, by_workload, upper)
        counters.sync()
    if not moved or not rows.holds():
        return start
    result = dict(start.values)
    for ref in start.values:
        result[ref] = int(values[ref])
    return VariableValues(result)
