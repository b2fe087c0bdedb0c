#!/usr/bin/env python3
"""Why a generated grid leaves demand unmet: the unmet demand counted by cause, on the compiled
problem (no solve).

    python bench/unmet_causes.py --sizes 10000x1000,100000x10000 --cache /tmp/problems

Per size, in booked req/s (demand x booking: what the model covers, what ``evaluate`` reports):

- **no option**: workloads that compiled to no option at all, with the rules that rejected them;
- **eligible short**: per traffic source, what every pool that passes every compile-time rule
  could serve with each pool to the workload alone, below its demand (no plan can serve it);
- **kept short**: the same over the options compile kept (``candidates.select_candidates``);
- **contention (LP)**: the least unmet demand of the LP relaxation over the kept options with
  every pool's GPU slots shared by all workloads (a lower bound on any plan's unmet demand on
  this problem); per source region and per model.

The eligible figures come from the candidate rows compile enumerates (``--cache`` keeps the
problem, not them: they are recomputed on a cached run only with ``--eligible``). Needs
../shared/data (or GRIDPLACE_SHARED_DATA) for the offers, and highspy (the test extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highspy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from solver_scale import UTILIZATION, generated_grid

import gridplace.planner.compile as compile_module
from gridplace.planner.core import MIN_POWER_FRACTION, SLOTS_PER_GPU, replica_slots
from gridplace.planner.network import NetworkLatency
from gridplace.planner.options import CandidateRows
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem, WorkloadDemand
from gridplace.topology import Topology


class EligibleRecorder:
    """Wraps compile's ``select_candidates``: per workload and source, what all its candidate
    rows could serve, each pool to the workload alone (the best row per pool and source)."""

    def __init__(self) -> None:
        self.by_workload: dict[int, dict[str, float]] = {}
        self.original: Callable[..., Any] = compile_module.select_candidates

    def __enter__(self) -> EligibleRecorder:
        recorder = self

        def select(rows: CandidateRows, demand: WorkloadDemand, room: Any, *args: Any) -> Any:
            recorder.record(rows, demand, room.pools)
            return recorder.original(rows, demand, room, *args)

        compile_module.select_candidates = select  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        compile_module.select_candidates = self.original  # type: ignore[assignment]

    def record(self, rows: CandidateRows, demand: WorkloadDemand, pools: Any) -> None:
        if not len(rows):
            self.by_workload[demand.index] = {r: 0.0 for r in rows.regions}
            return
        slots = np.array([replica_slots(c.share, c.tensor_parallel) for c in rows.configs])
        per_node = np.array([p.gpus_per_node * SLOTS_PER_GPU for p in pools])
        nodes = np.array([p.node_count for p in pools])
        fits = per_node[rows.pool] // slots[rows.config]
        potential = rows.capacity_rps * nodes[rows.pool] * fits
        found = {}
        for column, region in enumerate(rows.regions):
            serving = rows.servable[:, column]
            best = np.zeros(len(pools))
            np.maximum.at(best, rows.pool[serving], potential[serving])
            found[region] = float(best.sum())
        self.by_workload[demand.index] = found


def shortfall(problem: Problem, available: dict[int, dict[str, float]]) -> tuple[int, float]:
    """Workloads with a source short of its demand, and the demand short in all."""
    count, short = 0, 0.0
    for w in problem.workloads:
        have = available.get(w.index, {})
        missing = sum(max(0.0, w.booked_rps * s - have.get(r, 0.0)) for r, s in w.sources)
        if missing > 1e-9:
            count, short = count + 1, short + missing
    return count, short


def kept_potential(problem: Problem) -> dict[int, dict[str, float]]:
    """Per workload and source: what its kept options could serve, each pool to itself."""
    best: dict[tuple[int, str, int], float] = {}
    for o in problem.options:
        pool = problem.pools[o.pool]
        fits = pool.gpus_per_node * SLOTS_PER_GPU // o.slots
        potential = o.capacity_rps * pool.node_count * fits
        for region in o.servable_sources:
            key = (o.workload, region, o.pool)
            best[key] = max(best.get(key, 0.0), potential)
    found: dict[int, dict[str, float]] = defaultdict(dict)
    for (w, region, _), value in best.items():
        found[w][region] = found[w].get(region, 0.0) + value
    return found


class Rows:
    """Sparse rows for HiGHS: ``lower <= sum(value * column) <= upper``."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.starts: list[int] = []
        self.index: list[int] = []
        self.value: list[float] = []

    def add(self, terms: list[tuple[int, float]], lower: float, upper: float) -> None:
        self.starts.append(len(self.index))
        self.index.extend(t[0] for t in terms)
        self.value.extend(t[1] for t in terms)
        self.lower.append(lower)
        self.upper.append(upper)

    def into(self, h: highspy.Highs) -> None:
        h.addRows(
            len(self.lower), np.array(self.lower), np.array(self.upper), len(self.index),
            np.array(self.starts, dtype=np.int32), np.array(self.index, dtype=np.int32),
            np.array(self.value),
        )  # fmt: skip


