"""Cold starts in the simulator: a node back from a failure serves only after its replicas'
cold start; failover to a warm standby is faster than to a cold one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gridplace.sim import ReplicaLimits, ReplicaSetup, SimInputs, SpeedSchedule, World, run
from gridplace.sim.coldstart import VRAM_RESUME_S, ColdStartReport, ColdStartSettings
from gridplace.sim.deploy import build_world
from gridplace.sim.replica import Status
from gridplace.sim.truth import GroundTruth, TruthSettings
from gridplace.specs import PlacementPlan, builtin_catalog
from tests.sim.fixtures import FakeSteps, arrivals, node, one_replica_world, plan, workload


def _restart_world(restart_s: float) -> World:
    base = one_replica_world(FakeSteps(), ReplicaLimits(kv_tokens=10**6))
    (replica,) = base.replicas
    return replace(
        base, replicas=(replace(replica, restart_s=restart_s),), outages={"n0": ((1.0, 5.0),)}
    )


def test_a_node_back_serves_after_its_cold_start() -> None:
    requests = arrivals([0.5, 6.0, 20.0], 10, 2)
    warm = run(_restart_world(0.0), requests, 60.0)
    cold = run(_restart_world(10.0), requests, 60.0)
    assert [Status(s) for s in warm.status] == [Status.DONE] * 3
    assert [Status(s) for s in cold.status] == [Status.DONE, Status.LOST, Status.DONE]
    report = ColdStartReport.of(cold)
    assert report.cold_starts == 1 and report.requests_during == 1
    assert report.recovery_s == pytest.approx((14.0,))  # down at 1, back at 5, ready at 15
    assert report.failover_s == ()  # a restart, not a failover


def _failover_world(standby_start_s: float) -> World:
    base = one_replica_world(FakeSteps(), ReplicaLimits(kv_tokens=10**6))
    (primary,) = base.replicas
    standby = ReplicaSetup(
        "s1", 0, "n1", SpeedSchedule(FakeSteps()), primary.limits, (0.0,), (0.0,),
        standby=True, start_s=standby_start_s,
    )  # fmt: skip
    return replace(base, replicas=(primary, standby), outages={"n0": ((1.0, 1e9),)}, detect_s=15.0)


def test_failing_over_to_a_warm_standby_is_faster_than_to_a_cold_one() -> None:
    requests = arrivals([0.5, *[2.0 + 5 * i for i in range(40)]], 10, 2)
    warm = run(_failover_world(2.0), requests, 300.0)
    cold = run(_failover_world(120.0), requests, 300.0)
    warm_report, cold_report = ColdStartReport.of(warm), ColdStartReport.of(cold)
    assert warm_report.recovery_s == pytest.approx((17.0,))  # 15 s to notice + 2 s
    assert cold_report.recovery_s == pytest.approx((135.0,))
    assert warm_report.failover_s == warm_report.recovery_s
    assert warm.total().attainment > cold.total().attainment
    assert warm_report.requests_during < cold_report.requests_during
    # Before the failure the standby takes nothing.
    assert warm.replica[0] == 0


def test_a_standby_whose_workload_loses_nothing_never_starts() -> None:
    world = replace(_failover_world(2.0), outages={"n1": ((1.0, 2.0),)})
    result = run(world, arrivals([0.5, 3.0], 10, 2), 60.0)
    assert ColdStartReport.of(result).cold_starts == 0
    assert result.replica.tolist() == [0, 0]


def _prewarm_plan(level: str) -> PlacementPlan:
    base = plan({"workload": "chat", "node": "a", "gpus": [0]})
    document = base.model_dump(by_alias=True, exclude_none=True, mode="json")
    document["spec"]["prewarm"] = [
        {"workload": "chat", "node": "b", "gpus": [0], "precision": "fp8", "level": level,
         "weightsGiB": 8.5, "costPerHour": 0.5 if level == "vram" else 0.0}
    ]  # fmt: skip
    return PlacementPlan.model_validate(document)


def test_standby_start_times_follow_what_the_node_holds() -> None:
    inputs = SimInputs([node("a"), node("b")], [workload()], builtin_catalog())
    truth = GroundTruth.build(inputs.nodes, inputs.catalog, 3600, 0, TruthSettings.ideal())
    starts = {}
    for label, level, prewarm in (
        ("vram", "vram", True), ("disk", "disk", True), ("cold", "disk", False)
    ):  # fmt: skip
        world = build_world(_prewarm_plan(level), inputs, truth, ColdStartSettings(prewarm=prewarm))
        primary, standby = world.replicas
        assert standby.standby and not primary.standby and primary.restart_s > 0
        starts[label] = standby.start_s
    assert starts["vram"] == VRAM_RESUME_S < starts["disk"] < starts["cold"]
    # Without cold starts the plan's standbys are not simulated at all.
    assert len(build_world(_prewarm_plan("disk"), inputs, truth).replicas) == 1
