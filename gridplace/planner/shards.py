"""Shards: a grid too large for one model cut, before compile, into miniatures of itself.

Owns cutting ``PlannerInputs`` into shards, compiling and solving one shard, and joining the
shards' problems and solutions into the whole grid's indices (``parts`` runs the shards: here,
on local processes or on a Ray cluster). Every region's providers are dealt among the shards
(largest fleet first, each to the shard with the fewest of that region's GPUs) and the
workloads too (by home region, model and rate, in turn), so each shard holds a share of every
region's capacity and demand. A workload is placed only on its shard's nodes.

Why before compile, not after (``decompose.by_site``): a part cut after compile holds only the
options one compile of the whole grid kept, and at 100,000 nodes x 10,000 workloads the whole model
is too large for its unmet stage to leave greedy's start in a minute, even where its kept options
could serve every request (README, "From 10,000 to 100,000 nodes"). Each shard is a model of the
size that solves, compiled over its own nodes, and the shards run in parallel. What sharding gives
up: a workload's shard solve sees only its shard's nodes (``reconcile`` then places the demand left
unmet on every shard's leftover capacity), the shards' plans are not one model's optimum, and a
budget (it spans all workloads) is refused. A previous plan is cut with the grid: each shard keeps
the previous replicas of its workloads on its nodes (``shard_previous``); one whose workload and
node fell in different shards is not kept (its workload is placed anew).

How many shards (``shard_count``): ``auto`` is one per ``SHARD_NODES`` nodes (rounded; a grid
below 1.5 x ``SHARD_NODES`` is one shard: planned whole, as without sharding).
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gridplace.planner.compile import compile_problem
from gridplace.planner.decompose import Part, merge
from gridplace.planner.parts import run_parts
from gridplace.planner.ports import OptionPredictor, PlannerInputs, RttLookup
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import GpuPool, Option, PreviousReplica, Problem, WorkloadDemand
from gridplace.planner.solve import solve_problem
from gridplace.planner.solver_settings import Solution, SolverSettings
from gridplace.specs import InferenceWorkload, Node, PlacementPlan

SHARD_NODES = 10_000  # nodes per shard that ``auto`` aims at: a model of the size that solves
MAX_SHARDS = 64

ShardCount = int | Literal["auto"]


def shard_count(requested: ShardCount, nodes: int) -> int:
    """The shards to cut ``nodes`` into: ``requested``, or with ``auto`` one per
    ``SHARD_NODES`` (rounded to the nearest, at least 1); never more shards than nodes."""
    count = max(1, round(nodes / SHARD_NODES)) if requested == "auto" else requested
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shards must be 1-{MAX_SHARDS} or auto, got {requested}")
    return max(1, min(count, nodes))


@dataclass(frozen=True)
class Shard:
    """One shard's inputs, the whole grid's indices of its workloads, and how to compile it
    (``predictor`` None: the calibrated model, made where the shard runs)."""

    inputs: PlannerInputs
    workloads: tuple[int, ...]
    latency: RttLookup
    predictor: OptionPredictor | None = None
    # What makes the predictor where the shard runs (picklable: a predictor is a closure).
    make: Callable[[], OptionPredictor] = make_predictor


@dataclass(frozen=True)
class ShardResult:
    """A shard's compiled problem (rejections left out: a shard's run elsewhere sends them
    back as objects, a million per 10,000 nodes), its solution and what it cost where it ran."""

    problem: Problem
    solution: Solution
    compile_cpu_s: float
    solve_cpu_s: float
    peak_rss_mib: float


def shard_inputs(inputs: PlannerInputs, count: int) -> list[tuple[PlannerInputs, tuple[int, ...]]]:
    """``inputs`` cut into ``count`` shards: each one's inputs and the indices of its workloads
    in ``inputs.workloads``. Deterministic; a provider's nodes stay together."""
    if inputs.budget_per_hour is not None:
        raise ValueError("a budget spans every workload: plan the grid whole (one shard)")
    if count < 1:
        raise ValueError(f"shards must be at least 1, got {count}")
    fleets: dict[tuple[str, str], list[Node]] = defaultdict(list)
    for node in inputs.nodes:
        fleets[(node.spec.region, node.spec.provider)].append(node)
    held: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    nodes: list[list[Node]] = [[] for _ in range(count)]
    for key in sorted(fleets, key=lambda k: (-_gpus(fleets[k]), k)):
        gpus = held[key[0]]
        shard = min(range(count), key=lambda s: (gpus[s], s))
        gpus[shard] += _gpus(fleets[key])
        nodes[shard].extend(fleets[key])
    order = sorted(range(len(inputs.workloads)), key=lambda w: _deal_key(inputs.workloads[w], w))
    members: list[list[int]] = [[] for _ in range(count)]
    for position, w in enumerate(order):
        members[position % count].append(w)
    shards = []
    for shard in range(count):
        chosen = sorted(members[shard])
        names = {n.name for n in nodes[shard]}
        workloads = [inputs.workloads[w] for w in chosen]
        named = {w.name for w in workloads}
        sub = dataclasses.replace(
            inputs,
            nodes=[n for n in inputs.nodes if n.name in names],  # the grid's order
            workloads=workloads,
            warm=[(w, n) for w, n in inputs.warm if n in names and w in named],
            previous=shard_previous(inputs.previous, named, names),
        )
        shards.append((sub, tuple(chosen)))
    return shards


