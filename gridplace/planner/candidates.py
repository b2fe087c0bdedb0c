"""Which candidate options of a workload reach the model: dominated ones dropped, and on large
grids only the cheapest ones that cover the workload's demand several times over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gridplace.planner.core import SLOTS_PER_GPU, replica_slots
from gridplace.planner.options import (
    BoolArray,
    CandidateRows,
    FloatArray,
    IntArray,
    potential_rps,
)
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


def select_candidates(
    rows: CandidateRows,
    demand: WorkloadDemand,
    pools: Sequence[GpuPool],
    forced: BoolArray,
    limit: int,
) -> IntArray:
    """The rows to keep, ascending: the cheapest candidates per request/s until they could serve
    every source ``CANDIDATE_COVER`` times over (and at least ``limit``), plus the ``forced``
    ones (those the previous plan uses). A large grid offers thousands of interchangeable
    options per workload; the model only needs enough of the best ones to choose among.
    """
    count = len(rows)
    if count <= limit:
        return np.arange(count, dtype=np.int64)
    # Cheapest way to serve the whole demand with this option alone first (so granularity
    # counts: a small replica can beat a big efficient one); ties: preferred precision, more
    # sources, pool order, enumeration order.
    wanted = demand.booked_rps
    rank = np.array([c.rank for c in rows.configs], dtype=np.int64)[rows.config]
    score = np.ceil(wanted / rows.capacity_rps) * rows.cost_per_hour
    sources = rows.servable.sum(axis=1)
    # One integer key for (rank, more sources, pool); lexsort is stable, so enumeration order
    # breaks the remaining ties.
    pools_n, regions_n = int(rows.pool.max()) + 1, len(rows.regions) + 1
    tie = (rank * regions_n + (len(rows.regions) - sources)) * pools_n + rows.pool
    shares = dict(demand.sources)
    need = [demand.booked_rps * shares[r] * CANDIDATE_COVER for r in rows.regions]
    bits = rows.servable.astype(np.int64) @ (1 << np.arange(len(rows.regions), dtype=np.int64))
    kept: list[int] = []

    def keep(row: int) -> None:
        kept.append(row)
        potential = potential_rps(rows, pools, row)
        for column in np.flatnonzero(rows.servable[row]).tolist():
            need[column] -= potential

    def unmet_bits() -> int:
        return sum(1 << column for column, left in enumerate(need) if left > 0)

    # The first ``limit`` rows in order are kept whatever they serve: what they could serve is
    # taken off each source's need in their order (``subtract.accumulate`` is sequential, so
    # the floats are ``keep``'s, row by row).
    head = _cheapest(score, tie, limit)
    kept.extend(head.tolist())
    potential = _potentials(rows, pools, head)
    for column, served in enumerate(rows.servable[head].T):
        if served.any():
            taken = np.concatenate(([need[column]], potential[served]))
            need[column] = float(np.subtract.accumulate(taken)[-1])
    if not unmet_bits():  # every source covered: past them only the forced rows are kept
        if forced.any():
            kept.extend(np.setdiff1d(np.flatnonzero(forced), head).tolist())
        return np.sort(np.array(kept, dtype=np.int64))
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
            keep(int(rest[hit]))
            if short and unmet_bits() != short:
                position += hit + 1
                break
        else:
            break
    return np.sort(np.array(kept, dtype=np.int64))


def _potentials(rows: CandidateRows, pools: Sequence[GpuPool], chosen: IntArray) -> FloatArray:
    """``potential_rps`` of each of the ``chosen`` rows: the same products, in its order."""
    picked = [pools[p] for p in rows.pool[chosen].tolist()]
    configs = [rows.configs[c] for c in rows.config[chosen].tolist()]
    nodes = [pool.node_count for pool in picked]
    replicas = [
        pool.gpus_per_node * SLOTS_PER_GPU // replica_slots(c.share, c.tensor_parallel)
        for pool, c in zip(picked, configs, strict=True)
    ]
    found: FloatArray = rows.capacity_rps[chosen] * np.array(nodes, dtype=np.float64) * replicas
    return found


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
