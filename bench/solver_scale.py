#!/usr/bin/env python3
"""Solver scale: generated grids from the public offer summary, planned by cpsat, greedy and
capacity-only; build time, time to first solution, objective, bound, gap, unmet demand and
cost (medians of --runs), the HiGHS MILP optimum on the small sizes, CP-SAT's default portfolio
against the tuned settings, and a replan after 5% of the nodes vanish.

    python bench/solver_scale.py                       # 100x10, 1000x100, 10000x1000
    python bench/solver_scale.py --sizes 100x10 --runs 1

Needs ../shared/data beside the repository (the offers CSV, via bench/gridgen.py).
"""

from __future__ import annotations

import argparse
import itertools
import os
import pickle
import random
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gridgen import generate_nodes, generate_workloads
from milp import solve_milp
from ortools.sat.python import cp_model

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.network import NetworkLatency
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import Strategy, compile_for, make_plan, plan_problem
from gridplace.planner.predictor import make_predictor
from gridplace.planner.problem import Problem, WorkloadDemand
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import Node, PlacementPlan, builtin_catalog
from gridplace.topology import Topology

UTILIZATION = {"moderate": 0.5, "high": 1.0}  # rps_scale for bench/gridgen.generate_workloads


@dataclass
class Row:
    strategy: str
    wall_s: float
    first_s: float | None
    cost: float
    bound: float | None
    unmet_rps: float
    invalid: int
    gap: float | None = None


def evaluate(problem: Problem, plan: PlacementPlan) -> tuple[float, float, int]:
    """(cost/h, unmet req/s, replicas breaking a rule) judged on the SLO-aware problem: a replica
    whose configuration is not an option there (it misses the SLO) serves nothing, and one serves
    only the traffic sources whose TTFT target it meets: a workload's unmet demand is the largest
    shortfall over sets of its sources (Gale's theorem, as the model's coverage rows)."""
    options = {
        (
            o.workload,
            problem.pools[o.pool].node_names,
            o.pool,
            o.precision,
            o.tensor_parallel,
            o.share,
        ): o
        for o in problem.options
    }
    by_node = {name: p for p in problem.pools for name in p.node_names}
    names = {w.name: w.index for w in problem.workloads}
    replicas: dict[int, int] = defaultdict(int)  # option -> replicas
    invalid, cost = 0, 0.0
    for a in plan.spec.assignments:
        pool = by_node.get(a.node)
        w = names[a.workload]
        option = None
        if pool is not None:
            key = (w, pool.node_names, pool.index, a.precision, a.tensor_parallel, a.gpu_share)
            option = options.get(key)
        if pool is not None:
            cost += pool.price_per_gpu_hour * a.tensor_parallel / a.gpu_share
        if option is None:
            invalid += 1
        else:
            replicas[option.index] += 1
    unmet = sum(_shortfall(problem, w, replicas) for w in problem.workloads)
    return cost, unmet, invalid


def _shortfall(problem: Problem, workload: WorkloadDemand, replicas: dict[int, int]) -> float:
    shares = dict(workload.sources)
    worst = 0.0
    for size in range(1, len(shares) + 1):
        for chosen in itertools.combinations(shares, size):
            capacity = sum(
                o.capacity_rps * replicas.get(o.index, 0)
                for o in problem.options_of(workload.index)
                if set(o.servable_sources) & set(chosen)
            )
            demand = workload.booked_rps * sum(shares[r] for r in chosen)
            worst = max(worst, demand - capacity)
    return worst


def median(values: list[float]) -> float:
    return statistics.median(values)


def generated_grid(
    nodes_n: int, workloads_n: int, utilization: str, node_failures: int
) -> tuple[list[Node], list[str], PlannerInputs]:
    """The generated grid of one size (seeded by the size): nodes, their regions, the inputs."""
    nodes = generate_nodes(nodes_n, seed=nodes_n)
    regions = sorted({n.spec.region for n in nodes})
    workloads = generate_workloads(
        workloads_n,
        regions,
        seed=workloads_n,
        rps_scale=UTILIZATION[utilization],
        node_failures=node_failures,
    )
    return nodes, regions, PlannerInputs(nodes, workloads, builtin_catalog())


