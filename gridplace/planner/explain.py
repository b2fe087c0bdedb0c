"""Why a workload is not (fully) placed: compile-time reasons summarized over nodes, and the
constraint families of a CP-SAT assumption core when options exist but the coupled model cannot
use them. Each reason comes with a hint saying what would fix it. The reasons are data first
(``specs.fixes.Refusal``: rule, nodes, the closest option's numbers); the text is worded from the
same rejections (``rules.describe``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from gridplace.planner.model import PlacementModel, build_model
from gridplace.planner.options import configs_of
from gridplace.planner.problem import Problem, Rejection
from gridplace.planner.rules import BY_ID, COMPILE_RULES, MODEL_RULES, Reason, describe
from gridplace.planner.work import limit
from gridplace.specs.fixes import BestOption, Refusal

# The further a rule is in compile's order, the closer an option came to surviving.
_ORDER = {rule.id: rank for rank, rule in enumerate(COMPILE_RULES)}


@dataclass(frozen=True)
class Explanation:
    workload: str
    reasons: list[str]
    hints: list[str]
    refusals: list[Refusal] = field(default_factory=list)  # the reasons as data


Refused = dict[str, list[tuple[int, Rejection]]]  # rule id -> (pool, rejection), most nodes first


def _refused(problem: Problem, workload: int) -> Refused:
    """Per rule, the pools nothing serves under the rejection that came closest for each."""
    served_pools = {o.pool for o in problem.options_of(workload)}
    closest: dict[int, tuple[tuple[int, float], Rejection]] = {}
    for rejection in problem.rejections_of(workload):
        key = _closeness(rejection)
        for pool in rejection.pools or (rejection.pool,):
            if pool in served_pools:
                continue
            best = closest.get(pool)
            if best is None or key < best[0]:
                closest[pool] = (key, rejection)
    by_family: Refused = defaultdict(list)
    for pool, (_, rejection) in closest.items():
        by_family[rejection.family].append((pool, rejection))

    def nodes(family: str) -> int:
        return sum(problem.pools[pool].node_count for pool, _ in by_family[family])

    return {f: by_family[f] for f in sorted(by_family, key=lambda f: -nodes(f))}


def compile_refusals(problem: Problem, workload: int) -> list[Refusal]:
    """Per compile-time rule that refused nodes: how many, on which GPUs, and the numbers of
    the option that came closest (``describe`` words them)."""
    return [_refusal(problem, workload, group) for group in _refused(problem, workload).values()]


def _closest(group: list[tuple[int, Rejection]]) -> tuple[int, Rejection]:
    return min(group, key=lambda e: e[1].reason.distance)


def _refusal(problem: Problem, workload: int, group: list[tuple[int, Rejection]]) -> Refusal:
    pool, example = _closest(group)
    reason = example.reason
    config = {c.label: c for c in configs_of(problem.workloads[workload].precisions)}.get(
        reason.option
    )
    best = BestOption(
        node=problem.pools[pool].node_names[0],
        gpu=problem.pools[pool].gpu_model,
        precision=config.precision if config else None,
        tensor_parallel=config.tensor_parallel if config else None,
        gpu_share=config.share if config else None,
    )
    numbers = {k: round(v, 3) if isinstance(v, float) else v for k, v in _numbers(reason).items()}
    return Refusal(
        family="compile",
        rule=example.family,
        measure=reason.measure,
        nodes=sum(problem.pools[p].node_count for p, _ in group),
        unit=reason.unit or None,
        network_ms=reason.network_ms or None,
        best=best,
        gpus=sorted({problem.pools[p].gpu_model for p, _ in group}),
        detail=reason.detail or None,
        **numbers,
    )


def _numbers(reason: Reason) -> dict[str, float | str | None]:
    """needed / available / limit of a rejection: a target is a limit, a pool's VRAM or trust
    level is what is available, and trust's ``needed`` is the level asked for."""
    if reason.measure in ("claims", "reliability"):
        return {"needed": reason.available, "available": reason.needed, "limit": None}
    if reason.measure == "vram":
        return {"needed": reason.needed, "available": reason.available, "limit": None}
    if reason.measure == "support":
        return {"needed": None, "available": None, "limit": None}
    return {"needed": reason.needed, "available": None, "limit": reason.available}


def compile_summary(problem: Problem, workload: int) -> tuple[list[str], list[str]]:
    """'0/63 nodes can serve chat-70b: 41 too little VRAM (int4 needs 38.1 GiB ...), ...'."""
    refused = _refused(problem, workload)
    served_pools = {o.pool for o in problem.options_of(workload)}
    total_nodes = sum(p.node_count for p in problem.pools)
    serving_nodes = sum(problem.pools[p].node_count for p in served_pools)
    name = problem.workloads[workload].name
    parts = []
    for family, group in refused.items():
        refusal, (pool, closest) = _refusal(problem, workload, group), _closest(group)
        gpus = refusal.gpus
        parts.append(
            f"{refusal.nodes} {BY_ID[family].description} "
            f"[{family}] (best: {problem.pools[pool].gpu_model} {describe(closest.reason)}; "
            f"GPUs: {', '.join(gpus[:6])}{'...' if len(gpus) > 6 else ''})"
        )
    reasons = [
        f"{serving_nodes}/{total_nodes} nodes can serve {name}"
        + (": " if parts else "")
        + "; ".join(parts)
    ]
    return reasons, _compile_hints(problem, workload, refused)


def _closeness(rejection: Rejection) -> tuple[int, float]:
    """Smaller is closer to surviving: later in compile's order, then a smaller first number."""
    return -_ORDER[rejection.family], rejection.reason.distance


def _compile_hints(problem: Problem, workload: int, by_family: Refused) -> list[str]:
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
    refusals = compile_refusals(problem, workload)
    if lacking:
        unmet, short = round(unmet_rps, 3), short_replicas or None
        refusals += [
            Refusal(family="model", rule=f, unmet_rps=unmet, short_replicas=short)
            for f in families or []
        ]
        if not families:  # undiagnosed, or taken by workloads of higher priority
            refusals.append(Refusal(family="coverage", unmet_rps=unmet, short_replicas=short))
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
    return Explanation(demand.name, reasons, hints, refusals)
