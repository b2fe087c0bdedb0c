"""What pipeline options cost compile: candidates per workload and compile time with every
workload allowed a pipeline (``spec.pipeline``) against the same inputs without, on the shipped
104-node example and on a generated grid.

Reproduce::

    .venv/bin/python bench/pipeline_scale.py [--nodes 1000 --workloads 100 --runs 3]

Times are medians over ``--runs`` compiles, each pair (without, with) run back to back, printed
with their ratio: the figure to compare across machines and loads. The generated grid
(``bench/gridgen.py``) needs ``../shared/data/offers``; it is skipped without it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.network import NetworkLatency
from gridplace.planner.pipeline_options import MAX_PIPELINES
from gridplace.planner.predictor import make_predictor, make_stage_predictor
from gridplace.planner.problem import Problem
from gridplace.specs import InferenceWorkload, Node, builtin_catalog, load_bundle
from gridplace.specs.workload import PipelinePolicy
from gridplace.topology import Topology

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def allowing(workloads: Sequence[InferenceWorkload]) -> list[InferenceWorkload]:
    """The workloads, each allowed a pipeline of up to 4 stages."""
    return [
        w.model_copy(update={"spec": w.spec.model_copy(update={"pipeline": PipelinePolicy()})})
        for w in workloads
    ]


def compile_once(nodes: Sequence[Node], workloads: Sequence[InferenceWorkload],
                 latency: NetworkLatency) -> tuple[Problem, float]:  # fmt: skip
    """A compile with fresh predictors and no compile cache (nothing carried between runs),
    and its seconds."""
    started = time.perf_counter()
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), make_predictor(), latency, None,
        stage_predictor=make_stage_predictor(),
    )  # fmt: skip
    return problem, time.perf_counter() - started


def measure(title: str, nodes: Sequence[Node], workloads: Sequence[InferenceWorkload],
            latency: NetworkLatency, runs: int) -> None:  # fmt: skip
    plain_s, split_s = [], []
    for _ in range(runs):
        _, seconds = compile_once(nodes, workloads, latency)
        plain_s.append(seconds)
        problem, seconds = compile_once(nodes, allowing(workloads), latency)
        split_s.append(seconds)
    pipelines = [
        len([o for o in problem.options_of(w.index) if o.stages]) for w in problem.workloads
    ]
    placed_only = sum(
        1 for w in problem.workloads
        if problem.options_of(w.index) and all(o.stages for o in problem.options_of(w.index))
    )  # fmt: skip
    refused = sum(1 for r in problem.rejections if r.family.startswith("pipeline-"))
    plain, split = statistics.median(plain_s), statistics.median(split_s)
    print(
        f"{title}: {len(nodes)} nodes, {len(workloads)} workloads: pipeline options "
        f"{sum(pipelines)} (max {max(pipelines, default=0)} per workload, bound {MAX_PIPELINES}; "
        f"{sum(1 for p in pipelines if p)} workloads have some, {placed_only} only pipelines, "
        f"{refused} pipeline rejections); compile median {plain:.2f} s without, {split:.2f} s "
        f"with pipelines allowed ({split / plain:.2f}x), {runs} runs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--offers", type=Path, default=None, help="gpu_offer_prices.csv")
    args = parser.parse_args()
    bundle = load_bundle([EXAMPLES / "grid", EXAMPLES / "workloads", EXAMPLES / "probes"])
    topology = Topology.build(bundle.nodes, bundle.probes)
    latency = NetworkLatency(topology.latency_lookup())
    measure("example", bundle.nodes, bundle.workloads, latency, args.runs)
    try:
        from bench.gridgen import OFFERS_CSV, generate_nodes, generate_workloads, read_offers
    except ImportError:
        from gridgen import (  # type: ignore[no-redef]
            OFFERS_CSV,
            generate_nodes,
            generate_workloads,
            read_offers,
        )
    try:
        nodes = generate_nodes(args.nodes, offers=read_offers(args.offers or OFFERS_CSV))
    except FileNotFoundError as error:
        print(f"generated grid skipped: {error}")
        return 0
    regions = sorted({n.spec.region for n in nodes})
    workloads = generate_workloads(args.workloads, regions)
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    measure("generated", nodes, workloads, latency, args.runs)
    print("reproduce: .venv/bin/python bench/pipeline_scale.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items() if v is not None
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
