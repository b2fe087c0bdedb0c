"""Pipelines as options of the placement (``pipeline_options``, ``pipeline_model``): enumerated
only when a workload allows them, placed when they are the only way or cheaper, never when one
node is as good; a stage's node loss loses the pipeline; the oracle checks stages."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from ortools.sat.python import cp_model

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.decompose import split as split_parts
from gridplace.planner.model import build_model
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import PlanResult
from gridplace.planner.problem import Problem
from gridplace.specs import Assignment, InferenceWorkload, Node, PlacementPlan, builtin_catalog
from gridplace.specs.plan import PipelineStage
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, run, workload

PIPELINE = {"maxStages": 4}


def big(name: str = "w", **kw: Any) -> InferenceWorkload:
    """70B at 4-bit: ~37 GiB of weights, more than any 24 GB card holds."""
    kw.setdefault("itl_ms", 120)
    kw.setdefault("rps", 0.2)
    return workload(name, model="llama-3.1-70b", precisions=("int4",), **kw)


def compiled(nodes: list[Node], workloads: list[InferenceWorkload]) -> Problem:
    latency = FakeLatency({n.name: n.spec.region for n in nodes})
    return compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog()), fake_predictor, latency
    )


def pipelines(result: PlanResult) -> list[Assignment]:
    return [a for a in result.plan.spec.assignments if a.stages]


def test_a_model_no_node_holds_is_placed_as_a_pipeline() -> None:
    nodes = [node(f"n{i}") for i in range(6)]
    refused = run(nodes, [big()])
    assert refused.plan.status is not None and refused.plan.status.unplaced
    result = run(nodes, [big(pipeline=PIPELINE)])
    assert result.plan.status is not None and result.plan.status.unplaced == []
    placed = pipelines(result)
    assert placed and len(placed) == len(result.plan.spec.assignments)
    for a in placed:
        assert a.stages is not None and a.stages[0].node == a.node
        assert a.stages[-1].layers[1] == 80
        assert len({s.node for s in a.stages}) == len(a.stages) >= 2
    used = [s.node for a in placed for s in a.stages or []]
    assert len(used) == len(set(used))  # a node holds one stage


def test_a_model_that_fits_one_node_is_not_split() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    small = workload("w", rps=2.0, pipeline=PIPELINE)
    problem = compiled(nodes, [small])
    assert problem.options and not any(o.stages for o in problem.options)
    result = run(nodes, [small])
    assert result.plan.status is not None and result.plan.status.unplaced == []
    assert pipelines(result) == []


def test_a_pipeline_is_an_option_only_for_workloads_that_allow_it() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    assert not compiled(nodes, [big()]).options
    allowed = compiled(nodes, [big(pipeline=PIPELINE)])
    assert allowed.options and all(o.stages for o in allowed.options)
    option = allowed.options[0]
    assert option.cost_per_hour == pytest.approx(0.5 * len(option.stages))
    assert all(s.vram_gib <= 24.0 for s in option.stages)


def test_losing_a_stage_node_loses_the_pipeline() -> None:
    flaky = {"reliability": 0.95}
    n_plus_1 = big(rps=0.15, pipeline=PIPELINE, redundancy={"nodeFailures": 1})
    four = run([node(f"n{i}", **flaky) for i in range(4)], [n_plus_1])
    assert four.plan.status is not None
    assert len(pipelines(four)) == 2 and four.plan.status.warnings == []
    [coverage] = four.plan.status.workloads
    per_pipeline = coverage.capacity_rps / 2
    assert coverage.capacity_after_node_loss_rps == pytest.approx(per_pipeline, abs=1e-3)
    three = run([node(f"n{i}", **flaky) for i in range(3)], [n_plus_1])
    assert three.plan.status is not None and len(pipelines(three)) == 1
    [warning] = three.plan.status.warnings
    assert warning.startswith("failover: w:")


def test_pipeline_nodes_lets_disjoint_pipelines_be_and_shared_ones_not() -> None:
    problem = compiled([node(f"n{i}") for i in range(4)], [big(pipeline=PIPELINE)])

    def nodes(option: Any) -> set[str]:
        return {s.node for s in option.stages}

    pairs = [(a, b) for a in problem.options for b in problem.options if a.index < b.index]
    disjoint = next((a, b) for a, b in pairs if not nodes(a) & nodes(b))
    first, second = disjoint
    shared = dataclasses.replace(second, stages=(first.stages[0], *second.stages[1:]))

    def feasible(options: tuple[Any, ...]) -> bool:
        pm = build_model(
            dataclasses.replace(problem, options=options), families=("pipeline-nodes",)
        )
        for option in options:
            pm.model.add(pm.x[option.index] >= 1)
        pm.model.add(pm.literal("pipeline-nodes") == 1)
        return cp_model.CpSolver().solve(pm.model) in (cp_model.OPTIMAL, cp_model.FEASIBLE)

    assert feasible((first, second))
    assert not feasible((first, shared))


def test_a_pipeline_stage_takes_its_node_from_single_node_replicas() -> None:
    # Two nodes: one pipeline of 70B holds both, so the 8B model finds no GPU left.
    nodes = [node("a"), node("b")]
    both = [big(rps=0.1, pipeline=PIPELINE, priority=1000), workload("v", rps=0.2)]
    result = run(nodes, both)
    assert result.plan.status is not None
    assert len(pipelines(result)) == 1
    assert [u.workload for u in result.plan.status.unplaced] == ["v"]


def test_a_replan_keeps_its_pipelines() -> None:
    nodes = [node(f"n{i}") for i in range(6)]
    first = run(nodes, [big(pipeline=PIPELINE)])
    again = run(nodes, [big(pipeline=PIPELINE)], previous=first.plan)
    assert again.plan.spec.assignments == first.plan.spec.assignments
    assert all(r.option is not None for r in again.problem.previous)


def _with_stages(plan: PlacementPlan, stages: list[PipelineStage]) -> PlacementPlan:
    [first, *rest] = plan.spec.assignments
    moved = first.model_copy(update={"stages": stages})
    return plan.model_copy(
        update={"spec": plan.spec.model_copy(update={"assignments": [moved, *rest]})}
    )


def test_the_oracle_checks_stages() -> None:
    nodes = [node(f"n{i}") for i in range(4)]
    result = run(nodes, [big(pipeline=PIPELINE)])
    plan, problem = result.plan, result.problem
    [a, *_] = plan.spec.assignments
    assert a.stages is not None
    (s0, s1) = a.stages[0], a.stages[-1]
    short = [s0, s1.model_copy(update={"layers": (s1.layers[0], 79)})]
    assert any(
        "stages cover layers up to 79 of 80" in v
        for v in validate_plan(problem, _with_stages(plan, short))
    )
    lopsided = [
        s0.model_copy(update={"layers": (0, 70)}),
        s1.model_copy(update={"layers": (70, 80)}),
    ]
    assert any(
        "GiB per GPU > 24" in v for v in validate_plan(problem, _with_stages(plan, lopsided))
    )
    elsewhere = [s0, s1.model_copy(update={"node": "nowhere"})]
    assert any("not free GPUs" in v for v in validate_plan(problem, _with_stages(plan, elsewhere)))
    doubled = plan.model_copy(
        update={
            "spec": plan.spec.model_copy(
                update={"assignments": [*plan.spec.assignments, plan.spec.assignments[0]]}
            )
        }
    )
    assert any(v.startswith("gpu-sharing") for v in validate_plan(problem, doubled))


def test_a_pipeline_refused_for_itl_names_the_network() -> None:
    regions = ["eu-west", "us-east", "ap-south"]
    nodes = [node(f"n{i}", region=r) for i, r in enumerate(regions)]
    result = run(nodes, [big(itl_ms=80, pipeline=PIPELINE)])
    assert result.plan.status is not None
    [unplaced] = result.plan.status.unplaced
    text = " ".join(unplaced.reasons)
    assert "[pipeline-itl]" in text
    assert re.search(r"stages over [a-z-]+, [a-z-]+ need \d+ ms of network per token", text)
    assert "> 80 ms ITL" in text and text.startswith("0/3 nodes can serve w: 3 pipeline ITL")


def test_a_pipeline_links_every_stage_pool_when_the_problem_splits() -> None:
    # v may use only b (trust); w's pipeline starts on a and ends on b: one part, not two that
    # both take b.
    nodes = [node("a", price=0.5), node("b", price=0.6, claims="probed")]
    split = big(rps=0.1, pipeline=PIPELINE, priority=1000)
    trusted = workload("v", rps=0.2, trust={"minClaims": "probed"})
    problem = compiled(nodes, [split, trusted])
    [pipeline] = [o for o in problem.options if o.stages]
    assert [s.node for s in pipeline.stages] == ["a", "b"]
    assert len(split_parts(problem)) == 1
    result = run(nodes, [split, trusted])
    assert result.plan.status is not None
    assert [u.workload for u in result.plan.status.unplaced] == ["v"]


def test_options_are_numbered_in_order_with_several_pipelines() -> None:
    nodes = [node(f"n{i}", region=r) for i, r in enumerate(["eu-west"] * 6 + ["us-east"] * 4)]
    problem = compiled(nodes, [workload("small"), big(pipeline=PIPELINE), workload("after")])
    assert sum(1 for o in problem.options if o.stages) >= 2
    assert [o.index for o in problem.options] == list(range(len(problem.options)))