def run_size(
    nodes_n: int,
    workloads_n: int,
    utilization: str,
    runs: int,
    limit_s: float,
    milp_limit_s: float,
    node_failures: int = 0,
    milp_max_pairs: int = 100_000,
    cache: Path | None = None,
) -> None:
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, utilization, node_failures)
    started = time.perf_counter()
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    predictor = make_predictor()
    problem = _compiled(
        inputs, predictor, latency, cache, f"{nodes_n}x{workloads_n}-{utilization}-{node_failures}"
    )
    build_s = time.perf_counter() - started
    demand = sum(w.demand_rps for w in problem.workloads)
    print(
        f"\n## {nodes_n} nodes x {workloads_n} workloads, {utilization} utilization "
        f"({demand:.0f} req/s): build {build_s:.2f} s, {len(problem.pools)} node classes, "
        f"{len(problem.options)} options"
    )
    rows: list[Row] = []
    settings = SolverSettings(time_limit_s=limit_s)
    # Each baseline plans on the problem it sees (capacity-only: no SLOs, no network), compiled
    # once per size: the runs repeat the planning, not the compile.
    baseline_problems = {
        Strategy.GREEDY: problem,
        Strategy.CAPACITY_ONLY: compile_for(Strategy.CAPACITY_ONLY, inputs, predictor, latency),
    }
    windows: list[int] = []
    works: list[float] = []  # reference seconds of solver work (planner/work.py)
    cpus: list[float] = []  # CPU seconds of this process for the plan: ~ its wall time when idle
    unmet_objectives: list[float] = []
    for strategy in Strategy:
        samples: list[Row] = []
        for _ in range(runs):
            t0, cpu0 = time.perf_counter(), time.process_time()
            first: float | None = None
            bound: float | None = None
            gap: float | None = None
            if strategy is Strategy.CPSAT:
                solution = solve_problem(problem, settings)
                _placements, _ = deaggregate(problem, solution.counts)
                cost_stage = solution.stage("cost")
                proved = cost_stage is not None and cost_stage.bound > 0  # 0: none proved
                bound = cost_stage.bound / 10_000 if cost_stage and proved else None
                gap = (
                    (cost_stage.objective - cost_stage.bound) / max(1.0, cost_stage.objective)
                    if cost_stage and proved
                    else None
                )
                first = solution.first_solution_s
                windows.append(cost_stage.windows if cost_stage else 0)
                works.append(solution.work_s)
                cpus.append(time.process_time() - cpu0)
                unmet_objectives.append(solution.stages[0].objective)
                plan = make_plan_from(problem, solution.counts)
            else:
                plan = plan_problem(baseline_problems[strategy], strategy)
            wall = time.perf_counter() - t0
            cost, unmet, invalid = evaluate(problem, plan)
            if strategy is not Strategy.CAPACITY_ONLY:
                assert validate_plan(problem, plan) == [], "a plan broke a hard rule"
            samples.append(Row(strategy.value, wall, first, cost, bound, unmet, invalid, gap))
        rows.append(
            Row(
                strategy.value,
                median([s.wall_s for s in samples]),
                median([s.first_s for s in samples if s.first_s is not None])
                if any(s.first_s is not None for s in samples)
                else None,
                median([s.cost for s in samples]),
                median([s.bound for s in samples if s.bound is not None])
                if any(s.bound is not None for s in samples)
                else None,
                median([s.unmet_rps for s in samples]),
                round(median([float(s.invalid) for s in samples])),
                median([s.gap for s in samples if s.gap is not None])
                if any(s.gap is not None for s in samples)
                else None,
            )
        )
    print(
        "| strategy | wall s | first solution s | cost $/h | bound $/h | gap | unmet req/s | "
        "replicas missing SLO |\n|---|---|---|---|---|---|---|---|"
    )
    for row in rows:
        gap = f"{row.gap:.2%}" if row.gap is not None else "-"
        first = f"{row.first_s:.2f}" if row.first_s is not None else "-"
        bound = f"{row.bound:.2f}" if row.bound is not None else "-"
        print(
            f"| {row.strategy} | {row.wall_s:.2f} | {first} | {row.cost:.2f} | {bound} | {gap} "
            f"| {row.unmet_rps:.2f} | {row.invalid} |"
        )
    if windows:
        print(
            f"cpsat: {median(works):.2f} reference s of solver work, cost stage "
            f"{median([float(w) for w in windows]):.0f} window solves (medians); the plan took "
            f"{median(cpus):.1f} CPU s; end to end (build + plan) {build_s + rows[0].wall_s:.1f} s "
            f"wall at load {os.getloadavg()[0]:.1f}"
        )
    if milp_limit_s > 0 and nodes_n * workloads_n <= milp_max_pairs:
        milp = solve_milp(problem, milp_limit_s)
        cpsat = rows[0].cost
        print(
            f"HiGHS MILP: {milp.status}, cost {milp.cost_per_hour:.2f} $/h in {milp.wall_s:.2f} s"
            f" (unmet objective {milp.unmet_objective:.0f}, cpsat's "
            f"{median(unmet_objectives):.0f}); "
            f"cpsat - MILP = {cpsat - milp.cost_per_hour:+.2f} $/h "
            f"({(cpsat - milp.cost_per_hour) / milp.cost_per_hour:+.2%})"
        )
    if nodes_n * workloads_n <= 100_000:
        compare_settings(problem, limit_s, runs)
    replan(inputs, problem, predictor, latency, nodes, settings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process so far: {peak:.0f} MiB")


def _compiled(
    inputs: PlannerInputs,
    predictor: object,
    latency: NetworkLatency,
    cache: Path | None,
    key: str,
) -> Problem:
    """The compiled problem, read from ``cache`` (a folder) when a run of the same grid left it
    there: the solve is what is measured here, and a 10,000-node compile takes minutes on a
    loaded machine. The build time printed is then the cache's read."""
    path = cache / f"problem-{key}.pickle" if cache is not None else None
    if path is not None and path.exists():
        with path.open("rb") as file:
            problem: Problem = pickle.load(file)  # our own file, written below
        return problem
    problem = compile_problem(inputs, predictor, latency)  # type: ignore[arg-type]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as file:
            pickle.dump(problem, file)
    return problem


class SolveClock:
    """CPU seconds this process spends inside CP-SAT's ``Solve`` (the rest of a plan's CPU is
    the planner's own Python: model building, greedy, checks, windows' models, output)."""

    def __init__(self) -> None:
        self.cpu_s = 0.0

    def __enter__(self) -> SolveClock:
        self.original = cp_model.CpSolver.solve
        clock = self

        def timed(solver: cp_model.CpSolver, *args: object, **kwargs: object) -> object:
            began = time.process_time()
            try:
                return clock.original(solver, *args, **kwargs)  # type: ignore[arg-type]
            finally:
                clock.cpu_s += time.process_time() - began

        cp_model.CpSolver.solve = timed  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        cp_model.CpSolver.solve = self.original  # type: ignore[method-assign]


def end_to_end(
    inputs: PlannerInputs,
    predictor: object,
    latency: NetworkLatency,
    limits: list[float],
    runs: int,
    best_known_s: float = 0.0,
) -> None:
    """Warm compile + solve + plan output, in CPU seconds of this process (what an idle core's
    wall time would be), at each reference-second limit: the compile cache is filled by one
    untimed cold compile first, as a long-lived solver worker holds it."""
    compile_problem(inputs, predictor, latency)  # type: ignore[arg-type]  # fills the cache
    print(
        "| limit (reference s) | warm compile CPU s | solve CPU s (inside CP-SAT Solve) | "
        "plan output CPU s | end to end CPU s | cost $/h | unmet req/s | unmet objective |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    unmet_objectives: list[float] = []
    for limit_s in limits:
        samples = []
        for _ in range(runs):
            cpu0 = time.process_time()
            problem = compile_problem(inputs, predictor, latency)  # type: ignore[arg-type]
            cpu1 = time.process_time()
            with SolveClock() as inside:
                solution = solve_problem(problem, SolverSettings(time_limit_s=limit_s))
            cpu2 = time.process_time()
            plan = make_plan_from(problem, solution.counts)
            cpu3 = time.process_time()
            cost, unmet, _ = evaluate(problem, plan)
            samples.append((cpu1 - cpu0, cpu2 - cpu1, inside.cpu_s, cpu3 - cpu2, cpu3 - cpu0))
            unmet_objectives.append(solution.stages[0].objective)
        compile_s, solve_s, inside_s, output_s, total_s = (
            median([s[i] for s in samples]) for i in range(5)
        )
        print(
            f"| {limit_s:g} | {compile_s:.2f} | {solve_s:.2f} ({inside_s:.2f}) | {output_s:.2f} "
            f"| {total_s:.2f} | {cost:.2f} | {unmet:.2f} | {unmet_objectives[-1]:,.0f} |"
        )
    print(f"load average {os.getloadavg()[0]:.1f} (CPU seconds: medians of {runs})")
    if best_known_s > 0:
        best_known(compile_problem(inputs, predictor, latency), best_known_s, unmet_objectives)  # type: ignore[arg-type]


def best_known(problem: Problem, limit_s: float, found: list[float]) -> None:
    """The referee where no optimum is known: the unmet stage alone with ``limit_s`` reference
    seconds (the same solver, ~all of the time in that stage), its objective and proven bound
    beside each limit's unmet objective."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    solution = solve_problem(problem, SolverSettings(time_limit_s=limit_s, stages=1))
    stage = solution.stages[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gaps = ", ".join(
        f"{(value - stage.objective) / max(1.0, stage.objective):+.1%}" for value in found
    )
    print(
        f"best known: the unmet stage alone for {limit_s:g} reference s "
        f"({solution.work_s:.1f} spent, {time.perf_counter() - wall0:.0f} s wall, "
        f"{time.process_time() - cpu0:.0f} CPU s, peak RSS {peak:.0f} MiB): unmet objective "
        f"{stage.objective:,.0f} (bound {stage.bound:,.0f}); the limits above: {gaps}"
    )


def make_plan_from(problem: Problem, counts: dict[int, int]) -> PlacementPlan:
    from gridplace.planner.output import build_plan
    from gridplace.specs.plan import SolverSummary

    placements, failures = deaggregate(problem, counts)
    summary = SolverSummary(status="bench", wall_seconds=0.0)
    return build_plan(problem, placements, summary, placement_failures=failures)


def compare_settings(problem: Problem, limit_s: float, runs: int) -> None:
    """CP-SAT's default 2-worker portfolio and presolve variants against the shipped settings
    (two stages: unmet demand, then cost)."""
    variants: dict[str, Callable[[], SolverSettings]] = {
        "CP-SAT default 2-worker portfolio": lambda: SolverSettings(
            time_limit_s=limit_s, num_workers=2, linearization_level=1
        ),
        "shipped (1 worker, linearization 2, presolve)": lambda: SolverSettings(
            time_limit_s=limit_s
        ),
        "shipped without presolve": lambda: SolverSettings(time_limit_s=limit_s, presolve=False),
        "shipped with probing level 0": lambda: SolverSettings(
            time_limit_s=limit_s, probing_level=0
        ),
    }
    for label, make in variants.items():
        costs, walls = [], []
        for _ in range(runs):
            solution = solve_problem(problem, replace(make(), stages=2))
            stage = solution.stage("cost")
            costs.append(stage.objective / 10_000 if stage else float("nan"))
            walls.append(solution.wall_s)
        print(
            f"settings {label}: cost {median(costs):.2f} $/h in {median(walls):.2f} s "
            f"(median of {runs})"
        )


def replan(
    inputs: PlannerInputs,
    problem: Problem,
    predictor: object,
    latency: object,
    nodes: list[Node],
    settings: SolverSettings,
) -> None:
    """Plan, remove 5% of nodes, replan with --previous: count replicas that moved needlessly."""
    first = plan_problem(problem, Strategy.CPSAT, settings)
    rng = random.Random(5)
    gone = set(rng.sample([n.name for n in nodes], max(1, len(nodes) // 20)))
    survivors = [n for n in nodes if n.name not in gone]
    cpu_s = time.process_time()
    result = make_plan(
        replace(inputs, nodes=survivors, previous=first),
        predictor,  # type: ignore[arg-type]
        latency,  # type: ignore[arg-type]
        Strategy.CPSAT,
        settings,
    )
    cpu_s = time.process_time() - cpu_s
    second = result.plan
    before = {(a.workload, a.node, tuple(a.gpus)) for a in first.spec.assignments}
    after = {(a.workload, a.node, tuple(a.gpus)) for a in second.spec.assignments}
    kept_before = {h for h in before if h[1] not in gone}
    moved = kept_before - after
    share = len(moved) / max(1, len(kept_before))
    (cost_before, unmet_before, _), (cost_after, unmet_after, _) = (
        evaluate(problem, first),
        evaluate(result.problem, second),
    )
    print(
        f"replan after {len(gone)} of {len(nodes)} nodes vanished: "
        f"{len(before) - len(kept_before)} replicas had to move; {len(moved)} of the other "
        f"{len(kept_before)} moved ({share:.1%}); cost {cost_before:.2f} -> "
        f"{cost_after:.2f} $/h, unmet {unmet_before:.2f} -> {unmet_after:.2f} req/s "
        f"(replan compile {result.compile_s:.1f} s, solve {result.solve_s:.1f} s wall; "
        f"{cpu_s:.1f} CPU s in all)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100x10,1000x100,10000x1000")
    parser.add_argument("--utilization", default="moderate,high")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--time-limit", type=float, default=None,
        help="reference seconds (planner/work.py); default 10, and 30 from 10,000 nodes",
    )  # fmt: skip
    parser.add_argument("--milp-limit", type=float, default=60.0)
    parser.add_argument(
        "--node-failures", type=int, choices=(0, 1), default=0,
        help="redundancy.nodeFailures of every generated workload (1: N+1 failover rows)",
    )  # fmt: skip
    parser.add_argument(
        "--milp-max-pairs",
        type=int,
        default=100_000,
        help="run the HiGHS MILP up to this many nodes x workloads (10,000 x 1,000 took 25-86 s)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None,
        help="a folder for compiled problems: a later run of the same grid reads them back",
    )  # fmt: skip
    parser.add_argument(
        "--end-to-end", default=None,
        help="comma-separated reference-second limits: warm compile + solve + plan output in "
        "CPU seconds at each (only this is run)",
    )  # fmt: skip
    parser.add_argument(
        "--best-known", type=float, default=0.0,
        help="with --end-to-end: also the unmet stage alone for this many reference seconds, "
        "the referee where no optimum is known (N+1)",
    )  # fmt: skip
    args = parser.parse_args()
    print(
        "# gridplace solver scale (this machine; medians of "
        f"{args.runs} runs; time limit {args.time_limit or 'default'} reference s)"
    )
    print(
        f"reproduce: python bench/solver_scale.py --sizes {args.sizes} "
        f"--utilization {args.utilization} --runs {args.runs}"
        + (f" --time-limit {args.time_limit:g}" if args.time_limit else "")
        + (f" --node-failures {args.node_failures}" if args.node_failures else "")
        + (f" --milp-max-pairs {args.milp_max_pairs}" if args.milp_max_pairs != 100_000 else "")
        + (f" --end-to-end {args.end_to_end}" if args.end_to_end else "")
        + (f" --best-known {args.best_known:g}" if args.best_known else "")
    )
    for size in args.sizes.split(","):
        nodes_n, workloads_n = (int(v) for v in size.split("x"))
        if args.end_to_end:
            for utilization in args.utilization.split(","):
                nodes, regions, inputs = generated_grid(
                    nodes_n, workloads_n, utilization, args.node_failures
                )
                latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
                print(f"\n## end to end: {size}, {utilization} utilization, N+{args.node_failures}")
                limits = [float(v) for v in args.end_to_end.split(",")]
                end_to_end(inputs, make_predictor(), latency, limits, args.runs, args.best_known)
            continue
        limit = args.time_limit or (10.0 if nodes_n < 10_000 else 30.0)
        for utilization in args.utilization.split(","):
            run_size(
                nodes_n,
                workloads_n,
                utilization,
                args.runs,
                limit,
                args.milp_limit,
                args.node_failures,
                args.milp_max_pairs,
                args.cache,
            )


if __name__ == "__main__":
    main()
