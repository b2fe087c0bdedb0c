"""A repair of a large N+1 start: room for the workloads that fall short, made by moving others.

Owns one local search over replica counts (the start ``hints`` checks on the full model); must
not state a rule (``model``): every hard row over replica counts alone (pools, replica bounds,
spread, budget) is checked at each step (``rows.RowsAt``), and the rows with a slack (coverage,
``replicas.min``, failover) are what the first objective weighs, as ``failover_greedy.Shortfall``
counts it. Each step books one replica for a workload that falls short (largest shortfall
first): the one that takes the most off the objective, where there is room, or after moving up
to ``MAX_FREED`` replicas of other workloads out of its pool (each dropped, or moved to an
option of its own workload that has room) when the booking gains more than the moves cost.
Why: the relaxed optimum (no failover rows) cut to its demand's replicas leaves workloads short
of N+1 in pools the relaxed solve filled, often with quarter- and half-GPU replicas (several
must leave for one whole-GPU replica); topped up greedily (``failover_greedy``) it left 2.3x
the optimum, and the first stage's windows (``failover_windows``, ~0.045 CPU s each) took that
only to 1.16x in 10 reference s; repaired, it reaches the optimum (docs/solver-tuning.md).
Of bookings that gain the same, the cheapest (then by option index): the repair ignored cost, and
its plan, cheapened by the cost stage, stayed 3-4% above the best known (docs/solver-tuning.md).
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

from gridplace.planner.failover_greedy import MIN_GAIN, Profiles, Shortfall
from gridplace.planner.model import PlacementModel
from gridplace.planner.problem import Option, Problem
from gridplace.planner.rows import RowLists, RowsAt

# Passes over the workloads that fall short (each: every such workload while it gains) and
# replicas moved out of a pool at most to make room for one: at 10,000 x 1,000 (moderate, N+1)
# from the relaxed start's 11.07M, 2 passes 5.01M, 3 4.93M, 5 4.93M; 2 replicas freed at most
# 9.07M, 3 5.04M, 4 5.02M, 6 5.02M (2 passes; docs/solver-tuning.md).
REPAIR_PASSES = 3
MAX_FREED = 4

Change = list[tuple[int, int]]  # (option index, +1 or -1)


class HardRows(RowLists):
    """The model's rows over replica counts alone at a count per option, checked and moved
    incrementally (the rows with a slack or counter are left out: re-chosen, they always hold)."""

    def __init__(self, pm: PlacementModel, counts: dict[int, int]) -> None:
        self.ref = {option: var.index for option, var in pm.x.items()}
        values = np.zeros(len(pm.model.proto.variables), np.int64)
        for option, count in counts.items():
            values[self.ref[option]] = count
        super().__init__(RowsAt(pm, values, list(self.ref.values())), known_only=True)
        variables = pm.model.proto.variables
        self.upper = {o: int(list(variables[ref].domain)[-1]) for o, ref in self.ref.items()}
        self.counts = dict(counts)
        # Counts met before have the same version (``undo``); new ones a new one.
        self.version = 0
        self._versions = itertools.count(1)
        self._room: dict[int, tuple[int, bool]] = {}

    def room(self, option: int) -> bool:
        """Whether one more replica of ``option`` fits (``fits`` for one option, remembered
        for the counts as they are: ``version``)."""
        found = self._room.get(option)
        if found is not None and found[0] == self.version:
            return found[1]
        fits = self.counts.get(option, 0) < self.upper[option]
        if fits:
            activity, low, high = self.activity, self.low, self.high
            pairs = self.pairs(self.ref[option])
            fits = all(low[r] <= activity[r] + c <= high[r] for r, c in pairs)
        self._room[option] = (self.version, fits)
        return fits

    def _deltas(self, change: Change) -> dict[int, int]:
        deltas: dict[int, int] = {}
        for option, delta in change:
            self.add(deltas, self.ref[option], delta)
        return deltas

    def fits(self, change: Change) -> bool:
        """Whether every hard row and bound holds after ``change``."""
        counts, upper = self.counts, self.upper
        if any(not 0 <= counts.get(o, 0) + d <= upper[o] for o, d in change):
            return False
        return self.within(self._deltas(change))

    def lacking(self, book: Change, change: Change | None = None) -> float:
        """How much room ``book`` lacks after ``change``: the largest excess over a row's upper
        bound, in units of what ``book`` adds to that row."""
        moved = self._deltas(change) if change else {}
        activity, high = self.activity, self.high
        worst = 0.0
        for row, adds in self._deltas(book).items():
            excess = activity[row] + moved.get(row, 0) + adds - high[row]
            if excess > 0 and adds > 0:
                worst = max(worst, excess / adds)
        return worst

    def apply(self, change: Change) -> None:
        self.shift(self._deltas(change))
        for option, delta in change:
            self.counts[option] = self.counts.get(option, 0) + delta
        self.version = next(self._versions)

    def undo(self, change: Change, version: int) -> None:
        """Take back ``change``, applied since the counts had ``version``."""
        self.apply([(option, -delta) for option, delta in reversed(change)])
        self.version = version


class _Counts:
    """Replicas per option per workload, with each workload's part of the first objective."""

    def __init__(self, problem: Problem, counts: dict[int, int]) -> None:
        self.problem = problem
        self.held: dict[int, dict[int, int]] = defaultdict(dict)
        self.in_pool: dict[int, set[int]] = defaultdict(set)  # options with replicas, per pool
        for index, count in counts.items():
            if count > 0:
                option = problem.options[index]
                self.held[option.workload][index] = count
                self.in_pool[option.pool].add(index)
        self._values: dict[tuple[int, tuple[tuple[int, int], ...]], float] = {}
        self._profiles: dict[int, Profiles] = {}
        self.usable = {
            w.index: [o for o in problem.options_of(w.index) if not o.stages and o.capacity_rps > 0]
            for w in problem.workloads
        }
        self.value = {w.index: self.value_of(w.index, {}) for w in problem.workloads}
        # ``_ways_out`` of each pool, with the version of the counts it was found at
        self.ways: dict[int, tuple[int, list[tuple[float, Change]]]] = {}
        self.changes: dict[int, int] = defaultdict(int)  # changes to each workload's counts
        self._leaving: dict[int, tuple[int, list[tuple[float, Change]]]] = {}

    def value_of(self, workload: int, change: dict[int, int]) -> float:
        """``workload``'s part of the first objective with ``change`` (replicas per option);
        remembered per set of replicas (the search weighs the same ones many times)."""
        held = dict(self.held[workload])
        for index, delta in change.items():
            held[index] = held.get(index, 0) + delta
        key = (workload, tuple(sorted((i, n) for i, n in held.items() if n)))
        found = self._values.get(key)
        if found is None:
            found = self._values[key] = self.state_of(workload, dict(key[1])).value()
        return found

    def state_of(self, workload: int, held: dict[int, int]) -> Shortfall:
        """``workload``'s shortfall with ``held`` replicas per option."""
        profiles = self._profiles.setdefault(workload, {})
        state = Shortfall(self.problem, self.problem.workloads[workload], profiles)
        for index, count in sorted(held.items()):
            for _ in range(count):
                state.add(self.problem.options[index])
        return state

    def apply(self, change: Change) -> None:
        touched = set()
        for index, delta in change:
            option = self.problem.options[index]
            held = self.held[option.workload]
            held[index] = held.get(index, 0) + delta
            if held[index] > 0:
                self.in_pool[option.pool].add(index)
            else:
                del held[index]
                self.in_pool[option.pool].discard(index)
            touched.add(option.workload)
        for workload in touched:
            self.value[workload] = self.value_of(workload, {})
            self.changes[workload] += 1

    def leaving(self, held: int) -> list[tuple[float, Change]]:
        """The ways for one replica of option ``held`` to leave its pool, cheapest first: what
        each costs its workload (in the objective) and the change (dropped, or moved to another
        of its options outside the pool, room or not); remembered while the workload's counts
        stay as they are."""
        option = self.problem.options[held]
        workload = option.workload
        found = self._leaving.get(held)
        if found is None or found[0] != self.changes[workload]:
            out = [(held, -1)]
            left = dict(self.held[workload])
            left[held] -= 1
            state, before = self.state_of(workload, left), self.value[workload]
            costed = [(state.value() - before, -1, out)]
            costed += [
                (state.value_with(t) - before, t.index, [*out, (t.index, 1)])
                for t in self.usable[workload]
                if t.pool != option.pool
            ]
            found = (self.changes[workload], [(c, m) for c, _, m in sorted(costed)])
            self._leaving[held] = found
        return found[1]


