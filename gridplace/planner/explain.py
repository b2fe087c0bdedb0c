"""Why a workload is not (fully) placed: compile-time reasons summarized over nodes, and the
constraint families of a CP-SAT assumption core when options exist but the coupled model cannot
use them. Each reason comes with a hint saying what would fix it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ortools.sat.python import cp_model

from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.problem import Problem, Rejection
from gridplace.planner.rules import BY_ID, COMPILE_RULES, MODEL_RULES, describe
from gridplace.planner.work import limit

# The further a rule is in compile's order, the closer an option came to surviving.
_ORDER = {rule.id: rank for rank, rule in enumerate(COMPILE_RULES)}


@dataclass(frozen=True)
class Explanation:
    workload: str
    reasons: list[str]
    hints: list[str]


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

    order = sorted(by_family, key=lambda f: -nodes(by_family[f]))  # most nodes first
    for family in order:
        group = by_family[family]
        pool, example = min(group, key=lambda e: e[1].reason.distance)
        gpus = sorted({problem.pools[p].gpu_model for p, _ in group})
        parts.append(
            f"{nodes(group)} {BY_ID[family].description} "
            f"[{family}] (best: {problem.pools[pool].gpu_model} {describe(example.reason)}; "
            f"GPUs: {', '.join(gpus[:6])}{'...' if len(gpus) > 6 else ''})"
        )
    reasons = [
        f"{serving_nodes}/{total_nodes} nodes can serve {name}"
        + (": " if parts else "")
        + "; ".join(parts)
    ]
    return reasons, _compile_hints(problem, workload, {f: by_family[f] for f in order})


def _closeness(rejection: Rejection) -> tuple[int, float]:
    """Smaller is closer to surviving: later in compile's order, then a smaller first number."""
    return -_ORDER[rejection.family], rejection.reason.distance


def _compile_hints(
    problem: Problem, workload: int, by_family: dict[str, list[tuple[int, Rejection]]]
) -> list[str]:
    """The fix hint of each rule that rejected options, filled in with the workload's sources,
    the smallest VRAM need and whether int4 is allowed yet, in ``by_family``'s order."""
    demand = problem.workloads[workload]
    regions = ", ".join(region for region, _ in demand.sources)
    or_int4 = "" if demand.precisions[-1].value == "int4" else ", or allow int4"
    hints = []
    for family, rejected in by_family.items():
        needed = min((float(r.reason.needed) for _, r in rejected if r.reason.unit), default=0.0)
        hints.append(BY_ID[family].hint.format(regions=regions, needed=needed, or_int4=or_int4))
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
    families = [rule.id for rule in MODEL_RULES if rule.id in pm.enforce]
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
            hints.extend(BY_ID[f].hint for f in families)
        else:
            reasons.append(
                f"{unmet_rps:.2f} req/s unserved: other workloads of higher priority took the "
                "capacity that could serve it"
            )
            hints.append("raise its priority or add capacity")
    return Explanation(demand.name, reasons, hints)
