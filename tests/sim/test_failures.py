"""Node failures in the event loop: in-flight requests are lost, waiting and later ones go to
the replicas still up, and a workload with none left loses its requests until the node is back."""

from __future__ import annotations

from dataclasses import replace

from gridplace.sim import ReplicaLimits, ReplicaSetup, SpeedSchedule, World, run
from gridplace.sim.replica import Status
from tests.sim.fixtures import FakeSteps, arrivals, one_replica_world


def _two_replicas(outages: dict[str, tuple[tuple[float, float], ...]]) -> World:
    base = one_replica_world(FakeSteps(), ReplicaLimits(kv_tokens=10**6, max_sequences=1))
    (first,) = base.replicas
    second = ReplicaSetup("r1", 0, "n1", SpeedSchedule(FakeSteps()), first.limits, (0.0,), (0.0,))
    return replace(base, replicas=(first, second), outages=outages)


def test_in_flight_requests_are_lost_and_the_rest_rerouted() -> None:
    world = _two_replicas({"n0": ((1.0, 1000.0),)})
    # t=0.5: two long requests; one each (ties go to the lower index, then the busier one
    # looks slower). t=2: the node of r0 is down: everything goes to r1.
    result = run(world, arrivals([0.5, 0.5, 2.0, 2.1], 10, [200, 200, 5, 5]), 60.0)
    assert result.replica.tolist() == [0, 1, 1, 1]
    assert [Status(s) for s in result.status] == [Status.LOST, *[Status.DONE] * 3]


def test_waiting_requests_move_when_their_replica_fails() -> None:
    world = _two_replicas({"n0": ((0.3, 1000.0),)})
    # Both replicas hold one sequence (max_sequences 1); r1's is ten times longer, so the third
    # request queues at r0, which fails at 0.3 s before it could start.
    result = run(world, arrivals([0.0, 0.0, 0.1], 10, [100, 1000, 5]), 60.0)
    assert result.status[0] == Status.LOST
    assert result.status[2] == Status.DONE and result.replica[2] == 1


def test_with_no_replica_up_requests_are_lost_until_the_node_is_back() -> None:
    world = replace(
        one_replica_world(FakeSteps(), ReplicaLimits(kv_tokens=10**6)),
        outages={"n0": ((1.0, 5.0),)},
    )
    result = run(world, arrivals([0.5, 2.0, 6.0], 10, 2), 30.0)
    assert [Status(s) for s in result.status] == [Status.DONE, Status.LOST, Status.DONE]
    assert result.total().attainment == 2 / 3
