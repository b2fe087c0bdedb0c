"""``POST /v1/plans?shards=K``: a sharded plan over HTTP (its status says so, a resubmission
keeps its replicas), the field checked (422 naming it), documented in OpenAPI."""

from __future__ import annotations

from tests.api.conftest import ADMIN, TestClient, small_grid, submit, to_yaml, workload_doc

YAML = {"Content-Type": "application/yaml"}


def test_a_sharded_plan_over_http_says_so_and_a_resubmission_keeps_its_replicas(
    client: TestClient,
) -> None:
    names = small_grid(client)
    documents = [workload_doc("chat", rps=4), workload_doc("docs", rps=2)]
    first = submit(client, *documents, shards=2)
    assert first["metadata"]["generation"] == 1
    assert "2 shards" in first["status"]["solver"]["status"]
    assert any(n.startswith("planned in 2 shards") for n in first["status"]["notes"])
    assert first["status"]["unplaced"] == []
    assert {a["node"] for a in first["spec"]["assignments"]} <= set(names)
    second = submit(client, *documents, shards=2)
    placed = sorted((a["workload"], a["node"]) for a in first["spec"]["assignments"])
    assert sorted((a["workload"], a["node"]) for a in second["spec"]["assignments"]) == placed


def test_shards_auto_plans_a_small_grid_whole(client: TestClient) -> None:
    small_grid(client)
    plan = submit(client, workload_doc("chat", rps=4), shards="auto")
    assert not any("shards" in n for n in plan["status"]["notes"])
    assert "shards" not in plan["status"]["solver"]["status"]


def test_the_shards_field_is_checked(client: TestClient) -> None:
    small_grid(client)

    def post(**params: object) -> tuple[int, list[dict[str, object]]]:
        body = to_yaml(workload_doc("chat"))
        answer = client.post("/v1/plans", content=body, headers=ADMIN | YAML, params=params)
        return answer.status_code, answer.json().get("issues", [])

    for value in ("0", "-1", "two", "100"):
        status, issues = post(shards=value)
        assert status == 422 and "shards" in str(issues[0]["field"]), (value, issues)
    status, issues = post(shards=2, budgetPerHour=5)
    assert status == 422 and issues[0]["field"] == "shards"
    assert "budget" in str(issues[0]["message"])
    status, issues = post(shards=2, strategy="greedy")
    assert status == 422 and "cpsat" in str(issues[0]["message"])
    assert client.get("/v1/plans/latest", headers=ADMIN).status_code == 404  # nothing stored


def test_the_shards_field_is_in_openapi(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/plans"]["post"]
    (shards,) = [p for p in operation["parameters"] if p["name"] == "shards"]
    assert shards["in"] == "query" and "auto" in shards["description"]
