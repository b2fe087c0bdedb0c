"""Which candidate options of a workload reach the model: dominated ones dropped, and on large
grids only the cheapest ones that cover the workload's demand several times over, counting
what the workloads selected before it left of each pool (``PoolRoom``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from gridplace.planner.core import SLOTS_PER_GPU, replica_slots
from gridplace.planner.options import BoolArray, CandidateRows, FloatArray, IntArray
from gridplace.planner.problem import GpuPool, Option, WorkloadDemand
from gridplace.specs import Precision

OptionKey = tuple[int, int, Precision, int, int]  # workload, pool, precision, TP, GPU share

# Candidate pruning. The model stays solvable in seconds with a few thousand options
# (bench/solver_scale.py: 1,000 x 100 with 20,031 options stalled at a 68% gap in 10 s; pruned
# to 5,799 it proved the optimum, 1.9% above the unpruned MILP optimum). Each workload keeps its
# cheapest OPTION_BUDGET / workloads options (between MIN_CANDIDATES and MAX_CANDIDATES), more
# when needed to cover each traffic source CANDIDATE_COVER times over.
OPTION_BUDGET = 6_000
MIN_CANDIDATES = 24
MAX_CANDIDATES = 1_000
CANDIDATE_COVER = 8.0


class PoolRoom:
    """What the workloads selected so far left of each pool: its GPU slots less those the
    replicas their booked demand needs take (``reserve``). Compile selects the workloads one
    after another through one room (``compile.selection_order``), so a pool's potential is
    counted once across them: without it every workload of a kind kept the same cheapest pools,
    and at 100,000 nodes x 10,000 workloads those were 5% of the GPUs
    (``bench/unmet_causes.py``)."""

    def __init__(self, pools: Sequence[GpuPool]) -> None:
        self.pools = pools
        self._nodes = np.array([p.node_count for p in pools], dtype=np.int64)
        self._node_slots = np.array(
            [p.gpus_per_node * SLOTS_PER_GPU for p in pools], dtype=np.int64
        )
        self._slots = self._nodes * self._node_slots
        self.free_slots: IntArray = self._slots.copy()

    def replicas_left(self, rows: CandidateRows, chosen: IntArray) -> tuple[IntArray, IntArray]:
        """Per ``chosen`` row: the replicas of it its pool holds, and those it has left."""
        pool, each = rows.pool[chosen], _replica_slots(rows)[rows.config[chosen]]
        whole = self._nodes[pool] * (self._node_slots[pool] // each)
        return whole, np.minimum(whole, self.free_slots[pool] // each)

    def potentials(self, rows: CandidateRows, chosen: IntArray) -> FloatArray:
        """What each ``chosen`` row could serve with the replicas of it its pool has left (the
        whole pool left: capacity x nodes x replicas a node holds, in that order)."""
        whole, left = self.replicas_left(rows, chosen)
        pool, capacity = rows.pool[chosen], rows.capacity_rps[chosen]
        per_node = self._node_slots[pool] // _replica_slots(rows)[rows.config[chosen]]
        found: FloatArray = np.where(
            left == whole, capacity * self._nodes[pool] * per_node, capacity * left
        )
        return found

    def closed(self, rows: CandidateRows, forced: BoolArray) -> BoolArray:
        """The rows, ``forced`` ones aside, whose pool has none of their replicas left."""
        touched = np.flatnonzero((self.free_slots < self._slots)[rows.pool] & ~forced)
        found = np.zeros(len(rows), dtype=bool)
        found[touched] = self.replicas_left(rows, touched)[1] == 0
        return found

    def take(self, pool: int, replicas: int, slots: int) -> None:
        """``replicas`` of ``slots`` each on ``pool``."""
        self.free_slots[pool] -= replicas * slots


def select_candidates(
    rows: CandidateRows,
    demand: WorkloadDemand,
    room: PoolRoom,
    forced: BoolArray,
    limit: int,
) -> IntArray:
    """The rows to keep, ascending: the cheapest candidates per request/s until they could serve
    every source ``CANDIDATE_COVER`` times over (and at least ``limit``), plus the ``forced``
    ones (those the previous plan uses). A row counts what ``room`` left of its pool; one on a
    pool with none of its replicas left is closed: passed over unless forced, or while fewer
    than ``limit`` rows are kept (cheapest first: the model may still move another workload off
    that pool). A large grid offers thousands of interchangeable options per workload; the
    model only needs enough of the best ones to choose among.
    """
    if len(rows) <= limit:
        return np.arange(len(rows), dtype=np.int64)
    score, tie = _order_keys(rows, demand, None)
    closed = room.closed(rows, forced)
    need = _needs(rows, demand, CANDIDATE_COVER)
    if not closed.any():  # the rows as they are, without copies
        return np.sort(
            _covering(rows.servable, forced, score, tie, need, limit,
                      lambda at: room.potentials(rows, at))
        )  # fmt: skip
    open_rows, shut = np.flatnonzero(~closed), np.flatnonzero(closed)
    picked = open_rows[
        _covering(rows.servable[open_rows], forced[open_rows], score[open_rows], tie[open_rows],
                  need, limit, lambda at: room.potentials(rows, open_rows[at]))
    ]  # fmt: skip
    if len(picked) < limit:
        extra = _cheapest(score[shut], tie[shut], limit - len(picked))
        picked = np.concatenate((picked, shut[extra]))
    return np.sort(picked)


def reserve(rows: CandidateRows, demand: WorkloadDemand, room: PoolRoom, kept: IntArray) -> None:
    """Take the replicas ``demand``'s booked traffic needs (each source's share once) from
    ``room``: on the ``kept`` rows cheapest first (selection's order), as many as each pool has
    left."""
    if not len(kept):
        return
    score, tie = _order_keys(rows, demand, kept)
    ordered = kept[np.lexsort((tie, score))]
    need = _needs(rows, demand, 1.0)
    slots = _replica_slots(rows)
    for row, served in zip(ordered.tolist(), rows.servable[ordered].tolist(), strict=True):
        columns = [c for c, ok in enumerate(served) if ok and need[c] > 0]
        if not columns:
            continue
        free = int(room.replicas_left(rows, np.array([row]))[1][0])
        capacity, wanted = float(rows.capacity_rps[row]), sum(need[c] for c in columns)
        replicas = min(free, math.ceil(wanted / capacity))
        room.take(int(rows.pool[row]), replicas, int(slots[rows.config[row]]))
        served_rps = min(replicas * capacity, wanted)
        for c in columns:
            part = min(need[c], served_rps)
            need[c], served_rps = need[c] - part, served_rps - part
        if all(left <= 0 for left in need):
            return


def _replica_slots(rows: CandidateRows) -> IntArray:
    """GPU slots one replica of each of ``rows``' configurations takes."""
    slots = [replica_slots(c.share, c.tensor_parallel) for c in rows.configs]
    return np.array(slots, dtype=np.int64)


def _needs(rows: CandidateRows, demand: WorkloadDemand, cover: float) -> list[float]:
    """Each source's booked demand ``cover`` times over, in ``rows``' column order."""
    shares = dict(demand.sources)
    return [demand.booked_rps * shares[r] * cover for r in rows.regions]


def _order_keys(
    rows: CandidateRows, demand: WorkloadDemand, chosen: IntArray | None
) -> tuple[FloatArray, IntArray]:
    """Selection's order of the ``chosen`` rows (None: all) as ``np.lexsort((tie, score))``
    reads it: the cheapest way to serve the whole demand with this option alone first (so
    granularity counts: a small replica can beat a big efficient one); ties: preferred
    precision, more sources, pool order (lexsort is stable: then enumeration order)."""
    at = slice(None) if chosen is None else chosen
    rank = np.array([c.rank for c in rows.configs], dtype=np.int64)[rows.config[at]]
    score: FloatArray = np.ceil(demand.booked_rps / rows.capacity_rps[at]) * rows.cost_per_hour[at]
    sources = rows.servable[at].sum(axis=1)
    pools_n, regions_n = int(rows.pool.max()) + 1, len(rows.regions) + 1
    tie: IntArray = (rank * regions_n + (len(rows.regions) - sources)) * pools_n + rows.pool[at]
    return score, tie


def _covering(
    servable: BoolArray,
    forced: BoolArray,
    score: FloatArray,
    tie: IntArray,
    need: list[float],
    limit: int,
    potential: Callable[[IntArray], FloatArray],
) -> IntArray:
    """Positions to keep among rows (``servable`` per source; ``potential``: what those at some
    positions count): the first ``limit`` in order, then each one that serves a source still
    short of ``need`` (or is forced)."""
    count = len(score)
    if count <= limit:
        return np.arange(count, dtype=np.int64)
    bits = servable.astype(np.int64) @ (1 << np.arange(servable.shape[1], dtype=np.int64))
    kept: list[int] = []

    def unmet_bits() -> int:
        return sum(1 << column for column, left in enumerate(need) if left > 0)

    # The first ``limit`` rows in order are kept whatever they serve: what they could serve is
    # taken off each source's need in their order (``subtract.accumulate`` is sequential, so
    # the floats are the loop's below, row by row).
    head = _cheapest(score, tie, limit)
    kept.extend(head.tolist())
    counted = potential(head)
    for column, served in enumerate(servable[head].T):
        if served.any():
            taken = np.concatenate(([need[column]], counted[served]))
            need[column] = float(np.subtract.accumulate(taken)[-1])
    if not unmet_bits():  # every source covered: past them only the forced rows are kept
        kept.extend(np.setdiff1d(np.flatnonzero(forced), head).tolist())
        return np.array(kept, dtype=np.int64)
    order = np.lexsort((tie, score))
    position = limit
    # Past them a row is kept if it serves a source still short of cover (or is forced). Short
    # sources only ever become covered, so between two such changes every hit is kept.
    while position < count:
        short = unmet_bits()
        rest = order[position:]
        hits = np.flatnonzero(((bits[rest] & short) != 0) | forced[rest]).tolist()
        if not hits:
            break
        for hit in hits:
            row = int(rest[hit])
            kept.append(row)
            counts = float(potential(np.array([row]))[0])
            for column in np.flatnonzero(servable[row]).tolist():
                need[column] -= counts
            if short and unmet_bits() != short:
                position += hit + 1
                break
        else:
            break
    return np.array(kept, dtype=np.int64)


def _cheapest(score: FloatArray, tie: IntArray, limit: int) -> IntArray:
    """The first ``limit`` rows of ``np.lexsort((tie, score))`` without sorting every row: only
    those as cheap as the ``limit``-th cheapest can be among them."""
    if len(score) > 4 * limit:
        threshold = np.partition(score, limit - 1)[limit - 1]
        if not np.isnan(threshold):
            head = np.flatnonzero(score <= threshold)
            return head[np.lexsort((tie[head], score[head]))][:limit]
    return np.lexsort((tie, score))[:limit]


def drop_dominated(options: list[Option], keep: set[OptionKey] | None = None) -> list[Option]:
    """Drop options no better than another of the same workload and pool on any axis.

    Axes: capacity per GPU slot (higher is better), slots per replica (fewer is better: finer
    steps of capacity), precision rank (lower is better) and the traffic sources served (a
    superset is better). Latency is not an axis: every option left meets the SLO, and which one
    is faster is only the last objective's concern. Ties keep the first. Options in ``keep``
    (the previous plan's) always stay, so its replicas can stay where they are.
    """
    keep = keep or set()
    axes = [
        _Axes(o.index, (o.workload, o.pool), _key(o.capacity_rps, o.slots, o.precision_rank,
              len(o.servable_sources)), frozenset(o.servable_sources))
        for o in options
    ]  # fmt: skip
    stays = [(o.workload, o.pool, o.precision, o.tensor_parallel, o.share) in keep for o in options]
    return [options[p] for p in _undominated(axes, stays)]


def undominated_rows(rows: CandidateRows, selected: IntArray, forced: BoolArray) -> list[int]:
    """``drop_dominated`` on the options ``selected`` rows of one workload would make (the
    ``forced`` ones, the previous plan's, stay): the rows it keeps, ascending, so that only
    those become ``Option`` objects (each built once, with its index in the Problem)."""
    picked = selected.tolist()
    configs = [rows.configs[c] for c in rows.config[selected].tolist()]
    sources = [
        frozenset(r for r, ok in zip(rows.regions, served, strict=True) if ok)
        for served in rows.servable[selected].tolist()
    ]
    axes = [
        _Axes(row, pool, _key(capacity, replica_slots(c.share, c.tensor_parallel), c.rank,
              len(served)), served)
        for row, pool, capacity, c, served in zip(
            picked, rows.pool[selected].tolist(), rows.capacity_rps[selected].tolist(), configs,
            sources, strict=True,
        )
    ]  # fmt: skip
    return [picked[p] for p in _undominated(axes, forced[selected].tolist())]


class _Axes(NamedTuple):
    """One option as dominance reads it: its order (index), its group (workload and pool), its
    axes' key and the sources it serves."""

    order: int
    group: object
    key: tuple[float, int, int, int]
    sources: frozenset[str]


def _key(capacity_rps: float, slots: int, rank: int, sources: int) -> tuple[float, int, int, int]:
    return (capacity_rps / slots, -slots, -rank, sources)


def _undominated(axes: list[_Axes], stays: list[bool]) -> list[int]:
    """Positions of the options that stay or that no other of their group dominates, in their
    order."""
    by_group: dict[object, list[int]] = defaultdict(list)
    for position, item in enumerate(axes):
        by_group[item.group].append(position)
    kept: list[int] = []
    for members in by_group.values():
        for p in members:
            if stays[p] or not any(_dominates(axes[q], axes[p]) for q in members if q != p):
                kept.append(p)
    return sorted(kept, key=lambda p: axes[p].order)


def _dominates(a: _Axes, b: _Axes) -> bool:
    """True if ``a`` is at least as good as ``b`` on every axis and strictly better on one."""
    if not b.sources <= a.sources:
        return False
    at_least = all(x >= y - 1e-12 for x, y in zip(a.key, b.key, strict=True))
    if not at_least:
        return False
    if a.key != b.key:
        return True
    return a.order < b.order  # identical on every axis: keep the first
