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
from gridplace.planner.model import CONSTRAINT_FAMILIES, PlacementModel, build_model
from gridplace.planner.problem import Problem, Rejection
from gridplace.planner.work import limit

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


def _distance(rejection: Rejection) -> float:
    """How far an option was from passing its rule (smaller is closer): for VRAM, what it needs
    per GPU over what it has (a quarter-GPU share needs less than a whole GPU but has a quarter
    of the memory: the whole GPU is closer); otherwise the reason's first figure."""
    if rejection.family == "vram":
        found = re.search(
            r"needs (\d+(?:\.\d+)?) GiB per GPU, has (\d+(?:\.\d+)?)", rejection.reason
        )
        if found and float(found.group(2)) > 0:
            return float(found.group(1)) / float(found.group(2))
    return (_numbers(rejection.reason) or [0.0])[0]


def compile_summary(problem: Problem, workload: int) -> tuple[list[str], list[str]]:
    """'0/63 nodes can serve chat-70b: 41 too little VRAM (int4 needs 38.1 GiB ...), ...'."""
    rejections = problem.rejections_of(workload)
    served_pools = {o.pool for o in problem.options_of(workload)}
    total_nodes = sum(p.node_count for p in problem.pools)
    serving_nodes = sum(problem.pools[p].node_count for p in served_pools)
    closest: dict[int, tuple[tuple[int, float], Rejection]] = {}
    for rejection in rejections:
        key = _closeness(rejection)
        for pool in rejection.pools or (rejection.pool,):
            if pool in served_pools:
                continue
            best = closest.get(pool)
            if best is None or key < best[0]:
                closest[pool] = (key, rejection)
    # One entry per pool that nothing serves, under the rejection that came closest for it.
    by_family: dict[str, list[tuple[int, Rejection]]] = defaultdict(list)
    for pool, (_, rejection) in closest.items():
        by_family[rejection.family].append((pool, rejection))
    name = problem.workloads[workload].name
    parts = []

    def nodes(entries: list[tuple[int, Rejection]]) -> int:
        return sum(problem.pools[pool].node_count for pool, _ in entries)

    for family in sorted(by_family, key=lambda f: -nodes(by_family[f])):
        group = by_family[family]
        pool, example = min(group, key=lambda e: _distance(e[1]))
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


def _closeness(rejection: Rejection) -> tuple[int, float]:
    """Smaller is closer to surviving: later in compile's order, then a smaller first number."""
    return -_ORDER.get(rejection.family, 0), _distance(rejection)


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


def diagnosis_model(problem: Problem) -> PlacementModel:
    """The model assumption cores are drawn from (built once; each diagnosis works on a copy)."""
    return build_model(problem, tight_bounds=False)


def core_families(
    problem: Problem,
    workload: int,
    time_limit_s: float = 5.0,
    base: PlacementModel | None = None,
) -> list[str] | None:
    """Constraint families that together keep ``workload`` from full coverage (assumption
    core); [] when it could be fully served by taking capacity from other workloads; None when
    the solve decided neither in ``time_limit_s`` (reference seconds of deterministic work,
    ``work.py``). ``base``: ``diagnosis_model(problem)``."""
    pm = base or diagnosis_model(problem)
    model = pm.model.clone()

    def var(ref: cp_model.IntVar) -> cp_model.IntVar:
        return model.get_int_var_from_proto_index(ref.index)

    for (w, _), unmet in pm.unmet.items():
        if w == workload:
            model.add(var(unmet) == 0).with_name(f"diagnose[unmet,{w}]")
    model.add(var(pm.short[workload]) == 0).with_name(f"diagnose[short,{workload}]")
    # The other workloads can always give their capacity up (their demand has unmet slack),
    # except for pinned replicas: without them the solve is small (10,000 x 1,000: 0.1 s, not 2.3).
    pinned = {r.option for r in problem.previous if r.pinned and r.option is not None}
    for option in problem.options:
        if option.workload != workload and option.index not in pinned:
            domain = model.proto.variables[pm.x[option.index].index].domain
            domain.clear()
            domain.extend([0, 0])
    model.clear_objective()  # type: ignore[no-untyped-call]
    families = [f for f, _ in CONSTRAINT_FAMILIES if f in pm.enforce]
    model.add_assumptions(
        [model.get_bool_var_from_proto_index(pm.enforce[f].index) for f in families]
    )
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # assumption cores need the single-worker search
    solver.parameters.random_seed = 0
    limit(solver, time_limit_s)  # deterministic work: the same diagnosis on any machine load
    status = solver.solve(model)
    if status == cp_model.UNKNOWN:
        return None
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
    base: PlacementModel | None = None,
) -> Explanation:
    """Reasons and hints for one workload that is not fully served; ``diagnose`` runs the
    assumption-core solve (one small solve per workload, so large plans cap how many) on a
    copy of ``base`` (``diagnosis_model``; built here when not given)."""
    reasons, hints = compile_summary(problem, workload)
    demand = problem.workloads[workload]
    lacking = (unmet_rps > 0 or short_replicas > 0) and bool(problem.options_of(workload))
    families = core_families(problem, workload, base=base) if lacking and diagnose else None
    if lacking and families is None:
        reasons.append(
            f"{unmet_rps:.2f} of {demand.demand_rps:g} req/s (plus headroom) unserved; run "
            f"`gridplace explain --workload {demand.name}` for the constraints that block it"
        )
    elif lacking:
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
