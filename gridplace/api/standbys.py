"""Which of the latest plan's warm standbys a replan counts as warm: those their nodes' agents
have not reported as skipped (no room in the cache), failed or unavailable. A standby not
reported on yet keeps the plan's word (its agent may still be fetching it).

Owns: that filter, applied to the plan a replan starts from (the planner prefers warm nodes for
replicas it adds: ``planner.moves``). Must not: store anything.
"""

from __future__ import annotations

from collections.abc import Callable

from gridplace.api.store.records import StateRecord
from gridplace.specs import PlacementPlan

COLD = frozenset({"skipped", "failed", "unavailable"})  # StandbyPhase values: weights not held


def held_standbys(
    plan: PlacementPlan, state_of: Callable[[str], StateRecord | None]
) -> PlacementPlan:
    """``plan`` with only the standbys its nodes may still hold."""
    if not plan.spec.prewarm:
        return plan
    reported: dict[tuple[str, str, str], str] = {}
    for node in sorted({p.node for p in plan.spec.prewarm}):
        record = state_of(node)
        for item in record.report.get("standbys", []) if record else []:
            reported[(node, item["workload"], item["precision"])] = item["state"]
    kept = [
        p
        for p in plan.spec.prewarm
        if reported.get((p.node, p.workload, p.precision.value)) not in COLD
    ]
    return plan.model_copy(update={"spec": plan.spec.model_copy(update={"prewarm": kept})})
