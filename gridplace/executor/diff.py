"""Desired vs actual replicas on one node -> actions: start, stop, move (start + stop), keep.

Owns: replica identity (``ReplicaSpec``), the pure diff, and which starts must wait for GPUs to be
freed. Must not: do I/O, read clocks or know about processes (``reconcile`` acts on the result).

Identity: a replica is (workload, GPUs, precision, tensor-parallel degree, GPU share). Two equal
assignments on one node (two replicas sharing GPUs) are told apart by an ordinal, so the desired
side is a multiset. A running replica whose identity is still desired is kept untouched.

Moves: a desired replica that does not run yet, of a workload that has an undesired replica here,
*replaces* it: the old one is stopped only after the new one is healthy (make before break). The
exception is a start whose GPUs cannot hold both (shares over one whole GPU): then the old one
must go first, and the action says so (``in_place``); see ``gpus_conflict``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from gridplace.specs import Assignment
from gridplace.specs.plan import pipeline_id


@dataclass(frozen=True, order=True)
class ReplicaSpec:
    """What one replica is, independent of the process that serves it."""

    workload: str
    gpus: tuple[int, ...]
    precision: str
    tensor_parallel: int = 1
    gpu_share: int = 1
    ordinal: int = 0  # tells equal assignments on one node apart
    pipeline: str = ""  # a pipeline replica's id (``specs.plan.pipeline_id``); "" for one node
    stage: int = 0  # this node's stage of the pipeline
    part: str = ""  # "" the server; "stage" the stage's own process (``executor.pipeline``)

    @classmethod
    def from_assignment(cls, assignment: Assignment, ordinal: int = 0) -> ReplicaSpec:
        return cls(
            workload=assignment.workload,
            gpus=tuple(assignment.gpus),
            precision=assignment.precision.value,
            tensor_parallel=assignment.tensor_parallel,
            gpu_share=assignment.gpu_share,
            ordinal=ordinal,
            pipeline=pipeline_id(assignment) or "",
        )

    @property
    def key(self) -> str:
        """A stable text identity, e.g. ``chat-8b/gpus=0,1/fp8/tp2/share1/#0`` (a pipeline's
        parts add ``/pipeline=ID/stage1`` and the part)."""
        gpus = ",".join(str(g) for g in self.gpus)
        key = (
            f"{self.workload}/gpus={gpus}/{self.precision}/tp{self.tensor_parallel}"
            f"/share{self.gpu_share}/#{self.ordinal}"
        )
        if self.pipeline:
            key += f"/pipeline={self.pipeline}/stage{self.stage}" + (
                f"/{self.part}" * bool(self.part)
            )
        return key

    @property
    def gpu_fraction(self) -> Fraction:
        """Share of each of its GPUs it takes (1/gpuShare)."""
        return Fraction(1, self.gpu_share)


def desired_replicas(assignments: Iterable[Assignment]) -> list[ReplicaSpec]:
    """Assignments -> specs with ordinals numbering equal ones (in the order given)."""
    seen: Counter[ReplicaSpec] = Counter()
    out = []
    for assignment in assignments:
        base = ReplicaSpec.from_assignment(assignment)
        out.append(ReplicaSpec.from_assignment(assignment, ordinal=seen[base]))
        seen[base] += 1
    return out


@dataclass(frozen=True)
class Actual:
    """A replica the agent has (started, running or being drained), by its state-file id."""

    replica_id: str
    spec: ReplicaSpec
    stopping: bool = False  # already draining or being stopped: it will not be kept


@dataclass(frozen=True)
class Start:
    spec: ReplicaSpec
    replaces: str | None = None  # id of the replica it moves from (stopped once this is healthy)
    in_place: bool = False  # the replaced one holds its GPUs: stop it first (break before make)
    wait_for: tuple[str, ...] = ()  # ids that must be gone before this start (GPUs held)


@dataclass(frozen=True)
class Stop:
    replica_id: str
    replaced_by: ReplicaSpec | None = None  # None: the workload simply leaves this node


@dataclass(frozen=True)
class Keep:
    replica_id: str


@dataclass(frozen=True)
class Diff:
    starts: list[Start] = field(default_factory=list)
    stops: list[Stop] = field(default_factory=list)
    keeps: list[Keep] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to do: every desired replica runs and nothing else does."""
        return not self.starts and not self.stops

    @property
    def moves(self) -> list[Start]:
        return [start for start in self.starts if start.replaces is not None]


def gpus_conflict(a: ReplicaSpec, b: ReplicaSpec) -> bool:
    """Whether ``a`` and ``b`` cannot run at once: they share a GPU and their shares of it add
    up to more than the whole GPU."""
    return bool(set(a.gpus) & set(b.gpus)) and a.gpu_fraction + b.gpu_fraction > 1


def compute_diff(desired: Sequence[ReplicaSpec], actual: Sequence[Actual]) -> Diff:
    """The actions that turn ``actual`` into ``desired`` (pure; see the module docstring).

    Tie-breaks: when a workload has several undesired replicas and several new ones, they are
    paired in sorted spec order, so the same inputs always give the same pairs.
    """
    live = {a.replica_id: a for a in actual if not a.stopping}
    by_spec: dict[ReplicaSpec, list[str]] = defaultdict(list)
    for replica_id, item in sorted(live.items()):
        by_spec[item.spec].append(replica_id)
    keeps: list[Keep] = []
    missing: list[ReplicaSpec] = []
    for spec in sorted(desired):
        if by_spec.get(spec):
            keeps.append(Keep(by_spec[spec].pop(0)))
        else:
            missing.append(spec)
    leftovers = sorted(
        (rid for ids in by_spec.values() for rid in ids), key=lambda rid: (live[rid].spec, rid)
    )
    old_by_workload: dict[str, list[str]] = defaultdict(list)
    for rid in leftovers:
        old_by_workload[live[rid].spec.workload].append(rid)
    starts: list[Start] = []
    stops: list[Stop] = []
    for spec in missing:
        olds = old_by_workload.get(spec.workload)
        replaces = olds.pop(0) if olds else None
        if replaces is not None:
            stops.append(Stop(replaces, replaced_by=spec))
        starts.append(Start(spec, replaces=replaces))
    for olds in old_by_workload.values():
        stops.extend(Stop(rid) for rid in olds)
    kept = {k.replica_id for k in keeps}
    # GPUs a start needs that are held by replicas on their way out: wait for those (a kept
    # replica holding them is the planner's doing and is left alone: both are desired).
    leaving = {a.replica_id: a.spec for a in actual if a.replica_id not in kept}
    resolved: list[Start] = []
    for start in starts:
        blockers = tuple(
            sorted(rid for rid, spec in leaving.items() if gpus_conflict(start.spec, spec))
        )
        resolved.append(
            Start(
                start.spec,
                replaces=start.replaces,
                in_place=start.replaces in blockers,
                wait_for=blockers,
            )
        )
    return Diff(starts=resolved, stops=stops, keeps=keeps)