def shard_previous(
    previous: PlacementPlan | None, workloads: set[str], nodes: set[str]
) -> PlacementPlan | None:
    """The previous plan's replicas (and standbys) of ``workloads`` wholly on ``nodes``."""
    if previous is None:
        return None

    def inside(workload: str, node: str, stages: Sequence[str] = ()) -> bool:
        return workload in workloads and all(n in nodes for n in (node, *stages))

    spec = previous.spec.model_copy(
        update={
            "assignments": [
                a
                for a in previous.spec.assignments
                if inside(a.workload, a.node, [s.node for s in a.stages or []])
            ],
            "prewarm": [p for p in previous.spec.prewarm if inside(p.workload, p.node)],
        }
    )
    return previous.model_copy(update={"spec": spec})


def _gpus(nodes: Sequence[Node]) -> int:
    return sum(n.spec.gpu_count for n in nodes)


def _deal_key(workload: InferenceWorkload, index: int) -> tuple[str, str, float, int]:
    """Workloads are dealt in this order: alike ones (home region, model) go round the shards."""
    traffic = workload.spec.traffic
    home = max(traffic.sources, key=lambda s: s.share).region if traffic.sources else ""
    model = workload.spec.model if isinstance(workload.spec.model, str) else ""  # inline: one
    return (home, model, -traffic.requests_per_second, index)


def solve_shard(shard: Shard, settings: SolverSettings) -> ShardResult:
    """Compile and solve one shard where it runs (its own compile cache and predictor)."""
    cpu = time.process_time()
    problem = compile_problem(shard.inputs, shard.predictor or shard.make(), shard.latency)
    compiled = time.process_time()
    solution = solve_problem(problem, settings)
    solved = time.process_time()
    kept = dataclasses.replace(problem, rejections=())
    return ShardResult(kept, solution, compiled - cpu, solved - compiled, peak_rss_mib())


def peak_rss_mib() -> float:
    """This process's peak RSS: Linux's VmHWM (``ru_maxrss`` of a spawned worker starts at its
    parent's peak at fork), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def solve_shards(
    shards: Sequence[Shard], settings: SolverSettings
) -> tuple[Problem, Solution, list[ShardResult]]:
    """Every shard compiled and solved (each with the whole ``settings``' time limit: shards run
    apart, as ``parts.run_parts`` places them, each solve on one process: the same plan
    whatever runs them), joined: the whole grid's problem and solution."""
    started = time.perf_counter()
    alone = dataclasses.replace(settings, workers=1, ray_address=None)
    results = run_parts(solve_shard, [(s, alone) for s in shards], settings)
    problem, parts = join([r.problem for r in results], [s.workloads for s in shards])
    solution = merge(parts, [r.solution for r in results], time.perf_counter() - started)
    return problem, solution, results


def join(
    problems: Sequence[Problem], workloads: Sequence[tuple[int, ...]]
) -> tuple[Problem, list[Part]]:
    """The shards' problems as one (workloads at their index in the grid, pools and options
    numbered shard after shard) and each shard as a ``decompose.Part`` of it."""
    demands: dict[int, WorkloadDemand] = {}
    pools: list[GpuPool] = []
    options: list[Option] = []
    warm: set[tuple[int, str]] = set()
    previous: list[PreviousReplica] = []
    released: list[str] = []
    parts: list[Part] = []
    gpu_counts: dict[str, int] = {}
    for problem, members in zip(problems, workloads, strict=True):
        pool_base, option_base = len(pools), len(options)
        for w, demand in zip(members, problem.workloads, strict=True):
            demands[w] = dataclasses.replace(demand, index=w)
        pools.extend(dataclasses.replace(p, index=pool_base + p.index) for p in problem.pools)
        options.extend(_moved(o, members, pool_base, option_base) for o in problem.options)
        warm.update((members[w], node) for w, node in problem.warm)
        previous.extend(_moved_replica(r, members, option_base) for r in problem.previous)
        released.extend(problem.released)
        gpu_counts.update(problem.node_gpu_counts)
        indices = tuple(range(option_base, len(options)))
        parts.append(Part(problem, tuple(members), indices))
    whole = Problem(
        workloads=tuple(demands[w] for w in sorted(demands)),
        pools=tuple(pools),
        options=tuple(options),
        rejections=(),
        node_gpu_counts=gpu_counts,
        previous=tuple(previous),
        released=tuple(released),
        warm=frozenset(warm),
    )
    return whole, parts


def _moved(option: Option, members: tuple[int, ...], pool_base: int, option_base: int) -> Option:
    return dataclasses.replace(
        option,
        index=option_base + option.index,
        workload=members[option.workload],
        pool=pool_base + option.pool,
        stages=tuple(dataclasses.replace(s, pool=pool_base + s.pool) for s in option.stages),
    )


def _moved_replica(
    replica: PreviousReplica, members: tuple[int, ...], option_base: int
) -> PreviousReplica:
    option = None if replica.option is None else option_base + replica.option
    return dataclasses.replace(replica, workload=members[replica.workload], option=option)


__all__ = [
    "MAX_SHARDS",
    "SHARD_NODES",
    "Shard",
    "ShardCount",
    "ShardResult",
    "join",
    "peak_rss_mib",
    "shard_count",
    "shard_inputs",
    "shard_previous",
    "solve_shard",
    "solve_shards",
]
