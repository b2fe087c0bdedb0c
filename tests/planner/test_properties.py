"""Hypothesis: every plan any strategy returns passes the solver-free ``validate_plan`` oracle."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridplace.planner.compile import PlannerInputs
from gridplace.planner.oracle import validate_plan
from gridplace.planner.planning import Strategy, make_plan
from gridplace.planner.solve import SolverSettings
from gridplace.specs import builtin_catalog
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

GPUS = ["rtx-3090", "rtx-4090", "l40s", "a100-sxm-80gb", "h100-sxm", "mi300x"]
MODELS = ["phi-3-mini", "llama-3.1-8b", "qwen2.5-14b", "qwen2.5-32b", "llama-3.1-70b"]
REGIONS = ["eu-west", "us-east", "ap-northeast"]

node_specs = st.tuples(
    st.sampled_from(GPUS),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(REGIONS),
    st.sampled_from(["p1", "p2", "p3"]),
    st.sampled_from([0.0, 0.1, 0.3]),
)
workload_specs = st.tuples(
    st.sampled_from(MODELS),
    st.lists(st.sampled_from(["bf16", "fp8", "int4"]), min_size=1, max_size=3, unique=True),
    st.floats(min_value=0.2, max_value=12),
    st.sampled_from([(0, 4), (1, 8), (2, 3)]),
    st.sampled_from([None, ("provider", 1), ("region", 2)]),
    st.sampled_from([300.0, 1500.0, 5000.0]),
    st.sampled_from([30.0, 60.0, 150.0]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.lists(node_specs, min_size=1, max_size=8),
    workloads=st.lists(workload_specs, min_size=1, max_size=4),
    budget=st.sampled_from([None, 5.0, 50.0]),
    strategy=st.sampled_from(list(Strategy)),
)
def test_every_returned_plan_is_valid(
    nodes: list[tuple[str, int, str, str, float]],
    workloads: list[
        tuple[str, list[str], float, tuple[int, int], tuple[str, int] | None, float, float]
    ],
    budget: float | None,
    strategy: Strategy,
) -> None:
    grid = [
        node(f"n{i}", gpu=g, count=c, region=r, provider=p, throttle=t, price=0.3 * c)
        for i, (g, c, r, p, t) in enumerate(nodes)
    ]
    demands = [
        workload(
            f"w{i}",
            model=m,
            precisions=tuple(ps),
            rps=rps,
            replicas=reps,
            spread=spread,
            ttft_ms=ttft,
            itl_ms=itl,
            sources=(("eu-west", 0.5), ("us-east", 0.5)),
        )
        for i, (m, ps, rps, reps, spread, ttft, itl) in enumerate(workloads)
    ]
    latency = FakeLatency(
        {n.name: n.spec.region for n in grid},
        table={("eu-west", "us-east"): 80.0, ("eu-west", "ap-northeast"): 230.0},
        default_ms=160.0,
    )
    result = make_plan(
        PlannerInputs(grid, demands, builtin_catalog(), budget_per_hour=budget),
        fake_predictor,
        latency,
        strategy,
        SolverSettings(time_limit_s=2, num_workers=1),
    )
    if strategy is Strategy.CAPACITY_ONLY:
        # The baseline ignores latency targets, prices and thermal budgets by design: judge it
        # on packing and bounds only.
        violations = [
            v
            for v in validate_plan(result.problem, result.plan)
            if not v.startswith(("budget", "thermal-power"))
        ]
    else:
        violations = validate_plan(result.problem, result.plan)
    assert violations == []
    assert result.plan.status is not None
    placed = {a.workload for a in result.plan.spec.assignments}
    for coverage in result.plan.status.workloads:
        if not coverage.slo_met:
            assert coverage.name in {u.workload for u in result.plan.status.unplaced}
        if coverage.replicas:
            assert coverage.name in placed
