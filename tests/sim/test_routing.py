"""The router counts what it sent that has not arrived yet: a clump of simultaneous requests
spreads over equal replicas instead of all going to the one that looked idlest when it left."""

from __future__ import annotations

from dataclasses import replace

from gridplace.sim import ReplicaLimits, SpeedSchedule, World, run
from tests.sim.fixtures import FakeSteps, arrivals, one_replica_world


def _two_replicas(rtt_ms: float) -> World:
    base = one_replica_world(FakeSteps(), ReplicaLimits(kv_tokens=10**6), rtt_ms=rtt_ms)
    (first,) = base.replicas
    second = replace(first, label="r1", node="n1", speed=SpeedSchedule(FakeSteps()))
    return replace(base, replicas=(first, second))


def test_a_clump_sent_at_once_spreads_over_equal_replicas() -> None:
    # 40 ms away: every request of the clump leaves before the first one arrives.
    result = run(_two_replicas(40.0), arrivals([0.0] * 8, 100, 5), 60.0)
    assert sorted(result.replica.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    # One replica alone would prefill 8 x 100 tokens in a row (800 ms); split, 400 ms.
    assert result.ttft_ms.max() < 40 + 500


def test_requests_in_transit_are_forgotten_once_they_arrive() -> None:
    # Two clumps a second apart: the second sees no phantom load left from the first.
    result = run(_two_replicas(40.0), arrivals([0.0, 0.0, 1.0, 1.0], 100, 5), 60.0)
    assert result.replica.tolist() == [0, 1, 0, 1]
