"""The placement model's linear rows as arrays, read from its proto once (rows the stages append
are read when they appear), for what evaluates rows at an assignment (``RowsAt``): trimming
spare replicas (``drop_spare``) and the cost-aware repair (``swaps``); ``window_state`` keeps its
own incremental copy for a window search.

Owns reading the rows and arithmetic over them; must not add rows or decide what a window holds.
Why arrays: per window, the old loop summed every row the window touches term by term in Python
(the stage rows hold every option), which cost as much CPU as the window's solve at
10,000 x 1,000 (``docs/solver-tuning.md``).
"""

from __future__ import annotations

import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from ortools.sat import cp_model_pb2
from ortools.sat.python import cp_model

if TYPE_CHECKING:
    from gridplace.planner.model import PlacementModel

IntArray = npt.NDArray[np.int64]
# More new rows and variables than this are read from a serialized copy (``_read_since``).
BULK_READ_ROWS = 1_000
_FAR = 1 << 62  # beyond any activity of these rows; CP-SAT's infinities are clipped to it


@dataclass
class ModelRows:
    """A model's linear rows, entry by entry (``refs``, ``coeffs``, ``row_of``), with each row's
    domain, and the variables a workload owns (``PlacementModel.owners``)."""

    owned: IntArray  # proto indices of owned variables, in ``owners()`` order
    owner: IntArray  # their workloads, aligned with ``owned``
    refs: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    coeffs: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    row_of: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    starts: list[int] = field(default_factory=lambda: [0])  # row r: entries starts[r]:starts[r+1]
    domains: list[list[int]] = field(default_factory=list)
    nonlinear: list[str] = field(default_factory=list)  # names of rows that are not linear
    variables: list[tuple[int, ...]] = field(default_factory=list)  # domains, by proto index

    def read(self, pm: PlacementModel) -> None:
        """Read the rows and variables added to ``pm.model`` since the last call (a row's
        family literal is not kept: the staged solve switches every family on)."""
        refs: list[int] = []
        coeffs: list[int] = []
        rows: list[int] = []
        read, domains = _read_since(pm.model, len(self.domains), len(self.variables))
        self.variables += domains
        for name, linear in read:
            if linear is None:
                self.nonlinear.append(name)
                self.domains.append([])
                self.starts.append(self.starts[-1])
                continue
            row_refs, row_coeffs, domain = linear
            refs += row_refs
            coeffs += row_coeffs
            rows += [len(self.domains)] * len(row_refs)
            self.domains.append(domain)
            self.starts.append(self.starts[-1] + len(row_refs))
        if refs:
            self.refs = np.concatenate([self.refs, np.array(refs, np.int64)])
            self.coeffs = np.concatenate([self.coeffs, np.array(coeffs, np.int64)])
            self.row_of = np.concatenate([self.row_of, np.array(rows, np.int64)])


Linear = tuple[list[int], list[int], list[int]]  # a row's variables, coefficients, domain


def _read_since(
    model: cp_model.CpModel, begin: int, first_variable: int, bulk_rows: int = BULK_READ_ROWS
) -> tuple[list[tuple[str, Linear | None]], list[tuple[int, ...]]]:
    """The model's constraints from ``begin`` on (name and linear terms, None if not linear)
    and the domains of its variables from ``first_variable`` on. Many are read from a
    serialized copy of the proto: field by field through CP-SAT's proto wrapper a
    50,000-variable model took ~0.6 CPU s, parsed by protobuf ~0.15 s."""
    proto = model.proto
    constraints, variables = proto.constraints, proto.variables
    if len(constraints) - begin + len(variables) - first_variable > bulk_rows:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.pb"
            if not model.export_to_file(str(path)):
                raise OSError(f"could not write the model to {path}")
            parsed = cp_model_pb2.CpModelProto.FromString(path.read_bytes())
        rows = [
            (c.name, _terms(c.linear if c.HasField("linear") else None))
            for c in parsed.constraints[begin:]
        ]
        return rows, [tuple(v.domain) for v in parsed.variables[first_variable:]]
    rows = []
    for index in range(begin, len(constraints)):
        wrapped = constraints[index]
        rows.append((wrapped.name, _terms(wrapped.linear) if wrapped.has_linear() else None))
    domains = [tuple(variables[i].domain) for i in range(first_variable, len(variables))]
    return rows, domains


