"""The agents' lean routes (telemetry, assignments) read their token and body themselves, and
answer bad requests exactly as the dependency-based routes did (these tests pass on both)."""

from __future__ import annotations

import gc

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from tests.api.conftest import ADMIN, MakeClient, node_doc, node_token, register

TELEMETRY = "/v1/nodes/a/telemetry"
JSON_TYPE = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("headers", "content", "status", "field", "message"),
    [
        (JSON_TYPE, b"", 422, None, "Field required"),
        (JSON_TYPE, b"[1]", 422, None, "Input should be a valid dictionary"),
        (JSON_TYPE, b'{"healthy": tru', 422, "[12]", "JSON decode error"),
        (JSON_TYPE, b'{"healthy": "maybe"}', 422, "healthy", "Input should be a valid boolean"),
        ({"Content-Type": "text/plain"}, b"{}", 422, None, "Input should be a valid dictionary"),
        (JSON_TYPE | {"Prefer": "x" * 257}, b"{}", 422, "header.prefer", "at most 256"),
    ],
)
def test_telemetry_refuses_bad_bodies_as_before(
    client: TestClient,
    headers: dict[str, str],
    content: bytes,
    status: int,
    field: str | None,
    message: str,
) -> None:
    register(client, node_doc("a"))
    answer = client.post(TELEMETRY, content=content, headers=ADMIN | headers)
    assert answer.status_code == status, answer.text
    issue = answer.json()["issues"][0]
    assert issue.get("field") == field and message in issue["message"]


def test_the_lean_routes_check_tokens_roles_and_sizes_as_before(client: TestClient) -> None:
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    token_b = node_token(client, "b")
    viewer = client.post("/v1/admin/viewers/ci/tokens", headers=ADMIN).json()["token"]
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    for method, path in (("POST", TELEMETRY), ("GET", "/v1/nodes/a/assignments")):
        body = {"json": {}} if method == "POST" else {}
        missing = client.request(method, path, **body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong_scheme = client.request(method, path, headers={"Authorization": "Basic eA=="}, **body)
        assert wrong_scheme.status_code == 401
        other = client.request(method, path, headers=token_b, **body)
        assert other.status_code == 403 and "belongs to node 'b'" in other.json()["message"]
        bad_name = client.request(method, path.replace("/a/", "/A_/"), headers=ADMIN, **body)
        assert bad_name.status_code == 422
        assert bad_name.json()["issues"][0]["field"] == "path.name"
    refused = client.post(TELEMETRY, json={}, headers=as_viewer)
    assert refused.status_code == 403 and "may not POST" in refused.json()["message"]
    assert client.get("/v1/nodes/a/assignments", headers=as_viewer).status_code == 200
    large = client.post(TELEMETRY, json={"message": "x" * 70_000}, headers=ADMIN)
    assert large.status_code == 413
    assert client.post("/v1/nodes/zz/telemetry", json={}, headers=ADMIN).status_code == 404


def test_the_agents_routes_skip_the_router_and_count_in_metrics(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telemetry and pulls are answered before FastAPI's router (``fastpath.py``): its route
    matching and parameter parsing were most of their cost. Other routes, and these routes'
    malformed names, still go through it."""
    register(client, node_doc("a"))
    routed: list[str] = []
    original = APIRouter.__call__

    async def counted(self: APIRouter, scope: Scope, receive: Receive, send: Send) -> None:
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(APIRouter, "__call__", counted)
    minimal = ADMIN | {"Prefer": "return=minimal"}
    assert client.post(TELEMETRY, json={"healthy": True}, headers=minimal).status_code == 204
    pulled = client.get("/v1/nodes/a/assignments", headers=ADMIN)
    assert pulled.status_code == 200
    etag = {"If-None-Match": pulled.headers["ETag"]}
    assert client.get("/v1/nodes/a/assignments", headers=ADMIN | etag).status_code == 304
    assert routed == []
    assert client.get("/v1/nodes/a", headers=ADMIN).status_code == 200
    assert client.get("/v1/nodes/a%0A/assignments", headers=ADMIN).status_code == 422
    assert routed == ["/v1/nodes/a", "/v1/nodes/a\n/assignments"]
    metrics = client.get("/metrics").text
    for route, status in (("telemetry", 204), ("assignments", 304)):
        assert f'route="/v1/nodes/{{name}}/{route}",status="{status}"' in metrics


def test_a_running_server_leaves_its_startup_objects_out_of_collections(
    make_client: MakeClient,
) -> None:
    """A full collection walks every tracked object; what the server holds from its start on
    (modules, the app) is frozen, so collections during requests walk only the rest."""
    gc.unfreeze()
    make_client()
    assert gc.get_freeze_count() > 10_000
