"""Shards: a grid too large for one model cut, before compile, into miniatures of itself.

Owns cutting ``PlannerInputs`` into shards, compiling and solving one shard, and joining the
shards' problems and solutions into the whole grid's indices (``parts`` runs the shards: here,
on local processes or on a Ray cluster). Every region's providers are dealt among the shards
(largest fleet first, each to the shard with the fewest of that region's GPUs) and the
workloads too (by home region, model and rate, in turn), so each shard holds a share of every
region's capacity and demand. A workload is placed only on its shard's nodes.

Why before compile, not after (``decompose.by_site``): compile keeps each workload's cheapest
options, enough to cover its own demand several times over (``candidates``), and workloads of
one kind all keep the same cheapest pools. At 100,000 nodes x 10,000 workloads those pools are
a small part of the grid that ten times as many workloads crowd (``bench/unmet_causes.py``):
greedy's start leaves most of the demand unmet and the whole model is too large for its unmet
stage to leave that start. A shard's compile keeps its workloads' cheapest options among its
own nodes, so the shards together reach K times as many pools, and each shard is a model of
the size that solves. What sharding gives up: a workload cannot use another shard's nodes
(the shards' plans are not one model's optimum), and a budget or a previous plan (which span
all workloads) are refused: such a grid is planned whole.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gridplace.planner.compile import compile_problem
from gridplace.planner.decompose import Part, merge
from gridplace.planner.parts import run_parts
from gridplace.planner.ports import OptionPredictor, PlannerInputs, RttLookup
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import GpuPool, Option, Problem, WorkloadDemand
from gridplace.planner.solve import solve_problem
from gridplace.planner.solver_settings import Solution, SolverSettings
from gridplace.specs import InferenceWorkload, Node


@dataclass(frozen=True)
class Shard:
    """One shard's inputs, the whole grid's indices of its workloads, and how to compile it
    (``predictor`` None: the calibrated model, made where the shard runs)."""

    inputs: PlannerInputs
    workloads: tuple[int, ...]
    latency: RttLookup
    predictor: OptionPredictor | None = None


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
    if inputs.budget_per_hour is not None or inputs.previous is not None:
        raise ValueError("a budget or a previous plan spans every workload: plan the grid whole")
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
        sub = dataclasses.replace(
            inputs,
            nodes=[n for n in inputs.nodes if n.name in names],  # the grid's order
            workloads=[inputs.workloads[w] for w in chosen],
            warm=[(w, n) for w, n in inputs.warm if n in names],
        )
        shards.append((sub, tuple(chosen)))
    return shards


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
    problem = compile_problem(shard.inputs, shard.predictor or make_predictor(), shard.latency)
    compiled = time.process_time()
    solution = solve_problem(problem, settings)
    solved = time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ShardResult(
        dataclasses.replace(problem, rejections=()),
        solution,
        compiled - cpu,
        solved - compiled,
        rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024,
    )


def solve_shards(
    shards: Sequence[Shard], settings: SolverSettings
) -> tuple[Problem, Solution, list[ShardResult]]:
    """Every shard compiled and solved (each with the whole ``settings``: shards run apart, as
    ``parts.run_parts`` places them), joined: the whole grid's problem and solution."""
    started = time.perf_counter()
    results = run_parts(solve_shard, [(s, settings) for s in shards], settings)
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
    parts: list[Part] = []
    gpu_counts: dict[str, int] = {}
    for problem, members in zip(problems, workloads, strict=True):
        pool_base, option_base = len(pools), len(options)
        for w, demand in zip(members, problem.workloads, strict=True):
            demands[w] = dataclasses.replace(demand, index=w)
        pools.extend(dataclasses.replace(p, index=pool_base + p.index) for p in problem.pools)
        options.extend(_moved(o, members, pool_base, option_base) for o in problem.options)
        warm.update((members[w], node) for w, node in problem.warm)
        gpu_counts.update(problem.node_gpu_counts)
        indices = tuple(range(option_base, len(options)))
        parts.append(Part(problem, tuple(members), indices))
    whole = Problem(
        workloads=tuple(demands[w] for w in sorted(demands)),
        pools=tuple(pools),
        options=tuple(options),
        rejections=(),
        node_gpu_counts=gpu_counts,
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


__all__ = ["Shard", "ShardResult", "join", "shard_inputs", "solve_shard", "solve_shards"]