def _terms(linear: Any) -> Linear | None:
    if linear is None:
        return None
    return list(linear.vars), list(linear.coeffs), list(linear.domain)


_ROWS: dict[int, ModelRows] = {}  # by id() of a live PlacementModel


def model_rows(pm: PlacementModel) -> ModelRows:
    """``pm``'s rows as they are now, read once per model (new rows on later calls)."""
    rows = _ROWS.get(id(pm))
    if rows is None:
        owners = pm.owners()
        rows = _ROWS[id(pm)] = ModelRows(
            np.fromiter(owners.keys(), np.int64, len(owners)),
            np.fromiter(owners.values(), np.int64, len(owners)),
        )
        weakref.finalize(pm, _ROWS.pop, id(pm), None)
    rows.read(pm)
    return rows


def as_array(values: dict[int, int], size: int) -> IntArray:
    """``values`` (by proto index) as an array over ``size`` variables, 0 where absent."""
    array = np.zeros(size, np.int64)
    array[np.fromiter(values.keys(), np.int64, len(values))] = np.fromiter(
        values.values(), np.int64, len(values)
    )
    return array


class RowsAt:
    """The model's rows at an assignment (``values`` by proto index, of which ``held`` are set):
    each row's activity and outer bounds, and each variable's entries (rows, coefficients)."""

    def __init__(self, pm: PlacementModel, values: IntArray, held: list[int]) -> None:
        rows = model_rows(pm)
        # Rows over a variable the assignment does not hold (the family literals) are left
        # alone, and so are the variables in them.
        covered = np.zeros(len(values), np.bool_)
        covered[held] = True
        self.unknown = np.zeros(len(rows.domains), np.bool_)
        self.unknown[rows.row_of[~covered[rows.refs]]] = True
        self.frozen = set(rows.refs[self.unknown[rows.row_of]].tolist())
        self.activity = np.zeros(len(rows.domains), np.int64)
        np.add.at(self.activity, rows.row_of, rows.coeffs * values[rows.refs])
        self.low = np.array([d[0] if d else 0 for d in rows.domains], np.int64).clip(-_FAR, _FAR)
        self.high = np.array([d[-1] if d else 0 for d in rows.domains], np.int64).clip(-_FAR, _FAR)
        self.domains = rows.domains
        order = np.argsort(rows.refs, kind="stable")
        self.sorted_refs = rows.refs[order]
        self.entry_rows, self.entry_coeffs = rows.row_of[order], rows.coeffs[order]

    def entries(self, ref: int) -> tuple[IntArray, IntArray]:
        begin, end = np.searchsorted(self.sorted_refs, [ref, ref + 1]).tolist()
        return self.entry_rows[begin:end], self.entry_coeffs[begin:end]

    def move(self, out: tuple[IntArray, IntArray], into: tuple[IntArray, IntArray]) -> bool:
        """Take one unit off ``out``'s variable and add one to ``into``'s (their entries), if
        every row they are in stays within its bounds; whether it did. (A variable is in a row
        once, so each side's rows are distinct.)"""
        activity = self.activity
        activity[out[0]] -= out[1]
        activity[into[0]] += into[1]
        for rows in (out[0], into[0]):
            after = activity[rows]
            if (after < self.low[rows]).any() or (after > self.high[rows]).any():
                activity[into[0]] -= into[1]
                activity[out[0]] += out[1]
                return False
        return True

    def holds(self) -> bool:
        """Whether every row's activity lies in its domain (holes included)."""
        known = zip(self.activity.tolist(), self.domains, self.unknown.tolist(), strict=True)
        for activity, domain, unknown in known:
            pairs = zip(domain[::2], domain[1::2], strict=True)
            if domain and not unknown and not any(a <= activity <= b for a, b in pairs):
                return False
        return True


