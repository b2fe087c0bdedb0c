"""The compiled, integer-ready placement problem: GPU pools, candidate options and the reasons why
other options were dropped. Built by ``compile.compile_problem``; read (never changed) by the model
builder, the baselines, de-aggregation and the ``validate_plan`` oracle.

Units: rates in requests/s, latency in ms, cost in USD/hour, VRAM in GiB. Capacity on a GPU is
counted in *slots*: a whole GPU is ``SLOTS_PER_GPU`` slots; a replica sharing a GPU with others
takes ``SLOTS_PER_GPU / share`` of them (share 2 or 4), a tensor-parallel replica ``tp`` whole GPUs.
Slot sizes are powers of two that divide each other, which is what makes class-level counting
exact (``core``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import overload

from gridplace.planner.core import failure_domain, replica_slots
from gridplace.planner.pipeline_predict import ModelLoad
from gridplace.planner.rules import Reason
from gridplace.specs import ClaimLevel, Interconnect, Precision


@dataclass(frozen=True)
class GpuPool:
    """Identical GPUs of identical nodes (one node class, one GPU model)."""

    index: int
    key: str  # human-readable class key, e.g. "eu-west/casa-lisboa/rtx-3090x2/0.42"
    node_names: tuple[str, ...]  # sorted
    gpu_indices: tuple[int, ...]  # this pool's GPU indices on each of its nodes
    gpu_model: str
    memory_gib: float  # per GPU, after the node's overrides
    region: str
    provider: str
    price_per_gpu_hour: float  # node price shared evenly over the node's GPUs
    claims: ClaimLevel
    reliability: float
    throttle_ratio: float
    interconnect: Interconnect
    tdp_watts: float

    @property
    def node_count(self) -> int:
        return len(self.node_names)

    @property
    def gpus_per_node(self) -> int:
        return len(self.gpu_indices)


@dataclass(frozen=True)
class WorkloadDemand:
    """What a workload asks for, as the model sees it."""

    index: int
    name: str
    model: str
    demand_rps: float
    sources: tuple[tuple[str, float], ...]  # (region, share)
    priority: int
    replicas_min: int
    replicas_max: int
    ttft_slo_ms: float
    itl_slo_ms: float
    spread_across: str | None  # "provider" | "region" | None
    spread_max_per_domain: int | None
    precisions: tuple[Precision, ...]  # preferred first
    node_failures: int  # node losses the capacity must survive (0 or 1)
    booking: float  # capacity booked per request/s of demand (compile sets it: booking.py)
    # Only nodes less reliable than this count as ones that may fail (None: every node may).
    exempt_reliability: float | None = None
    min_share: float = 0.0  # of the booked demand, for a replica to carry load (replicas.minShare)

    @property
    def booked_rps(self) -> float:
        """The capacity the demand is covered with: demand x booking factor."""
        return self.demand_rps * self.booking

    def may_fail(self, reliability: float) -> bool:
        """Whether the failover rule counts a node of this reliability as one that may fail."""
        return self.exempt_reliability is None or reliability < self.exempt_reliability


@dataclass(frozen=True)
class Queueing:
    """What one replica's latency at a load below its capacity needs (``at_demand``), ms,
    network excluded: the TTFT it was booked at (full load), its TTFT at zero load, the service
    time of its prefill queue, and its ITL at batch 1."""

    booked_ttft_ms: float
    unloaded_ttft_ms: float
    service_ms: float
    unloaded_itl_ms: float


@dataclass(frozen=True)
class StagePart:
    """One stage of a pipeline option: layers ``[first, last)`` on every GPU of ``pool`` on
    ``node`` (tensor parallel inside the node)."""

    node: str
    pool: int
    gpus: tuple[int, ...]
    first: int
    last: int  # exclusive
    vram_gib: float  # per GPU
    power_watts: float  # sustained draw of the stage's GPUs


@dataclass(frozen=True)
class Option:
    """Run replicas of one workload on one pool at one precision, TP degree and GPU share."""

    index: int
    workload: int
    pool: int
    precision: Precision
    tensor_parallel: int
    share: int  # replicas per GPU (1 = exclusive)
    ttft_ms: dict[str, float]  # per traffic-source region, incl. p99 network RTT
    itl_ms: float
    capacity_rps: float  # per replica, inside the SLO
    vram_gib: float  # per GPU
    cost_per_hour: float  # per replica
    power_watts: float  # sustained draw per replica at planned load
    precision_rank: int  # 0 = the workload's preferred precision
    servable_sources: tuple[str, ...]  # sources whose TTFT target this option meets
    queueing: Queueing | None = None  # None when the predictor gives no queueing figures
    # A pipeline replica (``pipeline_options``): its stages on concrete nodes, the first on
    # ``pool``; the model it splits. Empty for a replica on one node.
    stages: tuple[StagePart, ...] = ()
    load: ModelLoad | None = None
    handoff_ms: float = 0.0  # of the ITL: the hand-offs between stages, per token
    tokens_per_s: float = 0.0  # output tokens/s at its capacity (pipelines: what notes print)

    @property
    def pools(self) -> tuple[int, ...]:
        """Every pool a replica of it takes GPUs of (a pipeline's stages' too)."""
        return tuple(dict.fromkeys((self.pool, *(s.pool for s in self.stages))))

    @cached_property
    def slots(self) -> int:
        """GPU slots one replica occupies (read millions of times by greedy's packing)."""
        return replica_slots(self.share, self.tensor_parallel)


@dataclass(frozen=True)
class Rejection:
    """Why a (workload, pool) pair, or one option of it, was dropped at compile time."""

    workload: int
    pool: int
    family: str  # the compile-time rule's id (``rules.RULES``), e.g. "vram-per-gpu", "slo-itl"
    reason: Reason  # its numbers; ``rules.describe`` words them
    nodes: int  # how many nodes this covers
    pools: tuple[int, ...] = ()  # every pool it covers (pools predicted alike share one)


class Rejections(Sequence[Rejection]):
    """Compile's rejections, workload by workload, each workload's built when first read.

    A 10,000-node x 1,000-workload grid has over a million; a plan reads none of them and
    ``explain`` those of a few workloads, so compile keeps how to build them (``builders[w]``
    gives workload ``w``'s, in order) rather than the objects. Reading them all gives the
    sequence an eager compile built; it compares equal to a tuple of the same rejections.
    """

    def __init__(self, builders: Sequence[Callable[[], Sequence[Rejection]]]) -> None:
        self._builders = builders
        self._built: dict[int, tuple[Rejection, ...]] = {}

    def of(self, workload: int) -> tuple[Rejection, ...]:
        """Workload ``workload``'s rejections (built once)."""
        found = self._built.get(workload)
        if found is None:
            found = tuple(self._builders[workload]()) if workload < len(self._builders) else ()
            self._built[workload] = found
        return found

    @cached_property
    def _all(self) -> tuple[Rejection, ...]:
        return tuple(r for w in range(len(self._builders)) for r in self.of(w))

    def __len__(self) -> int:
        return len(self._all)

    @overload
    def __getitem__(self, index: int) -> Rejection: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Rejection, ...]: ...
    def __getitem__(self, index: int | slice) -> Rejection | tuple[Rejection, ...]:
        return self._all[index]

    def __iter__(self) -> Iterator[Rejection]:
        return iter(self._all)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return self._all == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Rejections({len(self._builders)} workloads)"

    def __reduce__(self) -> tuple[object, ...]:
        # Builders are closures over the compile: another process gets the objects.
        return (tuple, (self._all,))


