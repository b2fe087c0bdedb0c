"""Plans with pipeline replicas built by hand and stored as the latest generation (the planner's
pipelines are another issue's work): what the API and agent pipeline tests run against."""

from __future__ import annotations

from typing import Any

from gridplace.api.store import NewPlan, NodeBasis, Store
from gridplace.specs import PlacementPlan


def pipeline(
    workload: str, nodes: list[str], layers: list[int], precision: str = "int4"
) -> dict[str, Any]:
    """A pipeline assignment: stage i on GPU 0 of ``nodes[i]`` with ``layers[i]`` layers."""
    stages, first = [], 0
    for node, count in zip(nodes, layers, strict=True):
        stages.append({"node": node, "gpus": [0], "layers": [first, first + count]})
        first += count
    return {
        "workload": workload,
        "node": nodes[0],
        "gpus": [0],
        "precision": precision,
        "stages": stages,
    }


def store_plan(store: Store, assignments: list[dict[str, Any]], now: Any) -> int:
    """Store ``assignments`` as the next generation; returns it."""
    generation = store.latest_generation() + 1
    plan = PlacementPlan.model_validate(
        {
            "metadata": {"name": f"pipelines-{generation}", "generation": generation},
            "spec": {"assignments": assignments},
            "status": {"workloads": [], "unplaced": []},
        }
    )
    nodes = {s["node"] for a in assignments for s in a.get("stages") or [a]}
    store.add_plan(
        NewPlan(
            plan=plan,
            base_generation=generation - 1,
            trigger="submitted",
            reasons=[],
            inputs=[],
            options={},
            basis={n: NodeBasis(healthy=True, throttle_ratio=0.0) for n in nodes},
            explanation=[],
            compile_s=0.0,
            solve_s=0.0,
        ),
        now,
    )
    return generation
