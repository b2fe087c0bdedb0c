"""The previous plan's replicas matched to today's compiled options (a replan keeps what it
can), or released when their node or workload is gone. A pipeline replica matches the pipeline
option over the same stages; a replica on one node the option of its pool, precision, TP degree
and GPU share. Also the nodes that hold a workload's weights (``warm_nodes``)."""

from __future__ import annotations

from gridplace.planner.ports import PlannerInputs
from gridplace.planner.problem import GpuPool, Option, PreviousReplica, StagePart, WorkloadDemand
from gridplace.specs import Assignment, Precision


def previous_keys(
    inputs: PlannerInputs, pools: list[GpuPool]
) -> set[tuple[int, int, Precision, int, int]]:
    """(workload, pool, precision, tp, share) of every replica in the previous plan."""
    if inputs.previous is None:
        return set()
    workload_index = {w.name: i for i, w in enumerate(inputs.workloads)}
    pool_of = {(n, g): p.index for p in pools for n in p.node_names for g in p.gpu_indices}
    keys: set[tuple[int, int, Precision, int, int]] = set()
    for a in inputs.previous.spec.assignments:
        if a.stages:  # a pipeline is its own option (``previous_replicas``), not a pool's row
            continue
        pool = pool_of.get((a.node, a.gpus[0]))
        if pool is not None and a.workload in workload_index:
            keys.add(
                (workload_index[a.workload], pool, a.precision, a.tensor_parallel, a.gpu_share)
            )
    return keys


def previous_replicas(
    inputs: PlannerInputs,
    pools: list[GpuPool],
    options: list[Option],
    workloads: list[WorkloadDemand],
) -> tuple[list[PreviousReplica], list[str]]:
    """Match the previous plan's replicas to today's options; list those whose node is gone."""
    if inputs.previous is None:
        return [], []
    healthy = {n.name: n for n in inputs.nodes if n.healthy}
    workload_index = {w.name: w.index for w in workloads}
    pool_of: dict[tuple[str, int], GpuPool] = {}
    for pool in pools:
        for node in pool.node_names:
            for gpu in pool.gpu_indices:
                pool_of[(node, gpu)] = pool
    option_of = {
        (o.workload, o.pool, o.precision, o.tensor_parallel, o.share): o.index
        for o in options
        if not o.stages
    }
    pipeline_of = {_pipeline_key(o.workload, o.precision, o.stages): o.index for o in options}
    kept: list[PreviousReplica] = []
    released: list[str] = []
    for assignment in inputs.previous.spec.assignments:
        label = f"{assignment.workload} on {assignment.node} gpus {assignment.gpus}"
        stage_nodes = [s.node for s in assignment.stages or []]
        if any(n not in healthy for n in [assignment.node, *stage_nodes]):
            released.append(f"{label}: node gone or unhealthy")
            continue
        if assignment.workload not in workload_index:
            released.append(f"{label}: workload no longer requested")
            continue
        found = pool_of.get((assignment.node, assignment.gpus[0]))
        w = workload_index[assignment.workload]
        share = assignment.gpu_share
        option = None
        if assignment.stages:
            option = pipeline_of.get(_pipeline_key(w, assignment.precision, assignment))
        elif found is not None:
            option = option_of.get(
                (w, found.index, assignment.precision, assignment.tensor_parallel, share)
            )
        kept.append(
            PreviousReplica(
                workload=w,
                node=assignment.node,
                gpus=tuple(assignment.gpus),
                precision=assignment.precision,
                tensor_parallel=assignment.tensor_parallel,
                option=option,
                pinned=assignment.pinned,
            )
        )
    return kept, released


def _pipeline_key(
    workload: int, precision: Precision, stages: tuple[StagePart, ...] | Assignment
) -> tuple[object, ...]:
    """A pipeline's identity: workload, precision and (node, first, last) of every stage."""
    if isinstance(stages, Assignment):
        parts = tuple((s.node, *s.layers) for s in stages.stages or [])
    else:
        parts = tuple((s.node, s.first, s.last) for s in stages)
    return (workload, precision, parts)


def warm_nodes(
    inputs: PlannerInputs, workloads: list[WorkloadDemand]
) -> frozenset[tuple[int, str]]:
    """(workload, node) where a healthy node holds a workload's weights: the previous plan's
    standbys and ``inputs.warm`` (what agents reported)."""
    healthy = {n.name for n in inputs.nodes if n.healthy}
    index = {w.name: w.index for w in workloads}
    standbys = inputs.previous.spec.prewarm if inputs.previous is not None else []
    held = [(p.workload, p.node) for p in standbys] + list(inputs.warm)
    return frozenset((index[w], n) for w, n in held if w in index and n in healthy)
