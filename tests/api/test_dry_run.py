"""``POST /v1/plans?dryRun=true``: the plan a submission would get now, stored nowhere."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gridplace.api.models import BASE_GENERATION_HEADER
from tests.api.conftest import ADMIN, node_token, small_grid, submit, to_yaml, workload_doc
from tests.api.test_roles import YAML, viewer_token


def test_a_dry_run_stores_nothing_and_agents_see_nothing(client: TestClient) -> None:
    nodes = small_grid(client)
    stored = submit(client, workload_doc("chat", rps=1, replicas=(1, 1)))
    agents = {name: node_token(client, name) for name in nodes}
    seen = {
        name: client.get(f"/v1/nodes/{name}/assignments", headers=agents[name]) for name in nodes
    }
    viewer = viewer_token(client)
    body = to_yaml(workload_doc("chat", rps=1, replicas=(1, 1)), workload_doc("extra", rps=1))
    dry = client.post("/v1/plans?dryRun=true", content=body, headers=viewer | YAML)
    assert dry.status_code == 200, dry.text
    plan = dry.json()
    assert dry.headers[BASE_GENERATION_HEADER] == "1"
    assert plan["metadata"]["name"] == "dry-run" and plan["metadata"]["generation"] == 2
    assert {a["workload"] for a in plan["spec"]["assignments"]} == {"chat", "extra"}
    # The replica in force stays where it is (moves priced as in a replan).
    kept = [a for a in plan["spec"]["assignments"] if a["workload"] == "chat"]
    assert kept == stored["spec"]["assignments"]
    # Nothing stored, nothing published.
    assert [p["generation"] for p in client.get("/v1/plans", headers=ADMIN).json()["items"]] == [1]
    assert client.get("/v1/plans/latest", headers=ADMIN).json() == stored
    for name in nodes:
        etag = seen[name].headers["ETag"]
        again = client.get(
            f"/v1/nodes/{name}/assignments", headers=agents[name] | {"If-None-Match": etag}
        )
        assert again.status_code == 304, name


def test_a_dry_run_on_an_empty_store_plans_from_nothing(client: TestClient) -> None:
    small_grid(client)
    dry = client.post(
        "/v1/plans?dryRun=true", content=to_yaml(workload_doc("chat")), headers=ADMIN | YAML
    )
    assert dry.status_code == 200 and dry.headers[BASE_GENERATION_HEADER] == "0"
    assert client.get("/v1/plans/latest", headers=ADMIN).status_code == 404


def test_a_dry_run_checks_its_body_like_a_submission(client: TestClient) -> None:
    small_grid(client)
    viewer = viewer_token(client)
    node_only = to_yaml({"apiVersion": "gridplace/v1alpha1", "kind": "Node", "metadata": {}})
    response = client.post("/v1/plans?dryRun=true", content=node_only, headers=viewer | YAML)
    assert response.status_code == 422