def contention_lp(problem: Problem) -> tuple[float, dict[tuple[int, str], float], float]:
    """The LP's least unmet demand (booked req/s): replicas continuous, every pool's slots,
    VRAM and power shared as the model shares them, replicas.max per workload, each option's
    capacity split among the sources it serves; per (workload, source), and its wall seconds."""
    started = time.perf_counter()
    inf = highspy.kHighsInf
    options = problem.options
    # Columns: x (replicas per option), then y (an option's capacity sent to one source), then
    # u (unmet per workload and source).
    flows = [(o.index, (o.workload, r)) for o in options for r in o.servable_sources]
    keys = [(w.index, r) for w in problem.workloads for r, _ in w.sources]
    first_y, first_u = len(options), len(options) + len(flows)
    columns = first_u + len(keys)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.addVars(columns, np.zeros(columns), np.full(columns, inf))
    rows = Rows()
    into: dict[tuple[int, str], list[int]] = defaultdict(list)
    out: dict[int, list[int]] = defaultdict(list)
    for i, (option, key) in enumerate(flows):
        into[key].append(first_y + i)
        out[option].append(first_y + i)
    for o in options:  # what it sends <= its replicas' capacity
        rows.add([(i, 1.0) for i in out[o.index]] + [(o.index, -o.capacity_rps)], -inf, 0.0)
    for k, (w, region) in enumerate(keys):
        demand = problem.workloads[w].booked_rps * dict(problem.workloads[w].sources)[region]
        rows.add([(i, 1.0) for i in into[(w, region)]] + [(first_u + k, 1.0)], demand, inf)
    for w in problem.workloads:
        replicas = [(o.index, 1.0) for o in problem.options_of(w.index)]
        if replicas:
            rows.add(replicas, -inf, float(w.replicas_max))
    by_pool: dict[int, list[int]] = defaultdict(list)
    for o in options:
        by_pool[o.pool].append(o.index)
    for p, members in by_pool.items():
        pool = problem.pools[p]
        gpus = pool.node_count * pool.gpus_per_node
        rows.add([(i, float(options[i].slots)) for i in members], -inf, gpus * SLOTS_PER_GPU)
        vram = [(i, options[i].vram_gib * options[i].tensor_parallel) for i in members]
        rows.add(vram, -inf, pool.memory_gib * gpus)
        if pool.throttle_ratio > 0:
            budget = gpus * pool.tdp_watts * max(MIN_POWER_FRACTION, 1 - pool.throttle_ratio)
            rows.add([(i, options[i].power_watts) for i in members], -inf, budget)
    rows.into(h)
    unmet_columns = np.arange(first_u, columns, dtype=np.int32)
    h.changeColsCost(len(keys), unmet_columns, np.ones(len(keys)))
    h.run()
    values = h.getSolution().col_value
    per = {key: values[first_u + k] for k, key in enumerate(keys)}
    return sum(per.values()), per, time.perf_counter() - started


NO_OPTION_FAMILIES: dict[int, list[str]] = {}  # workload -> rules that rejected it (compiled)


def no_option_causes(problem: Problem) -> tuple[int, float, Counter[str]]:
    """Workloads without options, their booked demand, and the rules that rejected them
    (counted once per workload and rule)."""
    count, demand, rules = 0, 0.0, Counter[str]()
    for w in problem.workloads:
        if problem.options_of(w.index):
            continue
        count, demand = count + 1, demand + w.booked_rps
        rules.update(NO_OPTION_FAMILIES.get(w.index, ()))
    return count, demand, rules


def region_table(problem: Problem, per: dict[tuple[int, str], float]) -> None:
    booked: dict[str, float] = defaultdict(float)
    unmet: dict[str, float] = defaultdict(float)
    for w in problem.workloads:
        for region, share in w.sources:
            booked[region] += w.booked_rps * share
            unmet[region] += per[(w.index, region)]
    gpus: Counter[str] = Counter()
    for pool in problem.pools:
        gpus[pool.region] += pool.node_count * pool.gpus_per_node
    print("| source region | GPUs there | booked req/s | LP unmet req/s |\n|---|---|---|---|")
    for region in sorted(booked):
        print(f"| {region} | {gpus[region]} | {booked[region]:.1f} | {unmet[region]:.1f} |")


