"""Observation windows feed the demand history: forecasts need no gateway, a resent window
counts once, and where a gateway posted for an hour its count is the hour's (never both)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from tests.api.conftest import ADMIN, FakeClock, TestClient, node_doc, node_token, register
from tests.api.test_observations_api import observations_doc, window


def _post(client: TestClient, node: str, windows: list[dict[str, object]]) -> None:
    token = node_token(client, node)
    for first in range(0, len(windows), 500):
        document = observations_doc(*windows[first : first + 500])
        response = client.post(f"/v1/nodes/{node}/observations", json=document, headers=token)
        assert response.status_code == 200, response.text


def _history(client: TestClient, hours: int) -> dict[str, list[float]]:
    response = client.get("/v1/workloads/chat/demand", params={"hours": hours}, headers=ADMIN)
    assert response.status_code == 200, response.text
    sources: dict[str, list[float]] = response.json()["sources"]
    return sources


def _hours_ago(clock: FakeClock, hours: int) -> float:
    return (clock.now - timedelta(hours=hours)).timestamp()


def test_replicas_windows_add_up_per_hour_and_a_resent_window_counts_once(
    client: TestClient, clock: FakeClock
) -> None:
    for name in ("a", "b"):
        register(client, node_doc(name))
    _post(client, "a", [window("a", _hours_ago(clock, 3), requests=120)])
    _post(client, "b", [window("b", _hours_ago(clock, 3), requests=n) for n in (20, 40)])
    _post(client, "a", [window("a", _hours_ago(clock, 3), requests=120)])  # resent
    _post(client, "a", [window("a", _hours_ago(clock, 2), requests=36, workload="code")])
    history = _history(client, 4)
    assert list(history) == ["observed"]
    assert np.allclose(history["observed"], [0, 180 / 3600, 0, 0])


def test_a_gateways_count_replaces_the_observed_one_in_its_hours(
    client: TestClient, clock: FakeClock
) -> None:
    register(client, node_doc("a"))
    _post(client, "a", [window("a", _hours_ago(clock, h), requests=100) for h in (3, 2)])
    start = (clock.now - timedelta(hours=3)).isoformat()
    gateway = {"source": "eu-west", "windowStart": start, "windowS": 3600, "requests": 720}
    posted = client.post("/v1/workloads/chat/demand", json={"samples": [gateway]}, headers=ADMIN)
    assert posted.status_code == 200, posted.text
    history = _history(client, 4)
    assert np.allclose(history["eu-west"], [0, 720 / 3600, 0, 0])
    assert np.allclose(history["observed"], [0, 0, 100 / 3600, 0])  # the gateway's hour: not added
    total = np.add(history["eu-west"], history["observed"])
    assert np.allclose(total, [0, 0.2, 100 / 3600, 0])


def test_a_forecast_from_observations_alone(client: TestClient, clock: FakeClock) -> None:
    register(client, node_doc("a"))
    rng = np.random.default_rng(1)
    windows = []
    for hour in range(24 * 4, 0, -1):
        moment = clock.now - timedelta(hours=hour)
        level = 2 + 8 * (1 + np.cos(2 * np.pi * (moment.hour - 14) / 24)) / 2
        start = moment.timestamp()
        windows.append(
            window("a", start, requests=int(rng.poisson(level * 3600)), endS=start + 3600)
        )
    _post(client, "a", windows)
    response = client.get("/v1/workloads/chat/forecast", params={"horizonHours": 24}, headers=ADMIN)
    assert response.status_code == 200, response.text
    mean = np.array(response.json()["meanRps"])
    peak_hour = (clock.now.hour + int(np.argmax(mean))) % 24
    assert abs(peak_hour - 14) <= 2 and mean.max() > 8.5 and mean.min() < 3.5
