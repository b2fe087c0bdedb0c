#!/usr/bin/env python3
"""How planning grows from 10,000 to 100,000 nodes when the grid is cut into shards of about
``--shard-nodes`` nodes before compile (``planner/shards.py``), each compiled and solved on one
of ``--workers`` local processes, then joined and judged as one plan.

    python bench/solver_shards.py --sizes 10000x1000,20000x2000,50000x5000,100000x10000

Per size: each shard's nodes, workloads, node classes, options, compile CPU s (cold: a fresh
process's cache), solve CPU s and reference s (deterministic work, ``planner/work.py``) and
peak RSS; the joined plan's cost and unmet demand (booked req/s, judged by ``solver_scale``'s
``evaluate`` on the joined problem, the oracle checked), greedy's on the same problem, and with
``--lp`` the least unmet demand any plan on those options can leave (the LP of
``bench/unmet_causes.py``); then what N machines would take: rounds of shards x the slowest
shard's CPU seconds (compile + solve, what an idle core's wall time would be). With
``--reconcile``, the plan ``gridplace plan --shards K`` makes instead (``planner/shard_plan.py``:
the shards at 80% of the limit, then the pass over their leftover capacity at 20%): unmet
booked req/s before and after the pass (the solver's, and after it judged on the joined problem
with the oracle checked), replicas it added, cost before and after, its CPU s, peak RSS. Needs
../shared/data (or GRIDPLACE_SHARED_DATA) for the offers.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from solver_parts import load
from solver_scale import _shortfall, evaluate, generated_grid, make_plan_from
from unmet_causes import contention_lp

from gridplace.planner.network import NetworkLatency
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import Strategy, plan_problem, sharded_plan
from gridplace.planner.predictor import make_predictor
from gridplace.planner.shard_plan import plan_shards
from gridplace.planner.shards import Shard, ShardResult, peak_rss_mib, shard_inputs, solve_shards
from gridplace.planner.solve import SolverSettings
from gridplace.topology import Topology


def shard_rows(results: list[ShardResult]) -> None:
    print(
        "| shard | workloads | classes | options | compile CPU s | solve CPU s | work ref s | "
        "unmet req/s | worker's peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|"
    )
    for number, r in enumerate(results):
        print(
            f"| {number} | {len(r.problem.workloads)} | {len(r.problem.pools)} | "
            f"{len(r.problem.options)} | {r.compile_cpu_s:.1f} | {r.solve_cpu_s:.1f} | "
            f"{r.solution.work_s:.1f} | {sum(r.solution.unmet_rps.values()):.1f} | "
            f"{r.peak_rss_mib:.0f} |"
        )


def machines(results: list[ShardResult]) -> None:
    """Rounds of shards on N machines x the slowest shard (CPU s: an idle core's wall)."""
    slowest = max(r.compile_cpu_s + r.solve_cpu_s for r in results)
    total = sum(r.compile_cpu_s + r.solve_cpu_s for r in results)
    counts = sorted({1, 2, 5, len(results)})
    spans = ", ".join(
        f"{n}: {math.ceil(len(results) / n) * slowest:.0f} s" for n in counts if n <= len(results)
    )
    print(
        f"shards' CPU s in all {total:.0f}, slowest {slowest:.0f}; on N machines (rounds x "
        f"slowest) {spans}"
    )


def run_reconciled(nodes_n: int, workloads_n: int, args: argparse.Namespace) -> None:
    """The sharded plan with the pass over the shards' leftover capacity: one table row."""
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, args.utilization, 0)
    count = max(1, round(nodes_n / args.shard_nodes))
    started = time.perf_counter()
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    settings = SolverSettings(time_limit_s=args.time_limit, workers=args.workers)
    sharded = plan_shards(inputs, make_predictor(), latency, count, settings, make_predictor)
    plan = sharded_plan(sharded)
    wall = time.perf_counter() - started
    assert validate_plan(sharded.problem, plan) == [], "a plan broke a hard rule"
    counts = Counter(p.option for p in sharded.placements)
    judged = sum(_shortfall(sharded.problem, w, counts) for w in sharded.problem.workloads)
    found = sharded.reconciled
    assert plan.status is not None
    cost = plan.status.cost_per_hour or 0.0
    added = sharded.placements[: found.replicas] if found else []
    before = cost - sum(sharded.problem.options[p.option].cost_per_hour for p in added)
    unmet = f"{found.unmet_before_rps:.1f} -> {found.unmet_after_rps:.1f}" if found else "-"
    print(
        f"| {nodes_n:,} x {workloads_n:,} | {count} | {unmet} | {judged:.1f} | "
        f"{found.replicas if found else 0} ({found.short_workloads if found else 0} short) | "
        f"{before:,.2f} -> {cost:,.2f} | {found.cpu_s if found else 0:.0f} | {wall:.0f} | "
        f"{peak_rss_mib():,.0f} | {load()} |",
        flush=True,
    )


