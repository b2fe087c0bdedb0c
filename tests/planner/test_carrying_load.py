"""Replicas that carry load (replicas.minShare): only they count toward replicas.min, spread and
failover, and spread limits each domain's capacity, not only its count."""

from __future__ import annotations

from collections import defaultdict

import pytest
from pydantic import ValidationError

from gridplace.planner.deaggregate import deaggregate
from gridplace.planner.oracle import validate_plan
from gridplace.planner.output import build_plan
from gridplace.planner.planning import PlanResult
from gridplace.specs import InferenceWorkload, Node
from gridplace.specs.plan import SolverSummary
from gridplace.specs.workload import ReplicaBounds
from tests.planner.grids import node, run, workload

# One H100: a half-GPU replica of llama-3.1-8b serves 10.0 req/s on the fake predictor, a
# quarter-GPU one 2.4; the target is 10 x 1.1 = 11 req/s, so a quarter of it is 2.75.
H100 = [node("big", gpu="h100-sxm", price=2.0)]


def capacities(result: PlanResult) -> list[float]:
    return sorted(a.predicted.capacity_rps for a in result.plan.spec.assignments if a.predicted)


def with_min_share(share: float) -> InferenceWorkload:
    base = workload("w", rps=10, replicas=(2, 4))
    replicas = base.spec.replicas.model_copy(update={"min_share": share})
    return base.model_copy(update={"spec": base.spec.model_copy(update={"replicas": replicas})})


def test_a_token_replica_does_not_count_toward_replicas_min() -> None:
    result = run(H100, [workload("w", rps=10, replicas=(2, 4))])
    assert result.problem.load_rps(0) == pytest.approx(2.75)
    # A half GPU + a quarter GPU (2.4 req/s) covered 11 req/s with "2 replicas" before.
    assert len(capacities(result)) >= 2
    assert all(c >= 2.75 for c in capacities(result)), capacities(result)


def test_min_share_is_set_per_workload() -> None:
    token = run(H100, [with_min_share(0.0)])
    assert min(capacities(token)) < 2.75  # the cheaper plan, when the workload allows it
    assert token.plan.status is not None and token.plan.status.unplaced == []


def test_min_share_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValidationError, match="minShare"):
        ReplicaBounds.model_validate({"min": 1, "max": 2, "minShare": 1.5})


def test_spread_counts_replicas_that_carry_load_in_another_domain() -> None:
    nodes = [node("a", gpu="h100-sxm", provider="x"), node("b", gpu="h100-sxm", provider="y")]
    result = run(nodes, [workload("w", rps=10, replicas=(2, 4), spread=("provider", 1))])
    by_node = {
        a.node: a.predicted.capacity_rps for a in result.plan.spec.assignments if a.predicted
    }
    # Before, a quarter GPU (2.4 req/s) on the second provider satisfied spread and min.
    assert sorted(by_node) == ["a", "b"]
    assert min(by_node.values()) >= 2.75


PHI = workload("w", model="phi-3-mini", rps=40, replicas=(2, 16), spread=("provider", 1))


def three_providers() -> list[Node]:
    return [
        node(f"{provider}{i}", provider=provider, price=price)
        for provider, price in (("x", 0.3), ("y", 0.6), ("z", 0.9))
        for i in range(6)
    ]


def test_spread_limits_a_domains_capacity() -> None:
    # min 2 > maxPerDomain 1: a provider holds at most 1/2 of the 44 req/s target. Half-GPU
    # replicas (2.9 req/s) do not carry load (a quarter of the target is 11), so the count
    # does not stop the cheap provider from taking them: the capacity limit does.
    result = run(three_providers(), [PHI])
    assert result.problem.spread_limit_rps(0) == pytest.approx(22.0)
    per_provider: dict[str, float] = defaultdict(float)
    for a in result.plan.spec.assignments:
        assert a.predicted is not None
        per_provider[a.node[0]] += a.predicted.capacity_rps
    assert max(per_provider.values()) <= 22.0
    assert per_provider["x"] > 12.3  # more than one whole-GPU replica: small ones are uncounted


def test_the_oracle_rejects_a_domain_over_its_capacity_limit() -> None:
    result = run(three_providers(), [PHI])
    problem = result.problem
    x = next(p for p in problem.pools if p.provider == "x")
    whole, half = sorted((o for o in problem.options if o.pool == x.index), key=lambda o: o.share)
    counts = {whole.index: 1, half.index: 5}  # 12.2 + 5 x 2.9 = 26.7 req/s > 22 on provider x
    placements, _ = deaggregate(problem, counts)
    plan = build_plan(problem, placements, SolverSummary(status="test", wall_seconds=0.0))
    assert any(v.startswith("spread: w has 26.") for v in validate_plan(problem, plan))


def test_a_workload_short_of_replicas_that_carry_load_says_so() -> None:
    # One H100 holds two half-GPU replicas that carry load; quarters (2.4 < 2.75) do not count.
    result = run(H100, [workload("w", rps=10, replicas=(3, 4))])
    assert result.plan.status is not None
    [unplaced] = result.plan.status.unplaced
    assert "2 replicas carry load (>= 2.75 req/s each, replicas.minShare) < replicas.min 3" in (
        unplaced.reasons
    )


def test_a_workload_with_no_replica_at_all_is_not_told_about_replicas_min() -> None:
    # A 405B model at bf16 fits nowhere: the reasons say why; "0 replicas carry load" is noise.
    result = run(H100, [workload("w", model="llama-3.1-405b", precisions=("bf16",), rps=1)])
    assert result.plan.status is not None
    [unplaced] = result.plan.status.unplaced
    assert unplaced.reasons
    assert not any("replicas carry load" in r for r in unplaced.reasons), unplaced.reasons
