"""Demand history and forecasts over HTTP: a gateway posts counts, the forecast follows the
daily cycle and says when a plan must be in place ahead of the ramp."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from fastapi.testclient import TestClient

from tests.api.conftest import ADMIN, FakeClock


def _post_days(client: TestClient, clock: FakeClock, days: int, peak_rps: float) -> None:
    """Hourly counts of a daily cycle (trough 2 req/s, peak ``peak_rps`` at 14:00), two sources,
    ending at the clock's hour."""
    rng = np.random.default_rng(0)
    end = clock.now.replace(minute=0, second=0, microsecond=0)
    samples = []
    for hour in range(24 * days):
        start = end - timedelta(hours=24 * days - hour)
        level = 2 + (peak_rps - 2) * (1 + np.cos(2 * np.pi * (start.hour - 14) / 24)) / 2
        count = int(rng.poisson(level * 3600))
        for source, share in (("eu-west", 0.7), ("us-east", 0.3)):
            samples.append(
                {"source": source, "windowStart": start.isoformat(), "windowS": 3600,
                 "requests": round(count * share)}
            )  # fmt: skip
    response = client.post("/v1/workloads/chat/demand", json={"samples": samples}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(samples)


def test_history_is_kept_per_source(client: TestClient, clock: FakeClock) -> None:
    _post_days(client, clock, 3, 10.0)
    history = client.get("/v1/workloads/chat/demand", params={"hours": 48}, headers=ADMIN)
    assert history.status_code == 200, history.text
    sources = history.json()["sources"]
    assert sorted(sources) == ["eu-west", "us-east"]
    eu, us = np.array(sources["eu-west"]), np.array(sources["us-east"])
    assert len(eu) == 48 and np.allclose(eu / (eu + us), 0.7, atol=0.01)


def test_the_forecast_follows_the_cycle_and_is_due_before_the_ramp(
    client: TestClient, clock: FakeClock
) -> None:
    clock.now = clock.now.replace(hour=2)  # night: the ramp to the 14:00 peak is ahead
    _post_days(client, clock, 4, 10.0)
    response = client.get(
        "/v1/workloads/chat/forecast", params={"horizonHours": 24, "leadS": 1800}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    body = response.json()
    mean = np.array(body["meanRps"])
    assert 10 <= int(np.argmax(mean)) <= 14  # 02:00 + 12 h = the 14:00 peak
    assert mean.max() > 8.5 and mean.min() < 3.5
    assert body["planRps"] >= mean.max() and body["capacityRps"] == 0.0  # no plan yet
    # With nothing placed, the plan is due now.
    assert body["validFrom"].startswith(clock.now.replace(minute=0).isoformat()[:16])


def test_bad_demand_input_is_a_4xx(client: TestClient) -> None:
    url = "/v1/workloads/chat/demand"
    bad = {"source": "eu-west", "windowStart": "2026-11-27T10:00:00", "windowS": 60,
           "requests": 5}  # fmt: skip  # a naive time
    assert client.post(url, json={"samples": [bad]}, headers=ADMIN).status_code == 422
    assert client.post(url, json={"samples": []}, headers=ADMIN).status_code == 422
    negative = {**bad, "windowStart": "2026-11-27T10:00:00Z", "requests": -1}
    assert client.post(url, json={"samples": [negative]}, headers=ADMIN).status_code == 422
    assert client.post(url, json={"samples": [negative]}).status_code == 401
    assert client.get("/v1/workloads/Bad_Name/demand", headers=ADMIN).status_code == 422
    missing = client.get("/v1/workloads/nobody/forecast", headers=ADMIN)
    assert missing.status_code == 404 and "no demand history" in missing.text