def model_table(problem: Problem, per: dict[tuple[int, str], float]) -> None:
    booked: dict[str, float] = defaultdict(float)
    unmet: dict[str, float] = defaultdict(float)
    for w in problem.workloads:
        booked[w.model] += w.booked_rps
        unmet[w.model] += sum(per[(w.index, r)] for r, _ in w.sources)
    print("| model | booked req/s | LP unmet req/s |\n|---|---|---|")
    for model in sorted(booked, key=lambda m: -unmet[m]):
        print(f"| {model} | {booked[model]:.1f} | {unmet[model]:.1f} |")


def pool_use(problem: Problem) -> None:
    """How many workloads' kept options land on each pool: the contention the selection makes."""
    users: dict[int, set[int]] = defaultdict(set)
    for o in problem.options:
        users[o.pool].add(o.workload)
    counts = sorted((len(v) for v in users.values()), reverse=True)
    per = sorted(len(problem.options_of(w.index)) for w in problem.workloads)
    gpus = sum(problem.pools[p].node_count * problem.pools[p].gpus_per_node for p in users)
    total = sum(p.node_count * p.gpus_per_node for p in problem.pools)
    print(
        f"pools some workload may use: {len(users)} of {len(problem.pools)} ({gpus} of {total} "
        f"GPUs); workloads per used pool: max {counts[0]}, median {counts[len(counts) // 2]}; "
        f"options per workload: max {per[-1]}, median {per[len(per) // 2]}"
    )


def compiled(
    args: argparse.Namespace, size: str
) -> tuple[Problem, dict[int, dict[str, float]], str]:
    """The compiled problem of ``size`` with its rejections dropped (a 100,000-node grid has
    over ten million: pickled, they alone pass 3 GiB) and the no-option workloads' rejection
    families kept; read from ``--cache`` when a run left it there; and how it was got."""
    nodes_n, workloads_n = (int(v) for v in size.split("x"))
    path = args.cache / f"causes-{size}-{args.utilization}.pickle" if args.cache else None
    if path is not None and path.exists() and not args.eligible:
        with path.open("rb") as file:
            problem, families = pickle.load(file)  # our own file, written below
        NO_OPTION_FAMILIES.update(families)
        return problem, {}, "read from cache"
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, args.utilization, 0)
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    del nodes
    cpu = time.process_time()
    with EligibleRecorder() as recorder:
        problem = compile_module.compile_problem(inputs, make_predictor(), latency)
    cpu = time.process_time() - cpu
    families = {
        w.index: sorted({r.family for r in problem.rejections_of(w.index)})
        for w in problem.workloads
        if not problem.options_of(w.index)
    }
    problem = dataclasses.replace(problem, rejections=())
    NO_OPTION_FAMILIES.update(families)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            pickle.dump((problem, families), file)
    return problem, recorder.by_workload, f"compiled in {cpu:.0f} CPU s"


def run_size(size: str, args: argparse.Namespace) -> None:
    problem, eligible, how = compiled(args, size)
    booked = sum(w.booked_rps for w in problem.workloads)
    demand = sum(w.demand_rps for w in problem.workloads)
    print(
        f"\n## {size}, {args.utilization}: {len(problem.pools)} classes, "
        f"{len(problem.options)} options ({how}); demand {demand:.1f} req/s, booked {booked:.1f}"
    )
    count, no_demand, rules = no_option_causes(problem)
    print(f"no option: {count} workloads, {no_demand:.1f} booked req/s; rules: {dict(rules)}")
    if eligible:
        n, short = shortfall(problem, eligible)
        print(f"eligible short (each pool to itself): {n} workloads, {short:.1f} req/s")
    n, short = shortfall(problem, kept_potential(problem))
    print(f"kept short (each pool to itself): {n} workloads, {short:.1f} req/s")
    pool_use(problem)
    unmet, per, lp_s = contention_lp(problem)
    print(f"contention LP over the kept options: unmet {unmet:.1f} req/s ({lp_s:.0f} s)")
    region_table(problem, per)
    model_table(problem, per)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x1000")
    parser.add_argument("--utilization", default="moderate", choices=sorted(UTILIZATION))
    parser.add_argument("--cache", type=Path, default=None, help="a folder for compiled problems")
    parser.add_argument(
        "--eligible", action="store_true", help="compile even when cached (the eligible rows)"
    )
    args = parser.parse_args()
    print("reproduce: python bench/unmet_causes.py " + " ".join(sys.argv[1:]))
    for size in args.sizes.split(","):
        run_size(size, args)


if __name__ == "__main__":
    main()
