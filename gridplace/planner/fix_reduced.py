"""The reduced problem a fix is searched on: the changed workload alone on the GPUs that the base
plan leaves to it (every GPU no other workload's replica holds: its own replicas' GPUs are free
again), under the budget less what the other workloads cost there.

A placement found here is one of the whole problem with every other workload where the base plan
put it, so it proves that the change can work; it does not prove that a whole plan finds it, so
``fixes`` checks the fix it settles on once more on the whole problem. A solve of one workload
on the free GPUs takes a fraction of one of the whole grid, and a search (a bisection over SLO
values) takes many. Shared GPUs count as taken (a conservative reading of what is left).

Owns the residual grid and the reduced inputs; must not search or check fixes (``fixes``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from gridplace.planner.ports import PlannerInputs
from gridplace.specs import Node, PlacementPlan
from gridplace.specs.node import GPUGroup


@dataclass(frozen=True)
class BasePlan:
    """What the base plan takes from a workload's point of view: the GPUs each node has given
    to the other workloads, and what they cost per hour."""

    taken: dict[str, set[int]]
    others_cost: float


def base_for(plan: PlacementPlan | None, workload: str) -> BasePlan:
    """The GPUs and cost of every workload but ``workload`` in ``plan`` (none without a plan:
    validate's checks have no base plan, and the workload is then alone on the grid)."""
    taken: dict[str, set[int]] = defaultdict(set)
    if plan is None:
        return BasePlan({}, 0.0)
    for assignment in plan.spec.assignments:
        if assignment.workload == workload:
            continue
        taken[assignment.node].update(assignment.gpus)
        for stage in assignment.stages or []:
            taken[stage.node].update(stage.gpus)
    cost = 0.0
    if plan.status is not None:
        cost = sum(c.cost_per_hour or 0.0 for c in plan.status.workloads if c.name != workload)
    return BasePlan(dict(taken), cost)


def others_plan(plan: PlacementPlan, workload: str) -> PlacementPlan:
    """``plan`` without ``workload``'s replicas: where a whole-problem check starts (as a
    replan does from its previous plan), its pins kept."""
    kept = [a for a in plan.spec.assignments if a.workload != workload]
    spec = plan.spec.model_copy(update={"assignments": kept})
    return plan.model_copy(update={"spec": spec})


def free_node(node: Node, taken: set[int]) -> Node | None:
    """``node`` with only the GPUs not in ``taken`` (indices run over its GPU groups in order),
    priced per GPU as before; None when none is free."""
    if not taken:
        return node
    groups: list[GPUGroup] = []
    start = 0
    for group in node.spec.gpus:
        free = sum(1 for i in range(start, start + group.count) if i not in taken)
        start += group.count
        if free:
            groups.append(group.model_copy(update={"count": free}))
    if not groups:
        return None
    left = sum(g.count for g in groups)
    price = node.spec.price_per_hour * left / node.spec.gpu_count
    spec = node.spec.model_copy(update={"gpus": groups, "price_per_hour": price})
    return node.model_copy(update={"spec": spec})


def reduced_inputs(inputs: PlannerInputs, base: BasePlan, workload: str) -> PlannerInputs:
    """``workload`` alone on what ``base`` leaves of ``inputs``' nodes (nodes it added: whole),
    the budget less the other workloads' cost, no previous plan."""
    nodes = [free_node(n, base.taken.get(n.metadata.name, set())) for n in inputs.nodes]
    budget = inputs.budget_per_hour
    return replace(
        inputs,
        nodes=[n for n in nodes if n is not None],
        workloads=[w for w in inputs.workloads if w.name == workload],
        previous=None,
        budget_per_hour=None if budget is None else max(0.0, budget - base.others_cost),
    )


def alone(inputs: PlannerInputs, workload: str) -> PlannerInputs:
    """``workload`` alone on every node: what compile says of it does not depend on the others
    (which options exist, their predicted figures)."""
    return replace(inputs, workloads=[w for w in inputs.workloads if w.name == workload])
