"""Token roles: the route table is complete, a viewer token writes nothing anywhere (every
operation walked from the OpenAPI document) and is let in on reads, validate and dry runs."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from gridplace.api.roles import ADMIN_ONLY, ROUTE_ROLES, accepted_roles, route_key
from gridplace.api.security import Role
from tests.api.conftest import (
    ADMIN,
    node_doc,
    node_token,
    register,
    small_grid,
    submit,
    to_yaml,
    workload_doc,
)

YAML = {"Content-Type": "application/yaml"}
# Reads that stay the admin's: who holds which token.
ADMIN_READS = {"GET /v1/admin/tokens"}
# Not GET, yet writing nothing: what a viewer may do besides reading.
VIEWER_POSTS = {"POST /v1/validate"}


def viewer_token(client: TestClient, label: str = "ci") -> dict[str, str]:
    response = client.post(f"/v1/admin/viewers/{label}/tokens", headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "viewer" and body["token"].startswith("gpv.")
    return {"Authorization": f"Bearer {body['token']}"}


def _operations(client: TestClient, secured: bool = True) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation (that needs a token), from the OpenAPI document."""
    schema = client.get("/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if operation.get("security") or not secured
    ]


def _url(path: str) -> str:
    return path.format(name="ams-4090-a", generation=1, token_id="0123456789abcdef")


def _snapshot(client: TestClient) -> dict[str, Any]:
    """Everything a write could change, read with the admin token."""
    read = ["/v1/plans", "/v1/nodes", "/v1/admin/tokens", "/v1/topology", "/v1/nodes/ams-4090-a"]
    read += ["/v1/nodes/ams-4090-a/state", "/v1/nodes/ams-4090-a/assignments"]
    return {url: client.get(url, headers=ADMIN).json() for url in read}


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """A grid with a plan, a reported state and a node token: every read has something to read."""
    small_grid(client)
    submit(client, workload_doc("chat"))
    state = {"observedGeneration": 1, "replicas": []}
    response = client.put("/v1/nodes/ams-4090-a/state", json=state, headers=ADMIN)
    assert response.status_code == 200, response.text
    node_token(client, "ams-4090-a")
    return client


def test_every_route_that_needs_a_token_is_in_the_role_table(client: TestClient) -> None:
    declared = {route_key(method, path) for method, path in _operations(client, secured=False)}
    needing_tokens = {route_key(method, path) for method, path in _operations(client)}
    assert needing_tokens - set(ROUTE_ROLES) == set()  # undeclared routes would be admin-only
    assert set(ROUTE_ROLES) - declared == set()  # no stale entries
    assert accepted_roles("POST", "/v1/not-declared", None) == ADMIN_ONLY


def test_a_viewer_writes_nothing_anywhere_and_reads_everything(seeded: TestClient) -> None:
    client = seeded
    viewer = viewer_token(client)
    before = _snapshot(client)
    checked = 0
    for method, path in _operations(client):
        key = route_key(method, path)
        response = client.request(method, _url(path), headers=viewer | YAML, content="{}")
        if method == "GET" and key not in ADMIN_READS:
            # Let in: 200, or 404 where the seeded grid has nothing there (a workload's forecast).
            assert response.status_code in (200, 404), (key, response.text)
            assert response.status_code == 200 or response.json()["error"] == "not_found"
        elif key in VIEWER_POSTS:
            assert response.status_code not in (401, 403), (key, response.text)
        else:
            assert response.status_code == 403, (key, response.text)
            assert "viewer token may not" in response.json()["message"]
        checked += 1
    # The writes a viewer is refused, with real bodies too (not just refused as unparseable).
    body = to_yaml(workload_doc("other"))
    assert client.post("/v1/plans", content=body, headers=viewer | YAML).status_code == 403
    refused = client.post("/v1/plans?dryRun=false", content=body, headers=viewer | YAML)
    assert refused.status_code == 403
    node = to_yaml(node_doc("ams-4090-a", price=0.01))
    assert (
        client.put("/v1/nodes/ams-4090-a", content=node, headers=viewer | YAML).status_code == 403
    )
    assert checked >= 20
    assert _snapshot(client) == before


def test_a_viewer_validates_and_dry_runs(seeded: TestClient) -> None:
    viewer = viewer_token(seeded)
    body = to_yaml(workload_doc("chat"), workload_doc("other"))
    checked = seeded.post("/v1/validate", content=body, headers=viewer | YAML)
    assert checked.status_code == 200 and checked.json()["valid"] is True
    dry = seeded.post("/v1/plans?dryRun=true", content=body, headers=viewer | YAML)
    assert dry.status_code == 200, dry.text
    assert {a["workload"] for a in dry.json()["spec"]["assignments"]} == {"chat", "other"}


def test_node_tokens_are_refused_on_planner_routes(seeded: TestClient) -> None:
    agent = node_token(seeded, "ams-4090-a")
    assert seeded.get("/v1/plans/latest", headers=agent).status_code == 403
    dry = seeded.post("/v1/plans?dryRun=true", content="{}", headers=agent | YAML)
    assert dry.status_code == 403
    assert seeded.get("/v1/nodes/ams-4090-a/assignments", headers=agent).status_code == 200
    assert seeded.get("/v1/nodes/ams-4090-b/assignments", headers=agent).status_code == 403


def test_viewer_tokens_are_listed_revoked_and_not_node_tokens(client: TestClient) -> None:
    register(client, node_doc("a"))
    viewer = viewer_token(client, "github-ci")
    assert client.get("/v1/plans", headers=viewer).status_code == 200
    listed = client.get("/v1/admin/tokens", headers=ADMIN).json()["items"]
    assert [(t["node"], t["role"]) for t in listed] == [("github-ci", "viewer")]
    # The same id and secret under the node prefix is not a node token.
    disguised = viewer["Authorization"].replace("gpv.", "gpn.")
    assert client.get("/v1/nodes/a", headers={"Authorization": disguised}).status_code == 401
    token_id = listed[0]["tokenId"]
    assert client.delete(f"/v1/admin/tokens/{token_id}", headers=ADMIN).status_code == 204
    assert client.get("/v1/plans", headers=viewer).status_code == 401


def test_viewers_are_rate_limited_like_agents(make_client: Any) -> None:
    client = make_client(rate_limit_per_s=0.001, rate_limit_burst=2)
    viewer = viewer_token(client)
    codes = [client.get("/v1/plans", headers=viewer).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert Role.VIEWER.value in client.get("/v1/plans", headers=viewer).json()["message"]