class RowLists:
    """``RowsAt``'s activities and bounds as plain lists, and each variable's entries as (row,
    coefficient) pairs (``known_only``: without the rows ``RowsAt`` leaves alone), for local
    searches whose every step touches a handful of rows, where numpy's per-call cost dominates
    (``swaps``, ``failover_repair``). Changes are summed per row first (``add``), checked
    (``within``) and then applied (``shift``)."""

    def __init__(self, at: RowsAt, known_only: bool = False) -> None:
        self.at, self.known_only = at, known_only
        self.activity = at.activity.tolist()
        self.low, self.high = at.low.tolist(), at.high.tolist()
        self._pairs: dict[int, list[tuple[int, int]]] = {}

    def pairs(self, ref: int) -> list[tuple[int, int]]:
        found = self._pairs.get(ref)
        if found is None:
            rows, coeffs = self.at.entries(ref)
            if self.known_only:
                known = ~self.at.unknown[rows]
                rows, coeffs = rows[known], coeffs[known]
            found = self._pairs[ref] = list(zip(rows.tolist(), coeffs.tolist(), strict=True))
        return found

    def add(self, deltas: dict[int, int], ref: int, delta: int) -> None:
        """Add ``delta`` units of variable ``ref`` to ``deltas`` (per row)."""
        for row, coeff in self.pairs(ref):
            deltas[row] = deltas.get(row, 0) + coeff * delta

    def within(self, deltas: dict[int, int]) -> bool:
        """Whether every row ``deltas`` touches stays within its bounds with them."""
        activity, low, high = self.activity, self.low, self.high
        return all(low[r] <= activity[r] + d <= high[r] for r, d in deltas.items())

    def shift(self, deltas: dict[int, int]) -> None:
        for row, delta in deltas.items():
            self.activity[row] += delta


def drop_spare(
    pm: PlacementModel, values: dict[int, int], options: list[tuple[int, int]]
) -> dict[int, int]:
    """``values`` with the replica variables ``options`` ((proto index, lower bound), in the
    order to try) lowered as far as every row (with every other variable as it is) allows: a
    row's activity must stay within its domain's outer bounds. A row over a variable
    ``values`` does not hold freezes the replica variables in it."""
    at = RowsAt(pm, as_array(values, len(pm.model.proto.variables)), list(values))
    wanted = np.array([ref for ref, _ in options], np.int64)
    first = np.searchsorted(at.sorted_refs, wanted, "left").tolist()
    last = np.searchsorted(at.sorted_refs, wanted, "right").tolist()
    result = dict(values)
    for (ref, floor), begin, end in zip(options, first, last, strict=True):
        steps = result[ref] - floor
        if steps <= 0 or ref in at.frozen:
            continue
        mine, coeffs = at.entry_rows[begin:end], at.entry_coeffs[begin:end]
        if len(mine):
            within = steps_within(at.activity[mine], coeffs, at.low[mine], at.high[mine])
            steps = min(steps, int(within.min()))
        if steps <= 0:
            continue
        result[ref] -= steps
        at.activity[mine] -= coeffs * steps  # (a variable is in a row once)
    return result


def steps_within(activity: IntArray, coeff: IntArray, low: IntArray, high: IntArray) -> IntArray:
    """Per row, how many times ``coeff`` can be taken off ``activity``, one at a time, with
    every step within [low, high] (the steps' activities are monotone, so the first step and
    the last decide); bounds within +-2^62."""
    safe = np.where(coeff == 0, 1, coeff)
    down = np.where(activity - coeff <= high, (activity - low) // safe, 0)  # coeff > 0
    up = np.where(activity - coeff >= low, (high - activity) // -safe, 0)  # coeff < 0
    still = np.where((low <= activity) & (activity <= high), _FAR, 0)  # coeff == 0
    steps = np.where(coeff > 0, down, np.where(coeff < 0, up, still))
    return np.maximum(steps, 0)