@dataclass(frozen=True)
class PreviousReplica:
    """A replica of the previous plan that still has a home (node alive and healthy)."""

    workload: int
    node: str
    gpus: tuple[int, ...]
    precision: Precision
    tensor_parallel: int
    option: int | None  # the option it matches now, if any
    pinned: bool


@dataclass(frozen=True)
class Problem:
    """Everything the model builder needs, prepared before any variable is made."""

    workloads: tuple[WorkloadDemand, ...]
    pools: tuple[GpuPool, ...]
    options: tuple[Option, ...]
    rejections: Sequence[Rejection]  # a tuple, or compile's ``Rejections`` (built when read)
    node_gpu_counts: dict[str, int]  # all healthy nodes: GPUs on the node
    previous: tuple[PreviousReplica, ...] = ()
    released: tuple[str, ...] = ()  # previous replicas whose node vanished or is unhealthy
    budget_per_hour: float | None = None
    # (workload, node): the node holds the workload's weights (a standby of the previous plan,
    # or reported cached), so a replica started there skips the download
    warm: frozenset[tuple[int, str]] = frozenset()

    def is_warm(self, workload: int, node: str) -> bool:
        return (workload, node) in self.warm

    def warm_nodes(self, workload: int, pool: GpuPool) -> int:
        """How many of ``pool``'s nodes hold ``workload``'s weights."""
        return sum(1 for node in pool.node_names if (workload, node) in self.warm)

    @cached_property
    def _by_workload(self) -> dict[int, list[Option]]:
        index: dict[int, list[Option]] = {w.index: [] for w in self.workloads}
        for option in self.options:
            index[option.workload].append(option)
        return index

    @cached_property
    def _rejections_by_workload(self) -> dict[int, list[Rejection]]:
        index: dict[int, list[Rejection]] = {w.index: [] for w in self.workloads}
        for rejection in self.rejections:
            index[rejection.workload].append(rejection)
        return index

    def rejections_of(self, workload: int) -> list[Rejection]:
        if isinstance(self.rejections, Rejections):
            return list(self.rejections.of(workload))
        return self._rejections_by_workload.get(workload, [])

    def options_of(self, workload: int) -> list[Option]:
        return self._by_workload.get(workload, [])

    @cached_property
    def pipeline_options(self) -> tuple[Option, ...]:
        """Options that are pipelines (read once per pool by the model's pool families)."""
        return tuple(o for o in self.options if o.stages)

    @cached_property
    def pipeline_pools(self) -> frozenset[int]:
        """Pools some pipeline option has a stage on."""
        return frozenset(s.pool for o in self.options for s in o.stages)

    def domains_of(self, option: Option, across: str) -> list[str]:
        """The spread domains a replica of ``option`` is in (every stage's, for a pipeline)."""
        pools = [s.pool for s in option.stages] or [option.pool]
        return sorted({failure_domain(self.pools[p], across) for p in pools})

    @cached_property
    def _load_rps(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for w in self.workloads:
            largest = max((o.capacity_rps for o in self.options_of(w.index)), default=0.0)
            found[w.index] = min(w.min_share * w.booked_rps, largest)
        return found

    def load_rps(self, workload: int) -> float:
        """What a replica of ``workload`` must carry to count toward replicas.min, spread and
        failover: replicas.minShare of the target, or the largest replica any of its options
        offers when that is less (a workload larger than any replica still has replicas that
        count)."""
        return self._load_rps[workload]

    def carries_load(self, option: Option) -> bool:
        """Whether a replica of ``option`` counts toward replicas.min, spread and failover."""
        return option.capacity_rps >= self.load_rps(option.workload)

    def spread_limit_rps(self, workload: int) -> float | None:
        """The capacity one spread domain may hold: maxPerDomain / replicas.min of the target
        (at least one replica of the largest kind), when replicas.min exceeds maxPerDomain;
        None when no such limit applies."""
        w = self.workloads[workload]
        per_domain = w.spread_max_per_domain
        if w.spread_across is None or per_domain is None or per_domain >= w.replicas_min:
            return None
        largest = max((o.capacity_rps for o in self.options_of(workload)), default=0.0)
        return max(per_domain / w.replicas_min * w.booked_rps, largest)
