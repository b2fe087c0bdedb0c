"""Why a workload is not (fully) placed: compile-time reasons summarized over nodes, and the
constraint families of a CP-SAT assumption core when options exist but the coupled model cannot
use them. Each reason comes with a hint saying what would fix it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from gridplace.planner.compile import COMPILE_FAMILIES
from gridplace.planner.model import CONSTRAINT_FAMILIES, build_model
from gridplace.planner.problem import Problem, Rejection

# The further a family is in compile's order, the closer an option came to surviving.
_ORDER = {family: rank for rank, family in enumerate(COMPILE_FAMILIES)}
_DESCRIPTION = {
    "trust": "below the trust requirement",
    "precision-support": "no supported precision",
    "vram": "too little VRAM",
    "slo-itl": "ITL over target",
    "slo-ttft": "TTFT over target",
    "demand-coverage": "no capacity inside the SLO",
}
_CORE_HINTS = {
    "gpu-count": "add GPUs (nodes) that can serve it, or free some by lowering other workloads' "
    "replicas",
    "gpu-sharing": "add GPUs, or allow a precision small enough to share a GPU",
    "vram": "add GPUs with more memory",
    "thermal-power": "cool the hot nodes (their throttling caps the power they can sustain)",
    "replica-bounds": "raise replicas.max",
    "spread": "raise spread.maxPerDomain, or add nodes of other providers/regions",
    "budget": "raise the budget",
    "pinned": "unpin replicas of the previous plan",
    "demand-coverage": "lower requestsPerSecond or add capacity",
}


@dataclass(frozen=True)
class Explanation:
    workload: str
    reasons: list[str]
    hints: list[str]


def _numbers(reason: str) -> list[float]:
    return [float(n) for n in re.findall(r"(\d+(?:\.\d+)?)\s*(?:GiB|ms)", reason)]


def compile_summary(problem: Problem, workload: int) -> tuple[list[str], list[str]]:
    """'0/63 nodes can serve chat-70b: 41 too little VRAM (int4 needs 38.1 GiB ...), ...'."""
    rejections = problem.rejections_of(workload)
    served_pools = {o.pool for o in problem.options_of(workload)}
    total_nodes = sum(p.node_count for p in problem.pools)
    serving_nodes = sum(problem.pools[p].node_count for p in served_pools)
    closest: dict[int, Rejection] = {}
    for rejection in rejections:
        for pool in rejection.pools or (rejection.pool,):
            if pool in served_pools:
                continue
            best = closest.get(pool)
            if best is None or _closer(rejection, best):
                closest[pool] = rejection
    # One entry per pool that nothing serves, under the rejection that came closest for it.
    by_family: dict[str, list[tuple[int, Rejection]]] = defaultdict(list)
    for pool, rejection in closest.items():
        by_family[rejection.family].append((pool, rejection))
    name = problem.workloads[workload].name
    parts = []

    def nodes(entries: list[tuple[int, Rejection]]) -> int:
        return sum(problem.pools[pool].node_count for pool, _ in entries)

    for family in sorted(by_family, key=lambda f: -nodes(by_family[f])):
        group = by_family[family]
        pool, example = min(group, key=lambda e: (_numbers(e[1].reason) or [0.0])[0])
        gpus = sorted({problem.pools[p].gpu_model for p, _ in group})
        parts.append(
            f"{nodes(group)} {_DESCRIPTION.get(family, family)} "
            f"[{family}] (best: {problem.pools[pool].gpu_model} {example.reason}; "
            f"GPUs: {', '.join(gpus[:6])}{'...' if len(gpus) > 6 else ''})"
        )
    reasons = [
        f"{serving_nodes}/{total_nodes} nodes can serve {name}"
        + (": " if parts else "")
        + "; ".join(parts)
    ]
    return reasons, _compile_hints(problem, workload, by_family)


def _closer(a: Rejection, b: Rejection) -> bool:
    if _ORDER.get(a.family, 0) != _ORDER.get(b.family, 0):
        return _ORDER.get(a.family, 0) > _ORDER.get(b.family, 0)
    return (_numbers(a.reason) or [0.0])[0] < (_numbers(b.reason) or [0.0])[0]


def _compile_hints(
    problem: Problem, workload: int, by_family: dict[str, list[tuple[int, Rejection]]]
) -> list[str]:
    demand = problem.workloads[workload]
    regions = ", ".join(region for region, _ in demand.sources)
    hints = []
    if "vram" in by_family:
        needs = [
            float(m.group(1))
            for _, r in by_family["vram"]
            if (m := re.search(r"needs (\d+(?:\.\d+)?) GiB", r.reason))
        ]
        smallest = min(needs) if needs else 0.0
        hint = f"add nodes with >= {smallest:.0f} GiB per GPU in {regions}"
        if demand.precisions[-1].value != "int4":
            hint += ", or allow int4"
        hints.append(hint)
    if "slo-itl" in by_family:
        hints.append(f"add faster-memory GPUs in {regions}, or relax itlMs")
    if "slo-ttft" in by_family:
        hints.append(f"add capacity close to {regions}, or relax ttftMs")
    if "precision-support" in by_family:
        hints.append("allow a precision the grid's GPUs support (fp8 needs Ada/Hopper/CDNA3)")
    if "trust" in by_family:
        hints.append("benchmark or attest more nodes, or lower trust.minClaims/minReliability")
    return hints


def core_families(problem: Problem, workload: int, time_limit_s: float = 5.0) -> list[str]:
    """Constraint families that together keep ``workload`` from full coverage (assumption core)."""
    pm = build_model(problem, tight_bounds=False)
    for (w, _), var in pm.unmet.items():
        if w == workload:
            pm.model.add(var == 0).with_name(f"diagnose[unmet,{w}]")
    pm.model.add(pm.short[workload] == 0).with_name(f"diagnose[short,{workload}]")
    pm.model.clear_objective()  # type: ignore[no-untyped-call]
    families = [f for f, _ in CONSTRAINT_FAMILIES if f in pm.enforce]
    pm.model.add_assumptions([pm.enforce[f] for f in families])
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # assumption cores need the single-worker search
    solver.parameters.random_seed = 0
    solver.parameters.max_time_in_seconds = time_limit_s
    status = solver.solve(pm.model)
    if status != cp_model.INFEASIBLE:
        return []
    core = set(solver.sufficient_assumptions_for_infeasibility())
    return [f for f in families if pm.enforce[f].index in core]


def explain_workload(
    problem: Problem,
    workload: int,
    unmet_rps: float,
    short_replicas: int = 0,
    diagnose: bool = True,
) -> Explanation:
    """Reasons and hints for one workload that is not fully served; ``diagnose`` runs the
    assumption-core solve (one small solve per workload, so large plans cap how many)."""
    reasons, hints = compile_summary(problem, workload)
    demand = problem.workloads[workload]
    lacking = (unmet_rps > 0 or short_replicas > 0) and bool(problem.options_of(workload))
    if lacking and not diagnose:
        reasons.append(
            f"{unmet_rps:.2f} of {demand.demand_rps:g} req/s (plus headroom) unserved; run "
            f"`gridplace explain --workload {demand.name}` for the constraints that block it"
        )
    elif lacking:
        families = core_families(problem, workload)
        if families:
            missing = f"{unmet_rps:.2f} of {demand.demand_rps:g} req/s (plus headroom)"
            if short_replicas:
                missing += f" and {short_replicas} of replicas.min {demand.replicas_min}"
            reasons.append(
                f"{missing} unserved: the options that exist are blocked by {', '.join(families)}"
            )
            hints.extend(_CORE_HINTS[f] for f in families if f in _CORE_HINTS)
        else:
            reasons.append(
                f"{unmet_rps:.2f} req/s unserved: other workloads of higher priority took the "
                "capacity that could serve it"
            )
            hints.append("raise its priority or add capacity")
    return Explanation(demand.name, reasons, hints)
