"""The reconcile step against an in-memory runtime: idempotence, make before break and drain
ordering, deadlines with backoff, crash recovery, and the report the API accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridplace.api.models import NodeStateReport
from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.reconcile import Reconciler
from gridplace.executor.state import Phase, ReplicaRecord, StateFile
from tests.executor.fakes import Clock, FakeRuntime, config, launcher, ports


def spec(workload: str, gpus: tuple[int, ...] = (0,), precision: str = "fp8") -> ReplicaSpec:
    return ReplicaSpec(workload, gpus, precision, tensor_parallel=len(gpus))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


def make(tmp_path: Path, runtime: FakeRuntime, clock: Clock, **overrides: float) -> Reconciler:
    state = StateFile(tmp_path / "state.db")
    return Reconciler(
        state,
        runtime,
        launcher(),
        config(tmp_path, **overrides),
        clock=clock,
        port_allocator=ports(),  # type: ignore[arg-type]
    )


def phases(reconciler: Reconciler) -> dict[str, str]:
    return {r.spec.key: r.phase.value for r in reconciler.state.records()}


def test_the_same_plan_twice_does_nothing_the_second_time(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    desired = [spec("a"), spec("b", (1,))]
    first = reconciler.step(desired, 1)
    assert sorted(a.split()[0] for a in first.actions) == ["start", "start"]
    second = reconciler.step(desired, 1)  # both become healthy
    assert sorted(second.actions) == sorted(f"healthy {s.key}" for s in desired)
    assert second.applied
    third = reconciler.step(desired, 1)
    assert third.actions == [] and third.applied
    assert len(runtime.processes) == 2  # nothing launched again


def test_no_plan_changes_nothing(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a")], 1)
    outcome = reconciler.step(None, None)
    assert len(runtime.live()) == 1 and not any(a.startswith("drain") for a in outcome.actions)


def test_make_before_break_drains_the_old_replica_after_the_new_is_healthy(
    tmp_path, runtime, clock
) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a", (0,))], 1)
    reconciler.step([spec("a", (0,))], 1)
    (old,) = runtime.live()
    old.inflight = 2
    runtime.healthy_on_launch = False
    reconciler.step([spec("a", (1,))], 2)  # the move: new starts, old keeps serving
    assert phases(reconciler) == {spec("a", (0,)).key: "running", spec("a", (1,)).key: "starting"}
    clock.advance(5)
    reconciler.step([spec("a", (1,))], 2)  # new still not healthy: old must stay
    assert phases(reconciler)[spec("a", (0,)).key] == "running"
    new = next(p for p in runtime.live() if p is not old)
    new.healthy = True
    reconciler.step([spec("a", (1,))], 2)  # new healthy -> old drains (requests in flight)
    assert phases(reconciler)[spec("a", (0,)).key] == "draining" and old.alive
    old.inflight = 0
    outcome = reconciler.step([spec("a", (1,))], 2)
    assert outcome.applied and not old.alive
    events = runtime.events
    new_healthy = events.index(f"healthy {new.replica_id}")
    assert new_healthy < events.index(f"drain-request {old.replica_id}")
    assert events.index(f"drain-request {old.replica_id}") < events.index(
        f"stop {old.replica_id} inflight=0"
    )


def test_drain_stops_at_the_grace_period_with_requests_in_flight(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock, drain_grace_s=30)
    reconciler.step([spec("a")], 1)
    reconciler.step([spec("a")], 1)
    (server,) = runtime.live()
    server.inflight = 3
    reconciler.step([], 2)
    clock.advance(29)
    reconciler.step([], 2)
    assert server.alive
    clock.advance(2)
    reconciler.step([], 2)
    assert not server.alive and runtime.events[-1] == f"stop {server.replica_id} inflight=3"


def test_handover_keeps_a_leaving_workload_serving_for_a_while(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock, handover_s=20)
    reconciler.step([spec("a")], 1)
    reconciler.step([spec("a")], 1)
    reconciler.step([], 2)
    clock.advance(10)
    reconciler.step([], 2)
    assert phases(reconciler) == {spec("a").key: "running"}
    clock.advance(11)
    reconciler.step([], 2)
    assert phases(reconciler) == {spec("a").key: "draining"}


def test_in_place_replacement_frees_the_gpu_first(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a", (0,), "fp8")], 1)
    reconciler.step([spec("a", (0,), "fp8")], 1)
    outcome = reconciler.step([spec("a", (0,), "int4")], 2)
    assert outcome.actions == [f"drain {spec('a', (0,), 'fp8').key}"]
    reconciler.step([spec("a", (0,), "int4")], 2)  # drained (0 in flight): stopped, then start
    assert phases(reconciler) == {spec("a", (0,), "int4").key: "starting"}


def test_a_start_past_its_deadline_is_rolled_back_and_retried_with_backoff(
    tmp_path, runtime, clock
) -> None:
    reconciler = make(tmp_path, runtime, clock, start_deadline_s=60, backoff_initial_s=10)
    runtime.healthy_on_launch = False
    desired = [spec("a")]
    reconciler.step(desired, 1)
    launches = []
    for _ in range(40):  # 200 s of loops every 5 s
        clock.advance(5)
        outcome = reconciler.step(desired, 1)
        launches += [a for a in outcome.actions if a.startswith("start")]
    # deadline 60 s, then retries after 10, 20, 40 s: a few launches, not one per loop.
    assert 2 <= len(launches) <= 3
    assert sum(p.alive for p in runtime.processes.values()) <= 1  # never two at once
    clock.advance(61)  # past the deadline of the last try: failed, backing off
    report = NodeStateReport.model_validate(reconciler.step(desired, 1).report)
    degraded = next(c for c in report.conditions if c.type.value == "Degraded")
    assert degraded.status.value == "True" and "start deadline" in (degraded.message or "")


def test_a_failed_launch_is_reported_degraded(tmp_path, runtime, clock) -> None:
    runtime.fail_launch = True
    reconciler = make(tmp_path, runtime, clock)
    outcome = reconciler.step([spec("a")], 3)
    report = NodeStateReport.model_validate(outcome.report)
    assert report.observed_generation == 3
    assert [r.phase.value for r in report.replicas] == ["failed"]
    degraded = next(c for c in report.conditions if c.type.value == "Degraded")
    assert degraded.status.value == "True" and degraded.reason == "ReplicaFailed"
    assert "no such binary" in (degraded.message or "")
    assert reconciler.step([spec("a")], 3).actions == []  # backing off, not retrying at once


def test_report_validates_against_the_api_model(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a"), spec("b", (1, 2))], 7)
    outcome = reconciler.step([spec("a"), spec("b", (1, 2))], 7)
    report = NodeStateReport.model_validate(outcome.report)
    assert {r.workload for r in report.replicas} == {"a", "b"}
    assert all(r.phase.value == "running" and r.endpoint for r in report.replicas)
    applied = next(c for c in report.conditions if c.type.value == "Applied")
    assert applied.status.value == "True" and applied.reason == "AllReplicasRunning"


def test_restart_adopts_running_servers_and_starts_no_duplicate(tmp_path, runtime, clock) -> None:
    first = make(tmp_path, runtime, clock)
    first.step([spec("a")], 1)
    first.step([spec("a")], 1)
    first.state.close()
    restarted = make(tmp_path, runtime, clock)  # same state file, same processes
    outcome = restarted.step([spec("a")], 1)
    assert outcome.actions == [f"adopt {spec('a').key}"]
    assert len(runtime.processes) == 1 and outcome.applied


def test_restart_resolves_a_launch_whose_pid_was_never_recorded(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a")], 1)
    (record,) = reconciler.state.records()
    # As if SIGKILL came between Popen and the pid write:
    reconciler.state.put(
        ReplicaRecord(**{**record.__dict__, "phase": Phase.LAUNCHING, "pid": None})
    )
    restarted = make(tmp_path, runtime, clock)
    outcome = restarted.step([spec("a")], 1)
    assert f"adopt-launch {spec('a').key}" in outcome.actions
    assert len(runtime.processes) == 1 and outcome.applied


def test_restart_rolls_back_a_launch_that_never_started(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.state.put(
        ReplicaRecord("a-x", spec("a"), 1, Phase.LAUNCHING, port=31_000, endpoint="h:31000")
    )
    outcome = reconciler.step([spec("a")], 1)
    assert outcome.actions[:2] == [f"rollback-launch {spec('a').key}", f"start {spec('a').key}"]
    assert len(runtime.processes) == 1


def test_restart_mid_move_finishes_the_move(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock)
    reconciler.step([spec("a", (0,))], 1)
    reconciler.step([spec("a", (0,))], 1)
    runtime.healthy_on_launch = False
    reconciler.step([spec("a", (1,))], 2)  # new starting, old running: agent "dies" here
    for process in runtime.processes.values():
        process.healthy = True
    restarted = make(tmp_path, runtime, clock)
    for _ in range(3):
        outcome = restarted.step([spec("a", (1,))], 2)
    assert outcome.applied and len(runtime.live()) == 1 and len(runtime.processes) == 2


def test_a_crashed_running_server_is_restarted_after_backoff(tmp_path, runtime, clock) -> None:
    reconciler = make(tmp_path, runtime, clock, backoff_initial_s=10)
    reconciler.step([spec("a")], 1)
    reconciler.step([spec("a")], 1)
    runtime.live()[0].alive = False
    assert reconciler.step([spec("a")], 1).actions == [f"exited {spec('a').key}"]
    clock.advance(5)
    assert reconciler.step([spec("a")], 1).actions == []
    clock.advance(6)
    assert reconciler.step([spec("a")], 1).actions == [f"start {spec('a').key}"]
    assert len(reconciler.state.records()) == 1
