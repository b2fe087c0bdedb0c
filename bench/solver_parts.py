#!/usr/bin/env python3
"""Large-grid planning: the compile cache across plans, and the solve split by site against the
whole model, on generated grids (bench/gridgen.py), with a replan after 5% of the nodes vanish.

    python bench/solver_parts.py --sizes 10000x1000 --utilization moderate
    python bench/solver_parts.py --sizes 10000x1000 --node-failures 1 --workers 2
    python bench/solver_parts.py --sizes 10000x1000 --ray-address auto   # parts on a Ray cluster

Prints per size: compile cold / warm (seconds and questions asked of the performance model), then
for the whole model and the site split at the same deterministic budget (``--time-limit``
reference seconds, ``planner/work.py``): cost, CP-SAT's bound and gap, unmet req/s, deterministic
work and wall time; then the replan. Wall times depend on the machine's load (printed): compare
them as ratios within one run. Needs ../shared/data (or GRIDPLACE_SHARED_DATA) for the offers.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from solver_scale import evaluate, generated_grid, make_plan_from

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.compile_cache import PROCESS_CACHE
from gridplace.planner.decompose import by_site, split
from gridplace.planner.network import NetworkLatency
from gridplace.planner.oracle import validate_plan
from gridplace.planner.parts import RayMissing
from gridplace.planner.planning import Strategy, plan_problem
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import PlacementPlan
from gridplace.topology import Topology


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def compile_twice(inputs: PlannerInputs, latency: NetworkLatency, once: bool) -> Problem:
    """Cold (empty process cache) and warm compiles: seconds and questions asked."""
    PROCESS_CACHE.clear()
    problem = None
    for label in ("cold",) if once else ("cold", "warm"):
        t0 = time.perf_counter()
        problem = compile_problem(inputs, make_predictor(), latency)
        c = PROCESS_CACHE.last
        print(
            f"compile {label}: {time.perf_counter() - t0:.2f} s; questions predicted "
            f"{c.questions_compiled}, reused {c.questions_reused}; node classes new "
            f"{c.classes_compiled}, known {c.classes_reused} ({load()})"
        )
    assert problem is not None
    return problem


def solve_row(label: str, problem: Problem, settings: SolverSettings) -> PlacementPlan:
    t0 = time.perf_counter()
    solution = solve_problem(problem, settings)
    wall = time.perf_counter() - t0
    plan = make_plan_from(problem, solution.counts)
    assert validate_plan(problem, plan) == [], f"{label}: a plan broke a hard rule"
    cost, unmet, _ = evaluate(problem, plan)
    stage = solution.stage("cost")
    bound = stage.bound / 10_000 if stage and stage.bound > 0 else None
    gap = f"{(cost - bound) / cost:.2%}" if bound else "-"
    print(
        f"| {label} | {cost:.2f} | {bound or 0:.2f} | {gap} | {unmet:.2f} | "
        f"{solution.work_s:.1f} | {wall:.1f} |"
    )
    return plan


def replan(
    inputs: PlannerInputs,
    latency: NetworkLatency,
    first: PlacementPlan,
    settings: SolverSettings,
) -> None:
    """5% of the nodes vanish: warm compile (questions asked), solve, replicas moved needlessly."""
    nodes = list(inputs.nodes)
    gone = set(random.Random(5).sample([n.name for n in nodes], max(1, len(nodes) // 20)))
    t0 = time.perf_counter()
    survivors = dataclasses.replace(
        inputs, nodes=[n for n in nodes if n.name not in gone], previous=first
    )
    problem = compile_problem(survivors, make_predictor(), latency)
    compiled = time.perf_counter() - t0
    c = PROCESS_CACHE.last
    solution = solve_problem(problem, settings)
    second = make_plan_from(problem, solution.counts)
    total = time.perf_counter() - t0
    before = {(a.workload, a.node, tuple(a.gpus)) for a in first.spec.assignments}
    after = {(a.workload, a.node, tuple(a.gpus)) for a in second.spec.assignments}
    kept = {h for h in before if h[1] not in gone}
    moved = kept - after
    share = len(moved) / max(1, len(kept))
    cost, unmet, _ = evaluate(problem, second)
    print(
        f"replan after {len(gone)} of {len(nodes)} nodes vanished: compile {compiled:.1f} s "
        f"({c.questions_compiled} questions predicted, {c.questions_reused} reused), end to end "
        f"{total:.1f} s, work {solution.work_s:.1f} ref s; {len(before) - len(kept)} replicas "
        f"had to move, {len(moved)} of the other {len(kept)} moved ({share:.1%}); "
        f"cost {cost:.2f} $/h, unmet {unmet:.2f} req/s ({load()})"
    )


def continent(region: str) -> str:
    prefix = region.split("-")[0]
    return {"us": "na", "ca": "na"}.get(prefix, prefix)


def run_size(nodes_n: int, workloads_n: int, utilization: str, args: argparse.Namespace) -> None:
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, utilization, args.node_failures)
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    print(
        f"\n## {nodes_n} nodes x {workloads_n} workloads, {utilization}, "
        f"nodeFailures {args.node_failures}"
    )
    problem = compile_twice(inputs, latency, args.once)
    # Sites: one per declared region (what topology's sites are without probes), or with
    # --continents the regions of one continent together (fewer, larger parts).
    site_of = {r: continent(r) if args.continents else r for r in regions}
    sites = tuple(sorted(site_of.items()))
    restricted = by_site(problem, site_of)
    parts = split(restricted.problem)
    print(
        f"{len(problem.pools)} node classes, {len(problem.options)} options; the whole problem "
        f"splits into {len(split(problem))} part(s); by home site {len(parts)} parts "
        f"(largest {max(len(p.options) for p in parts)} options), "
        f"{len(restricted.options)} options kept"
    )
    base = SolverSettings(time_limit_s=args.time_limit, workers=args.workers)
    if args.ray_address:
        base = dataclasses.replace(base, ray_address=args.ray_address)
    print(
        "| solve | cost $/h | bound $/h | gap | unmet req/s | work ref s | wall s |\n"
        "|---|---|---|---|---|---|---|"
    )
    if not args.skip_whole:
        solve_row("whole model", problem, dataclasses.replace(base, decompose=False))
    plan = solve_row("by site, then whole", problem, dataclasses.replace(base, sites=sites))
    greedy = plan_problem(problem, Strategy.GREEDY)
    cost, unmet, _ = evaluate(problem, greedy)
    print(f"| greedy | {cost:.2f} | - | - | {unmet:.2f} | 0 | - |")
    if not args.once:
        replan(inputs, latency, plan, dataclasses.replace(base, sites=sites))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x1000")
    parser.add_argument("--utilization", default="moderate")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--node-failures", type=int, choices=(0, 1), default=0)
    parser.add_argument("--workers", type=int, default=1, help="local processes for the parts")
    parser.add_argument("--ray-address", default=None, help="run the parts on this Ray cluster")
    parser.add_argument("--continents", action="store_true", help="sites: one per continent")
    parser.add_argument(
        "--once", action="store_true", help="one cold compile, no replan (the largest grids)"
    )
    parser.add_argument(
        "--skip-whole", action="store_true", help="do not solve the whole model (large grids)"
    )
    args = parser.parse_args()
    print(f"# gridplace large-grid planning ({load()}, {os.cpu_count()} CPUs)")
    print("reproduce: python bench/solver_parts.py " + " ".join(sys.argv[1:]))
    for size in args.sizes.split(","):
        nodes_n, workloads_n = (int(v) for v in size.split("x"))
        for utilization in args.utilization.split(","):
            try:
                run_size(nodes_n, workloads_n, utilization, args)
            except RayMissing as error:
                raise SystemExit(f"solver_parts.py: {error}") from None


if __name__ == "__main__":
    main()
