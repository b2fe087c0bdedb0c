#!/usr/bin/env python3
"""Compile time at scale: cold (empty process cache), warm (the same grid again), and a replan after
5% of the nodes vanish (a new topology, the cache kept), each beside a baseline checkout (e.g.
main) compiled in the same run.

    python bench/compile_scale.py --sizes 1000x100,3000x300,10000x1000 --baseline /tmp/main

Each measure runs in its own process (this checkout, then ``--baseline``'s ``gridplace`` put
first on the path) on the generated grid of bench/gridgen.py; wall and CPU seconds, the load
average beside them, and the ratio baseline / this. Wall times depend on the machine's load:
read the ratios and CPU seconds. Needs ../shared/data (or GRIDPLACE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def measure(size: str) -> dict[str, object]:
    """Cold, warm and replan compiles in this process (whatever ``gridplace`` imports)."""
    sys.path.insert(0, str(HERE))
    from solver_scale import generated_grid

    from gridplace.planner.compile import compile_problem
    from gridplace.planner.compile_cache import PROCESS_CACHE
    from gridplace.planner.network import NetworkLatency
    from gridplace.planner.predictor import make_predictor
    from gridplace.topology import Topology

    nodes_n, workloads_n = (int(v) for v in size.split("x"))
    nodes, regions, inputs = generated_grid(nodes_n, workloads_n, "moderate", 0)
    latency = NetworkLatency(Topology.build(nodes, []).latency_lookup(regions))
    gone = set(random.Random(5).sample([n.name for n in nodes], max(1, len(nodes) // 20)))
    survivors = [n for n in nodes if n.name not in gone]
    replan = dataclasses.replace(inputs, nodes=survivors)
    # A replan reads a new topology, as the API builds one per plan (its build is not timed).
    fresh = NetworkLatency(Topology.build(survivors, []).latency_lookup(regions))
    PROCESS_CACHE.clear()
    found: dict[str, object] = {"gridplace": __import__("gridplace").__file__}
    runs = (("cold", inputs, latency), ("warm", inputs, latency), ("replan", replan, fresh))
    for label, planned, network in runs:
        wall, cpu = time.perf_counter(), time.process_time()
        problem = compile_problem(planned, make_predictor(), network)
        # Timed with it: the young collection that walks the compile's objects once (a compile
        # pauses the automatic collector; whatever it leaves to collect is paid here).
        gc.collect(0)
        counts = PROCESS_CACHE.last
        found[label] = {
            "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "load": load(),
            "classes": len(problem.pools),
            "options": len(problem.options),
            "questions": [counts.questions_compiled, counts.questions_reused],
            "classes_new_known": [counts.classes_compiled, counts.classes_reused],
        }
    found["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return found


def run(size: str, baseline: str | None) -> dict[str, object]:
    env = dict(os.environ)
    if baseline:
        env["PYTHONPATH"] = baseline
    command = [sys.executable, __file__, "--measure", size]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000x100,3000x300,10000x1000")
    parser.add_argument("--baseline", help="a checkout whose gridplace to compare against")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    print(f"# compile at scale ({load()} load, {os.cpu_count()} CPUs)")
    print("reproduce: python bench/compile_scale.py " + " ".join(sys.argv[1:]))
    print("| size | compile | this: wall s / CPU s (load) | baseline: wall s / CPU s | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        this = run(size, None)
        base = run(size, args.baseline) if args.baseline else None
        for label in ("cold", "warm", "replan"):
            mine: dict[str, object] = this[label]  # type: ignore[assignment]
            theirs: dict[str, object] | None = base[label] if base else None  # type: ignore[assignment]
            other = f"{theirs['wall_s']} / {theirs['cpu_s']} ({theirs['load']})" if theirs else "-"
            ratio = f"{theirs['cpu_s'] / mine['cpu_s']:.1f}x" if theirs else "-"  # type: ignore[operator]
            print(
                f"| {size} | {label} | {mine['wall_s']} / {mine['cpu_s']} ({mine['load']}) | "
                f"{other} | {ratio} |"
            )
        print(
            f"{size}: {this['cold']['classes']} node classes, {this['cold']['options']} options; "  # type: ignore[index]
            f"questions predicted / reused: cold {this['cold']['questions']}, replan "  # type: ignore[index]
            f"{this['replan']['questions']}, node classes new / known on the replan "  # type: ignore[index]
            f"{this['replan']['classes_new_known']}; peak RSS {this['peak_rss_mib']} MiB"  # type: ignore[index]
            + (f" (baseline {base['peak_rss_mib']} MiB)" if base else "")
        )


if __name__ == "__main__":
    main()
