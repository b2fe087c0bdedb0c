"""Which candidate options of a workload reach the model: dominated ones dropped, and on large
grids only the cheapest ones that cover the workload's demand several times over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

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

    # The first ``limit`` rows in order are kept whatever they serve.
    head = _cheapest(score, tie, limit)
    for row in head.tolist():
        keep(row)
    if not unmet_bits():  # every source covered: past them only the forced rows are kept
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
    by_key: dict[tuple[int, int], list[Option]] = defaultdict(list)
    for option in options:
        by_key[(option.workload, option.pool)].append(option)
    kept: list[Option] = []
    for group in by_key.values():
        for option in group:
            key = (option.workload, option.pool, option.precision, option.tensor_parallel,
                   option.share)  # fmt: skip
            if key in keep or not any(
                _dominates(other, option) for other in group if other is not option
            ):
                kept.append(option)
    return sorted(kept, key=lambda o: o.index)


def _dominates(a: Option, b: Option) -> bool:
    """True if ``a`` is at least as good as ``b`` on every axis and strictly better on one."""
    if not set(b.servable_sources) <= set(a.servable_sources):
        return False
    a_key = (a.capacity_rps / a.slots, -a.slots, -a.precision_rank, len(a.servable_sources))
    b_key = (b.capacity_rps / b.slots, -b.slots, -b.precision_rank, len(b.servable_sources))
    at_least = all(x >= y - 1e-12 for x, y in zip(a_key, b_key, strict=True))
    if not at_least:
        return False
    if a_key != b_key:
        return True
    return a.index < b.index  # identical on every axis: keep the first