def repair_shortfalls(pm: PlacementModel, counts: dict[int, int]) -> dict[int, int]:
    """``counts`` with the moves of the module docstring applied while any gains."""
    problem = pm.problem
    rows = HardRows(pm, counts)
    state = _Counts(problem, counts)
    for _ in range(REPAIR_PASSES):
        short = sorted(
            (w for w, v in state.value.items() if v > MIN_GAIN), key=lambda w: (-state.value[w], w)
        )
        moved = 0
        for workload in short:
            while (move := _best_move(problem, rows, state, workload)) is not None:
                rows.apply(move)
                state.apply(move)
                moved += 1
        if not moved:
            break
    result: dict[int, int] = {}
    for held in state.held.values():
        result.update(held)
    return result


def _best_move(problem: Problem, rows: HardRows, state: _Counts, workload: int) -> Change | None:
    """The change that takes the most off the objective by booking one replica for
    ``workload``: where there is room, or after moving (or dropping) others' replicas. Options
    are weighed by what they gain, most first; of those in one pool with the same GPU slots only
    the first needs room made (the others gain no more)."""
    now = state.value[workload]
    shortfall = state.state_of(workload, state.held[workload])
    gains = []
    for option in state.usable[workload]:
        gain = now - shortfall.value_with(option)
        if gain > MIN_GAIN:
            gains.append((-gain, option.cost_per_hour, option.index))
    best: tuple[float, Change] | None = None
    weighed: set[tuple[int, int]] = set()
    for minus_gain, _, index in sorted(gains):
        gain, option = -minus_gain, problem.options[index]
        if best is not None and gain <= best[0]:
            break
        book = [(index, 1)]
        if rows.fits(book):
            best = (gain, book)
            continue
        if (option.pool, option.slots) in weighed:
            continue
        weighed.add((option.pool, option.slots))
        found = _make_room(problem, rows, state, option, gain - (best[0] if best else 0.0))
        if found is not None:
            best = (gain - found[0], found[1] + book)
    if best is None or best[0] <= MIN_GAIN:
        return None
    return best[1]


