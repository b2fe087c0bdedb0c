"""The solver-free oracle rejects what breaks a rule (it passes every solver result elsewhere)."""

from __future__ import annotations

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.oracle import validate_plan
from gridplace.specs import builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, run, workload


def test_a_plan_past_a_throttled_pools_power_budget_is_rejected() -> None:
    workloads = [workload("w", replicas=(2, 2))]
    cool = run([node("a", count=2, throttle=0.0)], workloads)
    assert len(cool.plan.spec.assignments) == 2
    hot = [node("a", count=2, throttle=0.5)]  # the same node, now able to sustain one GPU
    problem = compile_problem(
        PlannerInputs(hot, workloads, builtin_catalog(), headroom=0.1),
        fake_predictor,
        FakeLatency({"a": "eu-west"}, default_ms=200),
    )
    violations = validate_plan(problem, cool.plan)
    assert any(v.startswith("thermal-power:") for v in violations), violations
