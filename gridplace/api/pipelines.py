"""Pipeline replicas between their stages' agents: who holds which stage, whether a node may
report a stage, and every stage's phase as the API judges it now.

Owns: the rules the agents coordinate by. A stage's phase is what its node last reported in its
state report (``StageState``), unless that node is unhealthy, silent past the heartbeat grace
period or deregistered (then ``lost``: its report is not believed), or has not reported the stage
(``pending``). The first stage's agent starts the replica's server once every later stage is
``ready`` and stops it when one is ``failed`` or ``lost``; the replan on a lost node covers stage
nodes (``replan.detect_changes``).
Must not: decide placement or write anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gridplace.api.grid import NodeView
from gridplace.api.models import (
    PipelineStageRole,
    PipelineStageStatus,
    PipelineStatus,
    StagePhase,
    StageState,
)
from gridplace.api.store import PlanAssignmentIndex, StateRecord
from gridplace.specs import Assignment


def later_stages(index: PlanAssignmentIndex, node: str) -> list[PipelineStageRole]:
    """The stages after the first that ``node`` holds (its assignment pull lists them)."""
    roles = []
    for key, stage in index.stages_by_node.get(node, []):
        if stage >= 1:
            assignment = Assignment.model_validate(index.pipelines[key].assignment)
            roles.append(PipelineStageRole(pipeline=key, stage=stage, assignment=assignment))
    return roles


def foreign_stages(
    index: PlanAssignmentIndex, node: str, stages: Iterable[StageState]
) -> list[str]:
    """Reported stages the latest plan gives another node (a stage of a pipeline no longer in the
    plan is not checked: an agent may report a stage it is still stopping)."""
    foreign = []
    for state in stages:
        entry = index.pipelines.get(state.pipeline)
        if entry is None:
            continue
        holder = entry.stage_nodes[state.stage] if state.stage < len(entry.stage_nodes) else None
        if holder != node:
            where = f"node {holder!r}" if holder else f"no node (it has {len(entry.stage_nodes)})"
            foreign.append(f"{state.pipeline} stage {state.stage} is held by {where}")
    return foreign


def _lost(view: NodeView | None) -> str | None:
    if view is None:
        return "its node is not registered"
    if view.silent and not view.healthy:
        return f"its node has been silent for {view.silent_s:.0f}s"
    if not view.healthy:
        why = view.node.status.message if view.node.status else None
        return "its node is unhealthy" + (f": {why}" if why else "")
    return None


def pipeline_statuses(
    index: PlanAssignmentIndex,
    node: str,
    view_of: Callable[[str], NodeView | None],
    state_of: Callable[[str], StateRecord | None],
) -> list[PipelineStatus]:
    """Every pipeline ``node`` holds a stage of, each stage judged as the module says."""
    out = []
    views: dict[str, NodeView | None] = {}
    reports: dict[str, dict[tuple[str, int], StageState]] = {}
    for key, _ in index.stages_by_node.get(node, []):
        entry = index.pipelines[key]
        stages = []
        for stage, holder in enumerate(entry.stage_nodes):
            if holder not in views:
                views[holder] = view_of(holder)
            lost = _lost(views[holder])
            if lost is not None:
                stages.append(
                    PipelineStageStatus(
                        stage=stage, node=holder, phase=StagePhase.LOST, message=lost
                    )
                )
                continue
            if holder not in reports:
                reports[holder] = _reported_stages(state_of(holder))
            reported = reports[holder].get((key, stage))
            stages.append(
                PipelineStageStatus(stage=stage, node=holder, phase=StagePhase.PENDING)
                if reported is None
                else PipelineStageStatus(
                    stage=stage,
                    node=holder,
                    phase=StagePhase(reported.phase.value),
                    address=reported.address,
                    message=reported.message,
                )
            )
        out.append(
            PipelineStatus(pipeline=key, workload=str(entry.assignment["workload"]), stages=stages)
        )
    return out


def _reported_stages(record: StateRecord | None) -> dict[tuple[str, int], StageState]:
    if record is None:
        return {}
    states = (StageState.model_validate(s) for s in record.report.get("stages", []))
    return {(s.pipeline, s.stage): s for s in states}
