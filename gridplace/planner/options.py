"""Candidate options of one workload, enumerated for all GPU pools at once.

Owns the enumeration that compile used to do pool by pool in Python. Pools that share a
prediction signature (GPU figures, GPUs per node, interconnect, throttle bucket) and a TTFT
budget form a group that is predicted once per precision x TP degree x GPU share; the
predictions are cached across workloads that ask the performance model the same questions
(same model, engine, ITL target and token counts). Which pools meet the TTFT target from which
traffic source is then decided with numpy over the pools x sources RTT matrix, and only the rows
that candidate selection keeps become ``Option`` objects. A 10,000-node x 1,000-workload grid
holds ~9 million candidate rows; making each of them an object is what compile must not do.

The enumeration order (group in order of its first pool, then precision, TP, share, then pool)
is the order the per-pool loop used: option numbering and every tie-break downstream depend on
it. ``tests/planner/reference_compile.py`` keeps the per-pool loop as the oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

from gridplace.planner.core import (
    SHARE_FACTORS,
    TTFT_BUDGET_STEP_MS,
)
from gridplace.planner.problem import (
    GpuPool,
    Option,
    Queueing,
    Rejection,
    WorkloadDemand,
)
from gridplace.planner.rules import Reason
from gridplace.specs import GPUModelSpec, InferenceWorkload, Precision

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MAX_TENSOR_PARALLEL = 8
_TP_DEGREES = (1, 2, 4, 8)  # powers of two up to MAX_TENSOR_PARALLEL


@dataclass(frozen=True)
class Config:
    """One replica configuration: precision (with its rank in the workload's list), TP, share."""

    rank: int
    precision: Precision
    tensor_parallel: int
    share: int

    @property
    def label(self) -> str:
        share = f" 1/{self.share} GPU" if self.share > 1 else ""
        return f"{self.precision.value} tp{self.tensor_parallel}{share}"


def configs_of(precisions: Sequence[Precision]) -> list[Config]:
    """Every configuration in enumeration order: precision, then TP degree, then GPU share
    (shares only at TP 1). A pool uses those with TP <= its GPUs per node."""
    return list(_configs(tuple(precisions)))


@cache
def _configs(precisions: tuple[Precision, ...]) -> tuple[Config, ...]:
    return tuple(
        Config(rank, precision, tp, share)
        for rank, precision in enumerate(precisions)
        for tp in _TP_DEGREES
        if tp <= MAX_TENSOR_PARALLEL
        for share in (SHARE_FACTORS if tp == 1 else (1,))
    )


@dataclass(frozen=True)
class GroupPredictions:
    """What the performance model says for one group of pools, one entry per ``Config``."""

    ok: BoolArray  # every compile-time rule holds (before network)
    prefill_ms: FloatArray
    itl_ms: FloatArray
    capacity_rps: FloatArray
    vram_gib: FloatArray
    failures: tuple[tuple[str, Reason] | None, ...]  # (rule id, reason) where not ok
    queueing: tuple[Queueing | None, ...] = ()  # per config, for latency at demand
    # Where given, the configurations booked at a positive rate (the others have no queueing):
    # ``queueing`` holds what their budgets share, booked at ``prefill_ms``.
    booked: BoolArray | None = None

    def queueing_of(self, config: int) -> Queueing | None:
        """Configuration ``config``'s queueing figures."""
        if self.booked is None or not self.booked[config]:
            return self.queueing[config] if self.queueing and self.booked is None else None
        shared = self.queueing[config]
        assert shared is not None
        return Queueing(float(self.prefill_ms[config]), shared.unloaded_ttft_ms,
                        shared.service_ms, shared.unloaded_itl_ms)  # fmt: skip


@dataclass(frozen=True)
class GroupTable:
    """The answers for a workload's groups of pools, stacked: groups x configurations."""

    ok: BoolArray
    prefill_ms: FloatArray
    itl_ms: FloatArray
    capacity_rps: FloatArray
    vram_gib: FloatArray
    answers: Sequence[GroupPredictions]  # every answer of the kind (grows; never rewritten)
    rows: IntArray  # per group: its entry in ``answers``

    @property
    def predictions(self) -> list[GroupPredictions]:
        """Per group: its answer (failures and queueing figures)."""
        return [self.answers[r] for r in self.rows.tolist()]


# predict(first pool of each group, each group's TTFT budget, configurations): the answers
# (``group_predictor.GroupPredictor.for_workload``).
PredictGroups = Callable[[IntArray, list[float], list[Config]], GroupTable]


class PoolGrid:
    """Per-pool figures as arrays, computed once per compile, and the RTT matrix by region."""

    def __init__(
        self,
        pools: Sequence[GpuPool],
        pool_gpus: Sequence[GPUModelSpec],
        rtt_p99_ms: Callable[[str, str], float],
        rtt_p99_many: Callable[[str, Sequence[str]], FloatArray] | None = None,
    ) -> None:
        self.pools = pools
        self.pool_gpus = pool_gpus
        self._rtt_p99_ms = rtt_p99_ms
        self._rtt_p99_many = rtt_p99_many
        signatures: dict[tuple[object, ...], int] = {}
        variants: dict[tuple[object, ...], int] = {}
        self.signature = np.array(
            [
                signatures.setdefault(_signature(p, g), len(signatures))
                for p, g in zip(pools, pool_gpus, strict=True)
            ],
            dtype=np.int64,
        )
        # The exact GPU figures of a pool (PCIe overrides included): a group is predicted on its
        # first pool's GPU, so cached predictions are keyed by it too.
        self.gpu_variant = [
            variants.setdefault((g.model_dump_json(),), len(variants)) for g in pool_gpus
        ]
        self.gpus_per_node = np.array([p.gpus_per_node for p in pools], dtype=np.int64)
        self.node_count = np.array([p.node_count for p in pools], dtype=np.int64)
        self.price_per_gpu_hour = np.array([p.price_per_gpu_hour for p in pools], dtype=np.float64)
        self.tdp_watts = np.array([p.tdp_watts for p in pools], dtype=np.float64)
        self.claims_rank = np.array([p.claims.rank for p in pools], dtype=np.int64)
        self.reliability = np.array([p.reliability for p in pools], dtype=np.float64)
        self._rtt: dict[str, FloatArray] = {}

    def rtt_ms(self, region: str) -> FloatArray:
        """p99 RTT from ``region`` to each pool (its worst node), ms."""
        column = self._rtt.get(region)
        if column is None:
            if self._rtt_p99_many is not None and self.pools:
                names = [n for p in self.pools for n in p.node_names]
                starts = np.cumsum([0, *(p.node_count for p in self.pools[:-1])])
                column = np.maximum.reduceat(self._rtt_p99_many(region, names), starts)
            else:
                column = np.array(
                    [max(self._rtt_p99_ms(region, n) for n in p.node_names) for p in self.pools],
                    dtype=np.float64,
                )
            self._rtt[region] = column
        return column


def _signature(pool: GpuPool, gpu: GPUModelSpec) -> tuple[object, ...]:
    """Pools with equal signatures get equal predictions (price and place aside)."""
    return (
        pool.gpu_model, gpu.memory_gib, gpu.memory_bandwidth_gbps, pool.gpus_per_node,
        pool.interconnect, pool.throttle_ratio,
    )  # fmt: skip


@dataclass(frozen=True)
class CandidateRows:
    """The options of one workload that meet every compile-time rule, one row each, in
    enumeration order (row number = the option's index among its workload's candidates)."""

    regions: tuple[str, ...]  # the workload's traffic sources, column order of the matrices
    configs: tuple[Config, ...]
    pool: IntArray
    config: IntArray
    prefill_ms: FloatArray
    itl_ms: FloatArray
    capacity_rps: FloatArray
    vram_gib: FloatArray
    cost_per_hour: FloatArray  # per replica
    ttft_ms: FloatArray  # rows x regions, network included
    servable: BoolArray  # rows x regions: meets that source's TTFT target
    # The answers a row's queueing figures are read from, through ``answer`` (its entry there),
    # when it becomes an Option (only the few rows kept do: a tuple per row cost a tenth of a
    # 10,000-node compile).
    answers: Sequence[GroupPredictions] = ()
    answer: IntArray | None = None

    def __len__(self) -> int:
        return len(self.pool)

    def _queueing(self, row: int) -> Queueing | None:
        if self.answer is None:
            return None
        return self.answers[int(self.answer[row])].queueing_of(int(self.config[row]))

    def option(
        self, row: int, demand: WorkloadDemand, pools: Sequence[GpuPool], index: int
    ) -> Option:
        """The ``Option`` of ``row``, numbered ``index`` in the Problem."""
        config = self.configs[int(self.config[row])]
        pool = pools[int(self.pool[row])]
        ttft = dict(zip(self.regions, self.ttft_ms[row].tolist(), strict=True))
        servable = tuple(r for r, ok in zip(self.regions, self.servable[row], strict=True) if ok)
        return Option(
            index=index,
            workload=demand.index,
            pool=pool.index,
            precision=config.precision,
            tensor_parallel=config.tensor_parallel,
            share=config.share,
            ttft_ms=ttft,
            itl_ms=float(self.itl_ms[row]),
            capacity_rps=float(self.capacity_rps[row]),
            vram_gib=float(self.vram_gib[row]),
            cost_per_hour=pool.price_per_gpu_hour * config.tensor_parallel / config.share,
            power_watts=pool.tdp_watts * config.tensor_parallel / config.share,
            precision_rank=config.rank,
            servable_sources=servable,
            queueing=self._queueing(row),
        )


@dataclass(frozen=True)
class _Cells:
    """One workload's eligible pools x configs: groups, predictions, TTFT per source."""

    regions: tuple[str, ...]
    configs: list[Config]
    pools: IntArray  # the eligible pools
    group: IntArray  # per pool: its group (numbered in order of first pool)
    table: GroupTable  # per group x config
    rtt: FloatArray  # pools x sources
    usable: BoolArray  # groups x configs: TP fits the group's nodes
    ttft: FloatArray  # pools x configs x sources, network included
    servable: BoolArray  # pools x configs x sources

    @property
    def predicted(self) -> BoolArray:
        """pools x configs: usable and every rule holds."""
        return (self.usable & self.table.ok)[self.group]


def _cells(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    grid: PoolGrid,
    eligible: Sequence[int] | IntArray,
    predict: PredictGroups,
) -> _Cells:
    spec = workload.spec
    regions = tuple(dict.fromkeys(region for region, _ in demand.sources))
    configs = configs_of(spec.precisions)
    pools = np.asarray(eligible, dtype=np.int64)
    rtt = np.column_stack([grid.rtt_ms(region)[pools] for region in regions])  # pools x sources
    steps = np.floor((spec.slo.ttft_ms - rtt.min(axis=1)) / TTFT_BUDGET_STEP_MS)
    budget = steps * TTFT_BUDGET_STEP_MS
    group, firsts = _groups(grid.signature[pools], steps)
    first = pools[firsts]
    table = predict(first, budget[firsts].tolist(), configs)
    tp = np.array([c.tensor_parallel for c in configs], dtype=np.int64)
    usable = tp[None, :] <= grid.gpus_per_node[first][:, None]  # groups x configs
    ttft = table.prefill_ms[group][:, :, None] + rtt[:, None, :]
    servable = ttft <= spec.slo.ttft_ms
    return _Cells(regions, configs, pools, group, table, rtt, usable, ttft, servable)


def _groups(signature: IntArray, steps: FloatArray) -> tuple[IntArray, IntArray]:
    """Pools alike in signature and TTFT budget: each pool's group, numbered in order of the
    group's first pool, and each group's first position."""
    if not len(signature) or not np.isfinite(steps).all():
        keys: dict[tuple[int, float], int] = {}
        pairs = zip(signature.tolist(), steps.tolist(), strict=True)
        numbers = np.array([keys.setdefault(k, len(keys)) for k in pairs], dtype=np.int64)
        return numbers, np.unique(numbers, return_index=True)[1]
    low = int(steps.min())
    key = signature * (int(steps.max()) - low + 1) + (steps.astype(np.int64) - low)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    number = np.empty_like(order)
    number[order] = np.arange(len(order))
    return number[inverse.reshape(-1)], first[order]


def enumerate_candidates(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    grid: PoolGrid,
    eligible: Sequence[int] | IntArray,
    predict: PredictGroups,
) -> CandidateRows:
    """Every option of one workload on the ``eligible`` pools (trust already checked) that meets
    the compile-time rules (``rejected_candidates`` says why the others do not)."""
    cells = _cells(demand, workload, grid, eligible, predict)
    configs, table, group = cells.configs, cells.table, cells.group
    candidate = cells.predicted & cells.servable.any(axis=2)
    # Candidate rows in enumeration order: group, config, pool.
    position, config = np.nonzero(candidate)
    key = (group[position] * len(configs) + config) * len(group) + position  # unique per row
    order = np.argsort(key)
    position, config = position[order], config[order]
    row_group = group[position]
    row_pool = cells.pools[position]
    tp = np.array([c.tensor_parallel for c in configs], dtype=np.int64)
    share = np.array([c.share for c in configs], dtype=np.int64)
    return CandidateRows(
        regions=cells.regions,
        configs=tuple(configs),
        pool=row_pool,
        config=config,
        prefill_ms=table.prefill_ms[row_group, config],
        itl_ms=table.itl_ms[row_group, config],
        capacity_rps=table.capacity_rps[row_group, config],
        vram_gib=table.vram_gib[row_group, config],
        cost_per_hour=grid.price_per_gpu_hour[row_pool] * tp[config] / share[config],
        ttft_ms=cells.ttft[position, config],
        servable=cells.servable[position, config],
        answers=table.answers,
        answer=table.rows[row_group],
    )


def rejected_candidates(
    demand: WorkloadDemand,
    workload: InferenceWorkload,
    grid: PoolGrid,
    eligible: Sequence[int] | IntArray,
    predict: PredictGroups,
) -> list[Rejection]:
    """A ``Rejection`` for each (group, config) of ``enumerate_candidates`` that breaks a rule,
    in enumeration order (compile builds them only when read: ``problem.Rejections``)."""
    cells = _cells(demand, workload, grid, eligible, predict)
    unservable = cells.predicted & ~cells.servable.any(axis=2)
    return _rejections(demand, grid, cells, cells.usable & ~cells.table.ok, unservable)


def _rejections(
    demand: WorkloadDemand,
    grid: PoolGrid,
    cells: _Cells,
    failed: BoolArray,
    unservable: BoolArray,
) -> list[Rejection]:
    """One rejection per (group, config) a rule fails for (covering every pool of the group),
    and one per (group, config) whose TTFT target no pool meets from any source (covering those
    pools), in enumeration order."""
    configs, group, pools = cells.configs, cells.group, cells.pools
    predictions, rtt, prefill = cells.table.predictions, cells.rtt, cells.table.prefill_ms
    # Members of each group in pool order (a stable sort keeps it), and their node counts.
    by_group = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[by_group], np.arange(len(predictions) + 1)).tolist()
    members = pools[by_group].tolist()

    def covered(g: int) -> tuple[int, ...]:  # only the few groups a rule fails for ask
        return tuple(members[bounds[g] : bounds[g + 1]])

    nodes = np.bincount(group, weights=grid.node_count[pools], minlength=len(predictions))
    nodes_of = [int(n) for n in nodes.tolist()]
    unservable_of = _unservable_runs(unservable, group, pools, grid)
    best_rtt = dict(zip(pools.tolist(), rtt.min(axis=1).tolist(), strict=True))
    events = failed.copy()
    for g, c in unservable_of:
        events[g, c] = True
    found: list[Rejection] = []
    for g, c in zip(*(axis.tolist() for axis in np.nonzero(events)), strict=True):
        if failed[g, c]:
            failure = predictions[g].failures[c]
            assert failure is not None
            family, reason = failure
            every = covered(g)
            found.append(Rejection(demand.index, every[0], family, reason, nodes_of[g], every))
            continue
        dropped, count = unservable_of[(g, c)]
        worst = float(prefill[g, c]) + best_rtt[dropped[0]]
        reason = Reason(configs[c].label, "ttft", worst, demand.ttft_slo_ms, "ms")
        found.append(Rejection(demand.index, dropped[0], "slo-ttft", reason, count, dropped))
    return found


