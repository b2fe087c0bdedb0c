"""Health, metrics, the admin token's life, rate limits, unknown routes and a lost database."""

from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa

from gridplace.api.app import create_app
from gridplace.api.metrics import Metrics
from gridplace.api.ratelimit import RateLimiter
from gridplace.api.security import Role, TokenHash, hash_secret, split_issued_token
from gridplace.api.store import Store
from gridplace.api.store import store as store_module
from tests.api.conftest import (
    ADMIN,
    FakeClock,
    MakeClient,
    TestClient,
    node_doc,
    node_token,
    register,
    small_grid,
    submit,
    test_settings,
    workload_doc,
)


def test_healthz_needs_no_token(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["database"] == "sqlite"


def test_metrics_count_plans_nodes_and_requests(client: TestClient) -> None:
    small_grid(client)
    submit(client, workload_doc("chat"))
    client.get("/v1/nodes/ams-4090-a", headers=ADMIN)
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'gridplace_plans_solved_total{trigger="submitted"} 1' in text
    assert 'gridplace_plan_solve_seconds_count{trigger="submitted"} 1' in text
    assert "gridplace_nodes_healthy 4" in text and "gridplace_plan_generation 1" in text
    pattern = (
        r'gridplace_http_request_duration_seconds_count\{method="GET",'
        r'route="/v1/nodes/\{name\}",status="200"\} 1'
    )
    assert re.search(pattern, text)
    for line in text.splitlines():  # every sample line is "name{labels} number"
        if not line.startswith("#"):
            assert re.fullmatch(r"[a-z_]+(\{.*\})? (\+Inf|[0-9.e+-]+)", line), line


def test_metrics_count_nodes_as_the_grid_view_without_reading_documents(
    client: TestClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scrape counts nodes by state from their pulses (a few columns), the same counts as
    judging every document (10,000 of them were ~0.4 s of CPU in the serving process)."""
    names = [f"n{i}" for i in range(8)]
    for name in names:
        register(client, node_doc(name))
    service = client.app.state.gridplace.service  # type: ignore[attr-defined]
    built: list[str] = []
    record = store_module._node_record

    def counted(row: object) -> object:
        built.append(row.name)  # type: ignore[attr-defined]
        return record(row)

    monkeypatch.setattr(store_module, "_node_record", counted)

    def scraped() -> dict[str, int]:
        built.clear()
        text = client.get("/metrics").text
        assert built == []
        found = re.findall(r'gridplace_nodes\{state="([a-z]+)"\} ([0-9]+)', text)
        return {state: int(count) for state, count in found}

    def judged() -> dict[str, int]:
        view = service.grid()
        healthy = view.healthy_count
        return {"healthy": healthy, "unhealthy": len(names) - healthy, "silent": view.silent_count}

    clock.advance(61)  # past the 60 s grace
    for name in names[:6]:  # two silent, one of the heard unhealthy
        report = {"healthy": name != "n0"}
        response = client.post(f"/v1/nodes/{name}/telemetry", json=report, headers=ADMIN)
        assert response.status_code == 200
    assert scraped() == judged() == {"healthy": 5, "unhealthy": 3, "silent": 2}
    clock.advance(61)  # all silent: a mass silence marks nobody
    assert scraped() == judged() == {"healthy": 7, "unhealthy": 1, "silent": 8}


def test_histogram_buckets_are_cumulative() -> None:
    metrics = Metrics()
    for seconds in (0.0005, 0.003, 0.003, 20.0):
        metrics.observe_request("GET", "/x", 200, seconds)
    text = metrics.render({}, 0)
    assert 'le="0.001"} 1' in text and 'le="0.005"} 3' in text and 'le="+Inf"} 4' in text


def test_an_admin_token_is_generated_once_and_kept_hashed(sqlite_url: str) -> None:
    shown: list[str] = []
    settings = test_settings(sqlite_url, admin_token=None)
    with TestClient(create_app(settings, announce_admin_token=shown.append)) as first:
        assert len(shown) == 1
        token = {"Authorization": f"Bearer {shown[0]}"}
        assert first.get("/v1/nodes", headers=token).status_code == 200
        assert first.get("/v1/nodes", headers=ADMIN).status_code == 401
    with TestClient(create_app(settings, announce_admin_token=shown.append)) as second:
        assert len(shown) == 1  # not shown again, still valid after a restart
        assert second.get("/v1/nodes", headers=token).status_code == 200
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT value FROM server_settings")).scalar_one()
    engine.dispose()
    assert shown[0] not in stored and "hash" in stored


def test_node_tokens_are_rate_limited_per_node(make_client: MakeClient) -> None:
    client = make_client(rate_limit_per_s=0.01, rate_limit_burst=3)
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    token_a, token_b = node_token(client, "a"), node_token(client, "b")
    answers = [client.post("/v1/nodes/a/telemetry", json={}, headers=token_a) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["error"] == "rate_limited"
    assert client.post("/v1/nodes/b/telemetry", json={}, headers=token_b).status_code == 200
    assert client.get("/v1/nodes/a", headers=ADMIN).status_code == 200  # the admin is not


def test_guessing_tokens_is_slowed_down(client: TestClient) -> None:
    register(client, node_doc("a"))  # the admin token is verified (and remembered) here
    fresh = node_token(client, "a")
    wrong = {"Authorization": "Bearer gpn.0011223344556677.guess"}
    codes = [client.get("/v1/nodes/a", headers=wrong).status_code for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    # The address is blocked for tokens it has not proven yet; proven ones keep working.
    assert client.get("/v1/nodes/a", headers=fresh).status_code == 429
    assert client.get("/v1/nodes", headers=ADMIN).status_code == 200


def test_token_bucket_refills() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert limiter.take("k") == 0 and limiter.take("k") == 0
    assert limiter.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take("k") == 0 and limiter.peek("other") == 0


def test_issued_token_format() -> None:
    assert split_issued_token("gpn.abc.def") == (Role.NODE, "abc", "def")
    assert split_issued_token("gpv.abc.def") == (Role.VIEWER, "abc", "def")
    for bad in ("gpn.abc", "gpa.abc.def", "gpn..def", "gpn.a.b.c", "gpx.abc.def"):
        assert split_issued_token(bad) is None
    hashed = hash_secret("x")
    assert hashed.matches("x") and not hashed.matches("y") and len(hashed.salt_hex) == 32
    assert hashed.hash_hex.startswith("scrypt$2048$8$1$")
    # A hash made with other costs still verifies: the costs travel with it.
    costly = hashlib.scrypt(b"x", salt=bytes.fromhex(hashed.salt_hex), n=4096, r=8, p=1, dklen=32)
    older = TokenHash(hashed.salt_hex, f"scrypt$4096$8$1${costly.hex()}")
    assert older.matches("x") and not older.matches("y")
    assert not TokenHash(hashed.salt_hex, "md5$abc").matches("x")


def test_unknown_routes_and_methods_answer_in_the_error_shape(client: TestClient) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.patch("/v1/plans", headers=ADMIN)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_a_lost_database_is_503(client: TestClient, tmp_path: object) -> None:
    state = client.app.state.gridplace  # type: ignore[attr-defined]
    broken = Store(sa.create_engine("sqlite:////nonexistent-dir/gridplace.db"))
    state.store = broken
    state.service.store = broken
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert client.get("/v1/plans/latest", headers=ADMIN).status_code == 503


def test_the_openapi_document_is_3_1_and_covers_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    paths = set(schema["paths"])
    expected = {
        "/healthz",
        "/metrics",
        "/v1/plans",
        "/v1/plans/latest",
        "/v1/plans/{generation}",
        "/v1/plans/{generation}/explanation",
        "/v1/validate",
        "/v1/replan",
        "/v1/nodes",
        "/v1/nodes/{name}",
        "/v1/nodes/{name}/telemetry",
        "/v1/nodes/{name}/probes",
        "/v1/nodes/{name}/assignments",
        "/v1/nodes/{name}/state",
        "/v1/nodes/{name}/pipelines",
        "/v1/nodes/{name}/observations",
        "/v1/observations",
        "/v1/calibration",
        "/v1/probes",
        "/v1/topology",
        "/v1/admin/nodes/{name}/tokens",
        "/v1/admin/viewers/{name}/tokens",
        "/v1/admin/tokens",
        "/v1/admin/tokens/{token_id}",
        "/v1/workloads/{name}/demand",
        "/v1/workloads/{name}/forecast",
    }
    assert paths == expected
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_the_clock_of_the_server_stamps_heartbeats(client: TestClient, clock: FakeClock) -> None:
    register(client, node_doc("a"))
    clock.advance(5)
    body = client.post("/v1/nodes/a/telemetry", json={}, headers=ADMIN).json()
    assert body["node"]["status"]["lastHeartbeat"] == "2026-11-27T12:00:05Z"
