"""The CP-SAT model's terms for pipeline options (``Option.stages``): what a pipeline takes from
the pools its stages are on, the ``pipeline-nodes`` family, and its node losses for failover.

A pipeline option is one concrete node tuple, so its replica count is 0 or 1 (``x[p]``). A
stage takes every GPU of its pool on its node: in that pool's rows a chosen pipeline removes
the node (``gpu-count``, ``gpu-sharing``), its VRAM (``vram-pool``) and adds its stage's draw
(``thermal-power``); the families keep their ids. Spread counts a pipeline in every stage's
domain; budget and the objectives read its cost (the sum of its stage nodes' GPUs), like any
option's. Must not: decide which pipelines exist (``pipeline_options``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from gridplace.planner.core import RATE_SCALE, power_draw_watts
from gridplace.planner.problem import Option, Problem
from gridplace.planner.rules import implements

if TYPE_CHECKING:
    from gridplace.planner.model import PlacementModel

VRAM_SCALE = 100  # GiB -> integer 1/100 GiB, as the model's vram-pool rows


def options_by_pool(problem: Problem) -> dict[int, list[Option]]:
    """Single-node options per pool (the pool families' rows), and every pool a pipeline has a
    stage on (its terms join those rows)."""
    by_pool: dict[int, list[Option]] = defaultdict(list, {p: [] for p in problem.pipeline_pools})
    for option in problem.options:
        if not option.stages:
            by_pool[option.pool].append(option)
    return dict(sorted(by_pool.items()))


def _pipelines(problem: Problem) -> tuple[Option, ...]:
    return problem.pipeline_options


def nodes_taken(pm: PlacementModel, pool: int) -> cp_model.LinearExpr:
    """Nodes of ``pool`` that chosen pipelines take whole."""
    return cp_model.LinearExpr.sum(
        [pm.x[o.index] * sum(s.pool == pool for s in o.stages) for o in _pipelines(pm.problem)]
    )


def stage_vram(pm: PlacementModel, pool: int) -> cp_model.LinearExpr:
    """VRAM (1/100 GiB) chosen pipelines book on ``pool``."""
    return cp_model.LinearExpr.sum(
        [
            pm.x[o.index] * math.ceil(s.vram_gib * VRAM_SCALE) * len(s.gpus)
            for o in _pipelines(pm.problem)
            for s in o.stages
            if s.pool == pool
        ]
    )


def stage_draw(pm: PlacementModel, pool: int) -> cp_model.LinearExpr:
    """Sustained watts chosen pipelines draw on ``pool``."""
    return cp_model.LinearExpr.sum(
        [
            pm.x[o.index] * power_draw_watts(s.power_watts)
            for o in _pipelines(pm.problem)
            for s in o.stages
            if s.pool == pool
        ]
    )


@implements("pipeline-nodes")
def pipeline_nodes(pm: PlacementModel) -> None:
    """Hard: a node holds at most one pipeline stage (pipelines over a shared node exclude each
    other; a stage takes its pool's GPUs on the node whole)."""
    by_node: dict[str, list[Option]] = defaultdict(list)
    for option in _pipelines(pm.problem):
        for stage in option.stages:
            by_node[stage.node].append(option)
    for node, options in sorted(by_node.items()):
        if len(options) > 1:
            pm.add(
                "pipeline-nodes",
                f"node={node}",
                cp_model.LinearExpr.sum([pm.x[o.index] for o in options]) <= 1,
            )


def pipeline_losses(
    pm: PlacementModel,
    workload: int,
    group_losses: dict[tuple[str, ...], tuple[cp_model.LinearExpr, int]],
) -> list[tuple[str, cp_model.LinearExpr, int]]:
    """Failover: losing a node that may fail loses every pipeline with a stage on it, whole,
    besides what its node group loses of the single-node replicas (``group_losses``: node names
    of a group -> its loss expression and bound). One (label, loss, bound) per such node."""
    problem = pm.problem
    demand = problem.workloads[workload]
    on_node: dict[str, list[Option]] = defaultdict(list)
    group_of: dict[str, tuple[str, ...]] = {}
    for option in problem.options_of(workload):
        if not option.stages or not problem.carries_load(option):
            continue
        for stage in option.stages:
            pool = problem.pools[stage.pool]
            if demand.may_fail(pool.reliability):
                on_node[stage.node].append(option)
                group_of[stage.node] = pool.node_names
    losses = []
    for node, options in sorted(on_node.items()):
        base, most = group_losses.get(group_of[node], (cp_model.LinearExpr.sum([]), 0))
        capacity = [math.floor(o.capacity_rps * RATE_SCALE) for o in options]
        lost = base + cp_model.LinearExpr.sum(
            [pm.x[o.index] * c for o, c in zip(options, capacity, strict=True)]
        )
        losses.append((f"pipeline-node={node}", lost, most + sum(capacity)))
    return losses