def _unservable_runs(
    unservable: BoolArray, group: IntArray, pools: IntArray, grid: PoolGrid
) -> dict[tuple[int, int], tuple[tuple[int, ...], int]]:
    """(group, config) -> (its unservable pools in pool order, their nodes), cut from one sorted
    array (a 10,000-node grid has tens of thousands of such cells per workload)."""
    position, config = np.nonzero(unservable)
    if not len(position):
        return {}
    order = np.lexsort((position, config, group[position]))
    position, config = position[order], config[order]
    cell_group, cell_pool = group[position], pools[position]
    cuts = np.flatnonzero((np.diff(cell_group) != 0) | (np.diff(config) != 0)) + 1
    starts = np.concatenate(([0], cuts))
    nodes = np.add.reduceat(grid.node_count[cell_pool], starts).tolist()
    runs = np.split(cell_pool, cuts)
    keys = zip(cell_group[starts].tolist(), config[starts].tolist(), strict=True)
    return {
        key: (tuple(run.tolist()), int(n)) for key, run, n in zip(keys, runs, nodes, strict=True)
    }


__all__ = [
    "MAX_TENSOR_PARALLEL",
    "CandidateRows",
    "Config",
    "GroupPredictions",
    "GroupTable",
    "PoolGrid",
    "PredictGroups",
    "configs_of",
    "enumerate_candidates",
    "rejected_candidates",
]