def run_size(nodes_n: int, workloads_n: int, args: argparse.Namespace) -> None:
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, args.utilization, 0)
    count = max(1, round(nodes_n / args.shard_nodes))
    started = time.perf_counter()
    shards = [
        Shard(sub, members, NetworkLatency(Topology.build(sub.nodes, []).latency_lookup(regions)))
        for sub, members in shard_inputs(inputs, count)
    ]
    cut_s = time.perf_counter() - started
    del nodes
    settings = SolverSettings(time_limit_s=args.time_limit, workers=args.workers)
    problem, solution, results = solve_shards(shards, settings)
    wall = time.perf_counter() - started
    print(
        f"\n## {nodes_n} nodes x {workloads_n} workloads, {args.utilization}: {count} shard(s) "
        f"on {args.workers} process(es), {args.time_limit:g} reference s each; cut and "
        f"topology {cut_s:.0f} s, all {wall:.0f} s wall ({load()})"
    )
    shard_rows(results)
    t0 = time.process_time()
    plan = make_plan_from(problem, solution.counts)
    assert validate_plan(problem, plan) == [], "a plan broke a hard rule"
    joined_s = time.process_time() - t0
    cost, unmet, _ = evaluate(problem, plan)
    booked = sum(w.booked_rps for w in problem.workloads)
    print(
        f"joined: {len(problem.pools)} classes, {len(problem.options)} options, booked "
        f"{booked:.1f} req/s; plan cost {cost:.2f} $/h, unmet {unmet:.2f} req/s; work "
        f"{solution.work_s:.0f} ref s in all; plan output and check {joined_s:.1f} CPU s"
    )
    greedy = plan_problem(problem, Strategy.GREEDY)
    g_cost, g_unmet, _ = evaluate(problem, greedy)
    print(f"greedy on the joined problem: cost {g_cost:.2f} $/h, unmet {g_unmet:.2f} req/s")
    if args.lp:
        least, _, lp_s = contention_lp(problem)
        print(
            f"LP over the joined problem's options: unmet at least {least:.1f} req/s ({lp_s:.0f} s)"
        )
    machines(results)
    print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x1000,20000x2000,50000x5000,100000x10000")
    parser.add_argument("--utilization", default="moderate")
    parser.add_argument("--shard-nodes", type=int, default=10_000)
    parser.add_argument("--time-limit", type=float, default=30.0, help="reference s per shard")
    parser.add_argument("--workers", type=int, default=2, help="local processes for the shards")
    parser.add_argument("--lp", action="store_true", help="the LP bound on the joined problem")
    parser.add_argument(
        "--reconcile", action="store_true", help="the sharded plan with the pass, as a table"
    )
    args = parser.parse_args()
    print(f"# gridplace sharded planning ({load()}, {os.cpu_count()} CPUs)")
    print("reproduce: python bench/solver_shards.py " + " ".join(sys.argv[1:]))
    if args.reconcile:
        print(
            "| size | shards | unmet booked req/s before -> after the pass (solver) | after, "
            "judged | replicas added (workloads short) | cost $/h before -> after | pass CPU s "
            "| wall s | peak RSS MiB (this process) | load |\n" + "|---" * 10 + "|"
        )
    for size in args.sizes.split(","):
        nodes_n, workloads_n = (int(v) for v in size.split("x"))
        (run_reconciled if args.reconcile else run_size)(nodes_n, workloads_n, args)


if __name__ == "__main__":
    main()
