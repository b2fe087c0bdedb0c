"""An incumbent kept for many windows of one search (``windows``): the window's model of its
own variables and the incumbent's move to a window's solution, each costing what the window holds.

Owns the bookkeeping (values, row activities, where a variable's entries are); must not decide
which windows are drawn or when a solution is accepted. Why: at 10,000 x 1,000 with N+1 (50,469
variables), a 10-workload window built from the whole incumbent (an array of it, every row
re-summed, a dict copy, the objective summed over every slack) took ~16 ms of Python, from this
state ~9 ms (its ~500 variables and ~700 rows), measured without solves in one process; and
the model is written into its proto field by field (``model``): a 30-workload cost window
took ~10-12 ms through CP-SAT's builders, ~4 ms so (docs/solver-tuning.md).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model, cp_model_helper

from gridplace.planner.model import PlacementModel
from gridplace.planner.objectives import FlatTerms, flat_terms
from gridplace.planner.rows import IntArray, ModelRows, as_array, model_rows


def dense_terms(expression: cp_model.LinearExprT, size: int) -> IntArray:
    """A linear expression's coefficients by proto index, over ``size`` variables."""
    terms = flat_terms(expression)
    dense = np.zeros(size, np.int64)
    np.add.at(dense, np.array(terms.refs, np.int64), np.array(terms.coeffs, np.int64))
    return dense


class WindowState:
    """An incumbent kept for many windows: its values (a dict and an array by proto index) and
    every row's activity at it, updated in place when a window's solution is accepted, so that
    building a window and accepting it cost what the window holds (module docstring)."""

    def __init__(self, pm: PlacementModel, incumbent: dict[int, int]) -> None:
        self.rows = rows = model_rows(pm)
        if rows.nonlinear:
            raise ValueError(f"window rows: constraint {rows.nonlinear[0]} is not linear")
        self.proto = pm.model.proto
        self.layout = _layout(pm, rows)
        self.values = dict(incumbent)
        self.array = as_array(incumbent, len(self.proto.variables))
        self.activity = np.zeros(len(rows.domains), np.int64)
        np.add.at(self.activity, rows.row_of, rows.coeffs * self.array[rows.refs])
        # A window variable's position in the window model, by proto index (-1: not in it).
        self._position = np.full(len(self.proto.variables), -1, np.int64)
        self._goals: dict[int, tuple[object, tuple[IntArray, IntArray, _Index]]] = {}

    def local_refs(self, free: set[int]) -> IntArray:
        """The free workloads' variables (proto indices) in ``owners()`` order."""
        wanted = np.array(sorted(free), np.int64)
        return self.rows.owned[self.layout.owned.positions(wanted)]

    def model(
        self, free: set[int], objective: cp_model.LinearExprT | None
    ) -> tuple[cp_model.CpModel, list[int]]:
        """``window_model`` at this incumbent: written into the proto field by field, as
        ``add_linear_expression_in_domain`` and ``minimize`` would write it (through them, the
        expression and domain built per row cost a 30-workload window ~2.4x the time)."""
        local_refs = self.local_refs(free)
        model = cp_model.CpModel()
        out = model.proto
        out.variables.extend(self.layout.variables(self.rows.variables, local_refs.tolist()))
        position = self._position
        position[local_refs] = np.arange(len(local_refs))
        try:
            self._write_rows(out, local_refs)
            goal_refs, goal_coeffs, index = self._goal(objective)
            chosen = index.positions(local_refs)  # in the goal's order
            goal_local = position[goal_refs[chosen]]
            order = np.argsort(goal_local, kind="stable")  # (as ``minimize`` writes them)
            out.objective.vars.extend(goal_local[order].tolist())
            out.objective.coeffs.extend(goal_coeffs[chosen][order].tolist())
            out.objective.scaling_factor = 1
        finally:
            position[local_refs] = -1
        out.solution_hint.vars.extend(range(len(local_refs)))
        out.solution_hint.values.extend(self.array[local_refs].tolist())
        return model, local_refs.tolist()

    def _write_rows(self, out: Any, local_refs: IntArray) -> None:
        """Every row that holds a window variable into ``out`` (a window model's proto), over
        the window's variables (``_position``), the others' values moved into its bounds."""
        rows, position = self.rows, self._position
        entries = self.layout.entries.positions(local_refs)
        # By row, each row's variables by window position (as ``weighted_sum`` writes them).
        entries = entries[np.lexsort((position[rows.refs[entries]], rows.row_of[entries]))]
        entry_rows, entry_refs = rows.row_of[entries], rows.refs[entries]
        entry_coeffs = rows.coeffs[entries]
        touched, first = np.unique(entry_rows, return_index=True)
        mine = np.zeros(len(touched), np.int64)
        if len(entries):
            mine = np.add.reduceat(entry_coeffs * self.array[entry_refs], first)
        fixed = (self.activity[touched] - mine).tolist()
        ends = [*first.tolist()[1:], len(entries)]
        local_of, coeffs = position[entry_refs].tolist(), entry_coeffs.tolist()
        constraints = out.constraints
        for row, by, begin, end in zip(touched.tolist(), fixed, first.tolist(), ends, strict=True):
            linear = constraints.add().linear
            linear.vars.extend(local_of[begin:end])
            linear.coeffs.extend(coeffs[begin:end])
            linear.domain.extend([_shift(bound, by) for bound in rows.domains[row]])

    def solve(
        self, free: set[int], solver: cp_model.CpSolver, objective: cp_model.LinearExprT | None
    ) -> tuple[list[int], list[int]] | None:
        """The window's variables (``model``) and their values at the best ``solver`` found,
        None if it found nothing."""
        model, local = self.model(free, objective)
        if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return local, list(solver.response_proto.solution)

    def change(self, dense: IntArray, local: list[int], solution: list[int]) -> int:
        """How much a linear expression (``dense_terms``) changes from the incumbent to a
        window's ``solution`` (of its variables ``local``)."""
        where = np.array(local, np.int64)
        delta = np.array(solution[: len(local)], np.int64) - self.array[where]
        return int(dense[where] @ delta)

    def accept(self, local: list[int], solution: Sequence[int]) -> None:
        """Move the incumbent to a window's ``solution`` (of its variables ``local``)."""
        rows = self.rows
        where = np.array(local, np.int64)
        entries = self.layout.entries.positions(where)
        entry_rows, entry_refs = rows.row_of[entries], rows.refs[entries]
        before = rows.coeffs[entries] * self.array[entry_refs]
        self.array[where] = np.array(solution[: len(local)], np.int64)
        np.add.at(self.activity, entry_rows, rows.coeffs[entries] * self.array[entry_refs] - before)
        self.values.update(zip(local, solution, strict=True))

    def _goal(self, objective: cp_model.LinearExprT | None) -> tuple[IntArray, IntArray, _Index]:
        """The window objective's variables and coefficients, and their positions by variable
        (read once per objective)."""
        cached = self._goals.get(id(objective))
        if cached is not None and cached[0] is objective:
            return cached[1]
        goal = (
            flat_terms(objective)
            if objective is not None
            else FlatTerms(tuple(self.proto.objective.vars), tuple(self.proto.objective.coeffs), 0)
        )
        refs = np.array(goal.refs, np.int64)
        terms = refs, np.array(goal.coeffs, np.int64), _Index(refs, len(self.proto.variables))
        self._goals[id(objective)] = (objective, terms)
        return terms