def _make_room(
    problem: Problem, rows: HardRows, state: _Counts, option: Option, worth: float
) -> tuple[float, Change] | None:
    """The cheapest way found (in the objective, under ``worth``) to free room for one replica
    of ``option``: other workloads' replicas in its pool moved out (``_ways_out``), one at a
    time, each the one that frees the most of what the replica lacks per objective it costs;
    (what that costs, the change)."""
    book = [(option.index, 1)]
    ways = _ways_out(problem, rows, state, option, worth)
    version = rows.version
    taken: Change = []
    spent = 0.0
    found: tuple[float, Change] | None = None
    for _ in range(MAX_FREED):
        lacking = rows.lacking(book)
        best: tuple[float, float, int] | None = None
        for position, (cost, move) in enumerate(ways):
            freed = lacking - rows.lacking(book, move[:1])
            if freed > 0 and spent + cost < worth - MIN_GAIN:
                key = (max(cost, 0.0) / freed, cost, position)
                best = key if best is None or key < best else best
        if best is None:
            break
        _, move = ways.pop(best[2])
        workload = problem.options[move[0][0]].workload
        cost = state.value_of(workload, dict(move)) - state.value[workload]  # as it is now
        if not rows.fits(move) or spent + cost >= worth - MIN_GAIN:
            continue
        rows.apply(move)
        state.apply(move)
        taken += move
        spent += cost
        if rows.fits(book):
            found = (spent, list(taken))
            break
    rows.undo(taken, version)
    state.apply([(index, -delta) for index, delta in reversed(taken)])
    return found


def _ways_out(
    problem: Problem, rows: HardRows, state: _Counts, option: Option, worth: float
) -> list[tuple[float, Change]]:
    """For each option of another workload with replicas in ``option``'s pool: the cheapest
    way (in the objective, under ``worth``) for one of them to leave it, moved to an option of
    its workload that has room or dropped; (what that costs, the change)."""
    found = state.ways.get(option.pool)
    if found is None or found[0] != rows.version:  # (the same counts give the same ways)
        ways = _all_ways_out(problem, rows, state, option)
        found = state.ways[option.pool] = (rows.version, ways)
    return [
        (cost, move)
        for cost, move in found[1]
        if cost < worth - MIN_GAIN and problem.options[move[0][0]].workload != option.workload
    ]


def _all_ways_out(
    problem: Problem, rows: HardRows, state: _Counts, option: Option
) -> list[tuple[float, Change]]:
    """``_ways_out`` for every workload, whatever the way costs."""
    ways: list[tuple[float, Change]] = []
    for held in sorted(state.in_pool[option.pool]):
        if not rows.fits([(held, -1)]):
            continue
        for cost, move in state.leaving(held):
            if len(move) == 1 or rows.room(move[1][0]):  # (checked with the rest: ``_make_room``)
                ways.append((cost, move))
                break
    return ways
