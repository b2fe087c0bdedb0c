"""The booking factor: capacity follows each workload's measured burstiness; an explicit
headroom overrides it; traffic with none declared keeps the flat default. A replica keeps spare
concurrency for fluctuations, more when it is small."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gridplace.planner.booking import (
    CONCURRENCY_BETA,
    booking_factor,
    burst_factor,
    usable_capacity_rps,
)
from gridplace.planner.compile import DEFAULT_HEADROOM
from gridplace.specs import InferenceWorkload
from gridplace.specs.workload import Burstiness
from tests.planner.grids import node, run, workload


def bursts(*windows: tuple[float, float]) -> Burstiness:
    return Burstiness.model_validate(
        {"windows": [{"windowS": w, "peakToMean": p} for w, p in windows]}
    )


def with_burstiness(base: InferenceWorkload, burstiness: Burstiness | None) -> InferenceWorkload:
    document: dict[str, Any] = base.model_dump(by_alias=True, exclude_none=True, mode="json")
    if burstiness is not None:
        document["spec"]["traffic"]["burstiness"] = burstiness.model_dump(by_alias=True)
    return InferenceWorkload.model_validate(document)


POISSON_LIKE = bursts((1, 1.0), (10, 1.05), (60, 1.1))
BURSTY = bursts((1, 10.6), (10, 6.0), (60, 3.8))


@pytest.mark.parametrize(
    ("name", "burstiness", "ttft_ms", "expected"),
    [
        ("poisson: nothing above the mean", bursts((1, 1.0), (60, 1.0)), 1000, 1.0),
        ("a long window's peak is served whole (almost)", bursts((600, 2.0)), 1000, 2 / 1.0008333),
        ("a short spike is forgiven by the TTFT slack", bursts((1, 3.0)), 2000, 1.5),
        ("the worst window decides", bursts((1, 3.0), (60, 2.5)), 2000, 2.5 / (1 + 1 / 60)),
    ],
)
def test_burst_factor_table(
    name: str, burstiness: Burstiness, ttft_ms: float, expected: float
) -> None:
    assert burst_factor(burstiness, ttft_ms) == pytest.approx(expected, rel=1e-4), name


def test_booking_grows_with_burstiness_and_shrinks_for_poisson_like_traffic() -> None:
    poisson = booking_factor(POISSON_LIKE, 1000, DEFAULT_HEADROOM, None)
    bursty = booking_factor(BURSTY, 1000, DEFAULT_HEADROOM, None)
    unknown = booking_factor(None, 1000, DEFAULT_HEADROOM, None)
    assert poisson < 1.2 < unknown == 1 + DEFAULT_HEADROOM < bursty
    # A tighter TTFT target leaves less slack for a burst: more capacity.
    assert booking_factor(BURSTY, 300, DEFAULT_HEADROOM, None) > bursty


def test_an_explicit_headroom_overrides_the_traffic() -> None:
    assert booking_factor(BURSTY, 1000, DEFAULT_HEADROOM, 0.25) == 1.25
    assert booking_factor(POISSON_LIKE, 1000, DEFAULT_HEADROOM, 0.0) == 1.0


def test_the_plan_books_capacity_for_the_traffic() -> None:
    nodes = [node(f"n{i}", count=1) for i in range(24)]
    base = workload("w", rps=6.0)
    booked = {}
    for label, burstiness in (("poisson", POISSON_LIKE), ("unknown", None), ("bursty", BURSTY)):
        result = run(nodes, [with_burstiness(base, burstiness)], headroom=None)
        (demand,) = result.problem.workloads
        (coverage,) = result.plan.status.workloads if result.plan.status else []
        assert coverage.capacity_rps is not None
        assert coverage.capacity_rps >= demand.booked_rps - 1e-6
        booked[label] = (demand.booking, coverage.capacity_rps)
    assert booked["poisson"][0] < booked["unknown"][0] == 2.0 < booked["bursty"][0]
    assert booked["poisson"][1] < booked["unknown"][1] < booked["bursty"][1]


def test_a_small_replica_keeps_a_larger_share_spare() -> None:
    capacity = np.array([1.0, 1.0, 1.0, 0.0])
    in_system_ms = np.array([5_000.0, 50_000.0, 500_000.0, 1_000.0])  # 5, 50, 500 in flight
    usable = usable_capacity_rps(capacity, in_system_ms)
    assert 0.0 < usable[0] < usable[1] < usable[2] < 1.0
    assert usable[2] > 0.9 and usable[0] < 0.6
    assert usable[3] == 0.0
    # R + beta sqrt(R) = R_cap holds for the kept concurrency.
    kept = usable[1] * 50
    assert kept + CONCURRENCY_BETA * np.sqrt(kept) == pytest.approx(50)


def test_capacity_fluctuations_count_only_when_the_traffic_decides() -> None:
    nodes = [node(f"n{i}", count=1) for i in range(24)]
    capacities = {}
    for label, burstiness, headroom in (
        ("explicit headroom", POISSON_LIKE, 1.0),
        ("no burstiness declared", None, None),
        ("traffic decides", POISSON_LIKE, None),
    ):
        served = with_burstiness(workload("w", rps=6.0), burstiness)
        result = run(nodes, [served], headroom=headroom)
        capacities[label] = {o.index: o.capacity_rps for o in result.problem.options}
    flat, unknown, derated = capacities.values()
    assert flat == unknown
    assert flat.keys() == derated.keys()
    assert all(derated[i] < flat[i] for i in flat)