class _Index:
    """Where each key occurs in an array of keys (0 <= key < size; others are never found)."""

    def __init__(self, keys: IntArray, size: int) -> None:
        self.order = np.argsort(keys, kind="stable")
        self.starts = np.searchsorted(keys[self.order], np.arange(size + 1), "left")

    def positions(self, wanted: IntArray) -> IntArray:
        """The positions of the keys ``wanted`` (each at most once), ascending."""
        wanted = wanted[(wanted >= 0) & (wanted < len(self.starts) - 1)]
        begin, end = self.starts[wanted], self.starts[wanted + 1]
        nonempty = begin < end
        begin, end = begin[nonempty], end[nonempty]
        if not len(begin):
            return np.zeros(0, np.int64)
        # The ranges begin[i]:end[i] concatenated, as steps from one position to the next.
        counts = end - begin
        steps = np.ones(int(counts.sum()), np.int64)
        steps[0] = begin[0]
        steps[np.cumsum(counts)[:-1]] = begin[1:] - end[:-1] + 1
        return np.sort(self.order[np.cumsum(steps)])


@dataclass
class _Layout:
    """A model's row entries by variable and owned variables by workload, for ``rows`` rows."""

    rows: int
    entries: _Index
    owned: _Index
    # A name-free variable of each domain the model's variables have: a window's variables are
    # copied into its proto in one call (~3x faster than field by field).
    by_domain: dict[tuple[int, ...], Any] = field(default_factory=dict)

    def variables(self, domains: list[tuple[int, ...]], refs: list[int]) -> list[Any]:
        """Variables of the ``domains`` of the variables ``refs``, in that order."""
        known = self.by_domain
        chosen = []
        for ref in refs:
            domain = domains[ref]
            copy = known.get(domain)
            if copy is None:
                copy = known[domain] = cp_model_helper.IntegerVariableProto()
                copy.domain.extend(domain)
            chosen.append(copy)
        return chosen


_LAYOUTS: dict[int, _Layout] = {}  # by id() of a live PlacementModel


def _layout(pm: PlacementModel, rows: ModelRows) -> _Layout:
    """``rows``' layout, read again when the model has gained rows."""
    layout = _LAYOUTS.get(id(pm))
    if layout is None or layout.rows != len(rows.domains):
        if layout is None:
            weakref.finalize(pm, _LAYOUTS.pop, id(pm), None)
        workloads = int(rows.owner.max()) + 1 if len(rows.owner) else 0
        layout = _LAYOUTS[id(pm)] = _Layout(
            len(rows.domains),
            _Index(rows.refs, len(pm.model.proto.variables)),
            _Index(rows.owner, workloads),
            layout.by_domain if layout is not None else {},
        )
    return layout


def _shift(bound: int, by: int) -> int:
    """``bound - by``, keeping CP-SAT's infinities infinite."""
    if bound <= cp_model.INT_MIN or bound >= cp_model.INT_MAX:
        return bound
    return max(cp_model.INT_MIN + 1, min(cp_model.INT_MAX - 1, bound - by))
