"""CP-SAT and an independent MILP (HiGHS, ``bench/milp.py``) agree on the optimum of small models.

The MILP restates every row from the compiled ``Problem`` without using the CP-SAT model, so
agreement on the cost optimum is evidence that both state the same model (failover included).
"""

from __future__ import annotations

import pytest

from gridplace.planner.compile import PlannerInputs, compile_problem
from gridplace.planner.solve import SolverSettings, solve_problem
from gridplace.specs import InferenceWorkload, Node, builtin_catalog
from tests.bench_scripts import load_bench
from tests.planner.fakes import FakeLatency, fake_predictor
from tests.planner.grids import node, workload

pytest.importorskip("highspy")


def _grid() -> list[Node]:
    return [
        node("a", reliability=0.95, price=0.4),
        node("b", reliability=0.95, price=0.45),
        node("c", gpu="rtx-3090", count=2, reliability=0.93, price=0.6, provider="x"),
        node("d", gpu="rtx-3090", count=2, reliability=0.93, price=0.6, provider="x"),
        node("e", gpu="h100-sxm", count=2, reliability=0.995, price=5.0, interconnect="nvlink"),
    ]


CASES = {
    "failover": [
        workload("w", rps=2.0, redundancy={"nodeFailures": 1}),
        workload("v", model="phi-3-mini", rps=3.0, redundancy={"nodeFailures": 1}),
    ],
    "no failover": [workload("w", rps=2.0), workload("v", model="phi-3-mini", rps=3.0)],
    "strict": [
        workload("w", rps=4.0, redundancy={"nodeFailures": 1, "exemptReliability": 1.0}),
        workload("v", model="qwen2.5-32b", precisions=("int4",), rps=0.5, itl_ms=200),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpsat_and_milp_find_the_same_optimum(name: str) -> None:
    workloads: list[InferenceWorkload] = CASES[name]
    nodes = _grid()
    problem = compile_problem(
        PlannerInputs(nodes, workloads, builtin_catalog(), headroom=0.1),
        fake_predictor,
        FakeLatency({n.name: n.spec.region for n in nodes}),
    )
    solution = solve_problem(problem, SolverSettings(time_limit_s=20, stages=2))
    cost = solution.stage("cost")
    assert cost is not None and cost.status == "OPTIMAL"
    milp = load_bench("milp").solve_milp(problem, time_limit_s=20)
    assert milp.status == "Optimal"
    assert cost.objective / 10_000 == pytest.approx(milp.cost_per_hour, abs=1e-3)
