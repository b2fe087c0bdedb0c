#!/usr/bin/env python3
"""Do the fixes ``explain`` shows work? (#23)

Run from the repository root::

    .venv/bin/python bench/fix_hints.py              # 3 timing runs per case
    .venv/bin/python bench/fix_hints.py --runs 5 --variants 4

Cases: the README's example (``examples/`` plus a Llama-3.1-405B at bf16 with a 20 ms ITL target
from eu-west), the issue's case (ten nodes with two RTX 3090s each, the 405B at bf16), and
generated grids (``--variants`` per kind, seeded) with one workload refused for each reason:
VRAM, ITL, TTFT from distance, precision support, budget, replicas.max. For every case the plan
is made with the fix search; each fix shown is then applied here, independently of the
planner's own code (the YAML documents edited as a user would), planned without the search and
checked placed.

Printed: per kind, the fixes shown, the share that place the workload when applied, the
workloads with at least one working fix, the time ``explain`` takes with the checks and without
(medians over ``--runs``, same process, same machine), and the time the checks add over the
planning time (target: below 1).
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from gridplace.api.wiring import plan_bundle
from gridplace.planner.planning import PlanResult
from gridplace.specs import load_bundle
from gridplace.specs.fixes import (
    AddNodes,
    AllowPipeline,
    AllowPrecision,
    Fix,
    RaiseBudget,
    RelaxSlo,
)

ROOT = Path(__file__).resolve().parent.parent
Docs = list[dict[str, Any]]
GPUS = ["rtx-3090", "rtx-4090", "l40s", "a100-sxm-80gb"]


def node(
    name: str, gpu: str, count: int, region: str, price: float, provider: str
) -> dict[str, Any]:
    spec = {"region": region, "provider": provider, "pricePerHour": price,
            "gpus": [{"model": gpu, "count": count}]}  # fmt: skip
    return {"apiVersion": "gridplace/v1alpha1", "kind": "Node", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def workload(name: str, model: str, precisions: list[str], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "precisions": precisions,
        "slo": {"ttftMs": 3000, "itlMs": 100},
        "traffic": {"requestsPerSecond": 0.5, "promptTokens": 1000, "outputTokens": 200,
                    "sources": [{"region": "us-east", "share": 1.0}]},
    }  # fmt: skip
    body.update(spec)
    return {"apiVersion": "gridplace/v1alpha1", "kind": "InferenceWorkload",
            "metadata": {"name": name}, "spec": body}  # fmt: skip


def grid(rng: random.Random, count: int, gpus: int = 1) -> Docs:
    gpu = rng.choice(GPUS)
    return [node(f"n{i}", gpu, gpus, "us-east", round(rng.uniform(0.3, 2.0), 2), f"p{i}")
            for i in range(count)]  # fmt: skip


def refused(kind: str, rng: random.Random) -> tuple[Docs, float | None]:
    """A small grid with one workload refused for ``kind``; (documents, budget)."""
    nodes = grid(rng, rng.randint(2, 6))
    gpu = nodes[0]["spec"]["gpus"][0]["model"]
    if kind == "vram":
        return [*nodes, workload("w", rng.choice(["llama-3.1-70b", "qwen2.5-72b"]), ["bf16"])], None
    if kind == "itl":
        slo = {"ttftMs": 3000, "itlMs": rng.choice([2, 3, 4])}
        return [*nodes, workload("w", "llama-3.1-8b", ["int4"], slo=slo)], None
    if kind == "ttft-distance":
        far = workload("w", "llama-3.1-8b", ["int4"], slo={"ttftMs": rng.choice([40, 60]),
                                                           "itlMs": 100})  # fmt: skip
        far["spec"]["traffic"]["sources"] = [{"region": "ap-southeast", "share": 1.0}]
        return [*nodes, far], None
    if kind == "precision-support":
        missing = "bf16" if gpu == "v100-sxm-16gb" else "fp8"
        if gpu in {"rtx-4090", "l40s"}:  # Ada runs fp8: ask for a format it has no path for
            nodes = [node(f"v{i}", "v100-sxm-16gb", 1, "us-east", 0.3, f"p{i}") for i in range(3)]
            missing = "bf16"
        return [*nodes, workload("w", "llama-3.1-8b", [missing])], None
    if kind == "budget":
        return [*nodes, workload("w", "llama-3.1-8b", ["int4"])], 0.05
    if kind == "replicas":
        busy = workload("w", "llama-3.1-8b", ["int4"], replicas={"min": 1, "max": 1})
        busy["spec"]["traffic"]["requestsPerSecond"] = 3
        return [*grid(rng, 8), busy], None
    raise ValueError(kind)


def readme_case() -> Docs:
    docs = [d for f in ("grid", "workloads") for p in sorted((ROOT / "examples" / f).glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]  # fmt: skip
    huge = workload("huge-405b", "llama-3.1-405b", ["bf16"], slo={"ttftMs": 2000, "itlMs": 20})
    huge["spec"]["traffic"]["sources"] = [{"region": "eu-west", "share": 1.0}]
    return [*docs, huge]


def issue_case() -> Docs:
    return [*[node(f"box-{i}", "rtx-3090", 2, "us-east", 0.4, f"home-{i}") for i in range(10)],
            workload("huge", "llama-3.1-405b", ["bf16"])]  # fmt: skip


def plan(docs: Docs, budget: float | None, fix_budget_s: float | None, tmp: Path) -> PlanResult:
    path = tmp / "specs.yaml"
    path.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    probes = sorted((ROOT / "examples" / "probes").glob("*.yaml")) if len(docs) > 50 else []
    return plan_bundle(load_bundle([path, *probes]), budget_per_hour=budget,
                       fix_budget_s=fix_budget_s)  # fmt: skip


def apply_by_hand(
    docs: Docs, name: str, fix: Fix, budget: float | None
) -> tuple[Docs, float | None]:
    docs = copy.deepcopy(docs)
    spec = next(
        d for d in docs if d["kind"] == "InferenceWorkload" and d["metadata"]["name"] == name
    )["spec"]
    for change in fix.changes:
        if isinstance(change, AllowPrecision):
            spec["precisions"].append(change.precision.value)
        elif isinstance(change, RelaxSlo):
            spec["slo"][change.field] = change.value
        elif isinstance(change, RaiseBudget):
            budget = change.per_hour
        elif isinstance(change, AllowPipeline):
            spec["pipeline"] = {"maxStages": change.max_stages}
        elif isinstance(change, AddNodes):
            for i in range(change.count):
                provider = f"bought-{i}" if change.distinct_providers else "bought"
                price = change.price_per_hour or 0.0
                docs.append(node(f"bought-{i}", change.gpu, change.gpus_per_node, change.region,
                                 price, provider))  # fmt: skip
                docs[-1]["spec"]["interconnect"] = change.interconnect.value
        else:
            spec["replicas"] = {**spec.get("replicas", {}), "max": change.value}
    return docs, budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases: list[tuple[str, Docs, float | None]] = [("readme-405b", readme_case(), None),
                                                   ("issue-405b", issue_case(), None)]  # fmt: skip
    kinds = ["vram", "itl", "ttft-distance", "precision-support", "budget", "replicas"]
    cases += [(k, *refused(k, rng)) for k in kinds for _ in range(args.variants)]
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # shown, work, workloads, fixed
    with_s: dict[str, list[float]] = defaultdict(list)
    without_s: dict[str, list[float]] = defaultdict(list)
    examples: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, docs, budget in cases:
            for _ in range(args.runs):
                started = time.perf_counter()
                plain = plan(docs, budget, 0.0, Path(tmp))
                without_s[kind].append(time.perf_counter() - started)
                started = time.perf_counter()
                result = plan(docs, budget, None, Path(tmp))
                with_s[kind].append(time.perf_counter() - started)
            assert plain.plan.status is not None and result.plan.status is not None
            for unplaced in result.plan.status.unplaced:
                row = rows[kind]
                row[2] += 1
                works = 0
                for fix in unplaced.fixes:
                    fixed, new_budget = apply_by_hand(docs, unplaced.workload, fix, budget)
                    after = plan(fixed, new_budget, 0.0, Path(tmp)).plan.status
                    assert after is not None
                    works += all(u.workload != unplaced.workload for u in after.unplaced)
                row[0] += len(unplaced.fixes)
                row[1] += works
                row[3] += works > 0
                if unplaced.fixes and kind not in examples:
                    examples[kind] = f"{unplaced.workload}: {unplaced.hints[-1]}"
    print(f"{'kind':<18} {'fixes shown':>11} {'work':>6} {'unplaced':>8} {'fixed':>6} "
          f"{'explain s (no checks)':>22} {'with checks':>12} {'checks/plan':>11}")  # fmt: skip
    for kind in dict.fromkeys(k for k, _, _ in cases):
        shown, work, total, helped = rows[kind]
        plain_s, checked_s = statistics.median(without_s[kind]), statistics.median(with_s[kind])
        share = f"{work / shown:.0%}" if shown else "-"
        print(f"{kind:<18} {shown:>11} {share:>6} {total:>8} {helped:>6} {plain_s:>22.2f} "
              f"{checked_s:>12.2f} {(checked_s - plain_s) / plain_s:>11.2f}")  # fmt: skip
    shown = sum(r[0] for r in rows.values())
    work = sum(r[1] for r in rows.values())
    print(
        f"\nall: {work}/{shown} fixes shown work when applied; "
        f"{sum(r[3] for r in rows.values())}/{sum(r[2] for r in rows.values())} unplaced "
        f"workloads have at least one"
    )
    for kind, text in examples.items():
        print(f"  {kind}: {text}")
    print(f"load: {os.getloadavg()[0]:.1f} (1-minute average at the end)")
    print(
        f"\ncommand: .venv/bin/python bench/fix_hints.py --runs {args.runs} "
        f"--variants {args.variants} --seed {args.seed}"
    )


if __name__ == "__main__":
    main()
