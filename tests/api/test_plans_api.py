"""Plan endpoints: submit (YAML and JSON), unplaced in a 200, generations and 409, reading plans
back, explanations, validation over HTTP, and the request checks (422 with the field, 413)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.conftest import (
    ADMIN,
    MakeClient,
    TestClient,
    node_doc,
    node_token,
    small_grid,
    submit,
    to_yaml,
    workload_doc,
)

YAML = {"Content-Type": "application/yaml"}


def test_submit_yaml_gets_a_plan_of_the_first_generation(client: TestClient) -> None:
    names = small_grid(client)
    plan = submit(client, workload_doc("chat", rps=4))
    assert plan["kind"] == "PlacementPlan"
    assert plan["metadata"]["generation"] == 1 and plan["metadata"]["name"] == "plan-1"
    assignments = plan["spec"]["assignments"]
    assert assignments and {a["node"] for a in assignments} <= set(names)
    assert plan["status"]["workloads"][0]["sloMet"] is True
    assert plan["status"]["unplaced"] == []


def test_submit_json_list_and_unplaced_workloads_are_a_200(client: TestClient) -> None:
    small_grid(client)
    documents = [workload_doc("chat"), workload_doc("huge", model="llama-3.1-405b")]
    response = client.post("/v1/plans", content=json.dumps(documents), headers=ADMIN)
    assert response.status_code == 200
    plan = response.json()
    unplaced = {u["workload"]: u for u in plan["status"]["unplaced"]}
    assert set(unplaced) == {"huge"} and "VRAM" in " ".join(unplaced["huge"]["reasons"])
    assert response.headers["Location"] == "/v1/plans/1"


def test_generations_advance_and_a_stale_expected_generation_is_409(client: TestClient) -> None:
    small_grid(client)
    assert submit(client, workload_doc("chat"), expectedGeneration=0)["metadata"]["generation"] == 1
    assert submit(client, workload_doc("chat"))["metadata"]["generation"] == 2
    stale = client.post(
        "/v1/plans",
        content=to_yaml(workload_doc("chat")),
        headers=ADMIN | YAML,
        params={"expectedGeneration": 1},
    )
    assert stale.status_code == 409
    assert stale.json()["error"] == "conflict" and stale.json()["currentGeneration"] == 2
    assert client.get("/v1/plans/latest", headers=ADMIN).json()["metadata"]["generation"] == 2
    fresh = submit(client, workload_doc("chat"), expectedGeneration=2)
    assert fresh["metadata"]["generation"] == 3


def test_a_resubmission_keeps_replicas_where_they_were(client: TestClient) -> None:
    small_grid(client)
    first = submit(client, workload_doc("chat", rps=4))
    second = submit(client, workload_doc("chat", rps=4))
    placed = sorted((a["node"], tuple(a["gpus"])) for a in first["spec"]["assignments"])
    again = sorted((a["node"], tuple(a["gpus"])) for a in second["spec"]["assignments"])
    assert placed == again


def test_read_plans_back(client: TestClient) -> None:
    assert client.get("/v1/plans/latest", headers=ADMIN).status_code == 404
    small_grid(client)
    first = submit(client, workload_doc("chat"))
    submit(client, workload_doc("chat"), workload_doc("huge", model="llama-3.1-405b"))
    assert client.get("/v1/plans/1", headers=ADMIN).json() == first
    assert client.get("/v1/plans/9", headers=ADMIN).status_code == 404
    assert client.get("/v1/plans/0", headers=ADMIN).status_code == 422
    listed = client.get("/v1/plans", headers=ADMIN).json()["items"]
    assert [p["generation"] for p in listed] == [2, 1]
    assert listed[0]["unplaced"] == 1 and listed[0]["trigger"] == "submitted"
    page = client.get("/v1/plans", params={"before": 2}, headers=ADMIN).json()["items"]
    assert [p["generation"] for p in page] == [1]
    explanation = client.get("/v1/plans/2/explanation", headers=ADMIN).json()
    entries = {w["name"]: w for w in explanation["workloads"]}
    assert entries["chat"]["placed"] and entries["chat"]["replicas"] >= 1
    assert not entries["huge"]["placed"] and entries["huge"]["hints"]
    assert any(reason["unit"] == "GiB" for reason in entries["huge"]["reasons"])
    assert any("GiB" in line for line in entries["huge"]["summary"])
    assert client.get("/v1/plans/5/explanation", headers=ADMIN).status_code == 404


def test_plan_requests_are_checked_field_by_field(client: TestClient) -> None:
    bad = workload_doc("chat")
    bad["spec"]["slo"]["ttftMs"] = -5
    response = client.post("/v1/plans", content=to_yaml(bad), headers=ADMIN | YAML)
    assert response.status_code == 422
    issue = response.json()["issues"][0]
    assert issue["field"] == "spec.slo.ttftMs" and issue["line"] is not None

    def post(body: str, **params: object) -> tuple[int, list[dict[str, object]]]:
        answer = client.post("/v1/plans", content=body, headers=ADMIN | YAML, params=params)
        return answer.status_code, answer.json().get("issues", [])

    status, issues = post(to_yaml(node_doc("a")))
    assert (
        status == 422 and issues[0]["field"] == "kind" and "PUT /v1/nodes" in issues[0]["message"]
    )
    status, issues = post("kind: [unclosed")
    assert status == 422 and issues[0]["line"] is not None
    status, issues = post("")
    assert status == 422
    status, issues = post(to_yaml(workload_doc("a"), workload_doc("a")))
    assert status == 422 and issues[0]["field"] == "metadata.name"  # defined twice
    unknown = workload_doc("a", model="no-such-model")
    status, issues = post(to_yaml(unknown))
    assert status == 422 and issues[0]["field"] == "spec.model"
    status, issues = post(to_yaml(workload_doc("a")), timeLimitSeconds=999)
    assert status == 422 and issues[0]["field"] == "timeLimitSeconds"
    status, issues = post(to_yaml(workload_doc("a")), strategy="magic")
    assert status == 422 and issues[0]["field"] == "query.strategy"


def test_too_many_documents_is_422_on_documents(make_client: MakeClient) -> None:
    client = make_client(max_documents=2)
    documents = [workload_doc(f"w{i}") for i in range(3)]
    response = client.post("/v1/plans", json=documents, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["issues"][0]["field"] == "documents"


def test_a_large_plan_body_is_413(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=4096)
    documents = [workload_doc(f"w{i}") for i in range(20)]
    response = client.post("/v1/plans", json=documents, headers=ADMIN)
    assert response.status_code == 413


def test_validate_over_http(client: TestClient) -> None:
    small_grid(client)
    ok = client.post("/v1/validate", json=[workload_doc("chat")], headers=ADMIN).json()
    assert ok["valid"] is True and ok["workloads"] == [
        {"name": "chat", "placeable": True, "reasons": []}
    ]
    huge = client.post(
        "/v1/validate", json=[workload_doc("huge", model="llama-3.1-405b")], headers=ADMIN
    ).json()
    assert huge["valid"] is False and huge["workloads"][0]["placeable"] is False
    assert huge["workloads"][0]["reasons"]
    # Nodes in the body replace the stored grid: one H200 node can hold what 4090s cannot.
    own_grid = [node_doc("big", gpu="h200-sxm", count=8), workload_doc("x", model="llama-3.3-70b")]
    assert client.post("/v1/validate", json=own_grid, headers=ADMIN).json()["valid"] is True
    broken = workload_doc("chat")
    broken["spec"]["replicas"] = {"min": 3, "max": 1}
    invalid = client.post("/v1/validate", json=[broken], headers=ADMIN)
    assert invalid.status_code == 422
    assert invalid.json()["issues"][0]["field"] == "spec.replicas"
    assert client.post("/v1/plans", json=[broken], headers=ADMIN).status_code == 422


def test_the_service_end_to_end_on_each_backend(make_client: MakeClient, database_url: str) -> None:
    """Register, plan, conflict, pull and replan through the app on SQLite and PostgreSQL."""
    client = make_client(database_url=database_url)
    names = small_grid(client)
    first = submit(client, workload_doc("chat", rps=4))
    stale = client.post(
        "/v1/plans", json=[workload_doc("chat")], headers=ADMIN, params={"expectedGeneration": 0}
    )
    assert stale.status_code == 409
    pulled = {
        name: client.get(f"/v1/nodes/{name}/assignments", headers=ADMIN).json()["assignments"]
        for name in names
    }
    assert sorted(a for found in pulled.values() for a in map(str, found)) == sorted(
        map(str, first["spec"]["assignments"])
    )
    busy = next(name for name, found in pulled.items() if found)
    client.post(f"/v1/nodes/{busy}/telemetry", json={"healthy": False}, headers=ADMIN)
    replanned = client.post("/v1/replan", params={"onlyIfChanged": True}, headers=ADMIN).json()
    assert replanned["generation"] == 2
    assert busy not in {a["node"] for a in replanned["plan"]["spec"]["assignments"]}


def test_queued_submissions_build_on_each_other(client: TestClient) -> None:
    """Without expectedGeneration, concurrent submissions queue for the solver and each builds
    on the plan the previous one stored: no 409 for them."""
    small_grid(client)

    def post(index: int) -> tuple[int, int]:
        answer = client.post("/v1/plans", json=[workload_doc("chat", rps=1 + index)], headers=ADMIN)
        return answer.status_code, answer.json()["metadata"]["generation"]

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = list(pool.map(post, range(3)))
    assert sorted(answers) == [(200, 1), (200, 2), (200, 3)]


def test_plans_are_solved_in_a_worker_process(make_client: MakeClient) -> None:
    """The default: the server process keeps answering while a worker process plans."""
    client = make_client(solve_in_subprocess=True)
    small_grid(client)
    plan = submit(client, workload_doc("chat", rps=4), workload_doc("huge", model="llama-3.1-405b"))
    assert plan["metadata"]["generation"] == 1 and plan["spec"]["assignments"]
    explanation = client.get("/v1/plans/1/explanation", headers=ADMIN).json()["workloads"]
    assert [w["placed"] for w in explanation] == [True, False]
    checked = client.post("/v1/validate", json=[workload_doc("chat")], headers=ADMIN).json()
    assert checked["valid"] is True
    pool = client.app.state.gridplace.service.solver  # type: ignore[attr-defined]
    assert pool.processes == 1 and pool._executor is not None


@pytest.mark.parametrize(("in_worker", "reads"), [(True, 0), (False, 2)])
def test_a_solver_worker_reads_the_grid_itself(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, in_worker: bool, reads: int
) -> None:
    """With a solver worker, a plan and a dry run read no node in the serving process (in the
    calling thread: one read each); either way the plan is made on the same judged grid,
    including a heartbeat the server answered and still holds in memory."""
    client = make_client(solve_in_subprocess=in_worker, heartbeat_flush_s=60)
    names = small_grid(client)
    sick = node_token(client, names[0]) | {"Prefer": "return=minimal"}
    answer = client.post(f"/v1/nodes/{names[0]}/telemetry", json={"healthy": False}, headers=sick)
    assert answer.status_code == 204  # held in memory: no batch is due for 60 s
    service = client.app.state.gridplace.service  # type: ignore[attr-defined]
    counted: list[int] = []
    read_nodes = service.store.nodes
    monkeypatch.setattr(service.store, "nodes", lambda *a, **k: counted.append(1) or read_nodes())
    plan = submit(client, workload_doc("chat", rps=4))
    dry = client.post("/v1/plans?dryRun=true", json=[workload_doc("chat", rps=4)], headers=ADMIN)
    assert dry.status_code == 200, dry.text
    assert len(counted) == reads
    assert plan["spec"]["assignments"] and names[0] not in {
        a["node"] for a in plan["spec"]["assignments"]
    }
    stored = service.store.latest_plan()
    assert stored.basis == {view.name: view.basis for view in service.grid().nodes}
    assert stored.basis[names[0]].healthy is False


def test_validate_refuses_what_the_cli_refuses(client: TestClient) -> None:
    """Unknown traffic regions (with "did you mean"), no workload and no node are a 422 with the
    CLI's own message, naming the document and field."""
    from gridplace.api.bodies import parse_body
    from gridplace.api.wiring import planning_input_issues
    from gridplace.specs import build_bundle

    lost = workload_doc("chat")
    lost["spec"]["traffic"]["sources"] = [{"region": "eu-wset", "share": 1.0}]
    small_grid(client)
    refused = client.post("/v1/validate", json=[lost], headers=ADMIN)
    assert refused.status_code == 422
    (issue,) = refused.json()["issues"]
    assert "did you mean: eu-west" in issue["message"]
    assert issue["field"] == "spec.traffic.sources[0].region" and issue["document"] == 0
    body = json.dumps([node_doc("n"), lost]).encode()
    documents = parse_body(body, 10, ("Node", "InferenceWorkload"), 100)
    (cli_issue,) = planning_input_issues(build_bundle(documents))
    assert issue["message"] == cli_issue.message  # the CLI's words
    only_nodes = client.post("/v1/validate", json=[node_doc("n")], headers=ADMIN)
    assert only_nodes.status_code == 422
    assert "no InferenceWorkload document" in only_nodes.json()["issues"][0]["message"]
    assert client.post("/v1/validate", json=[], headers=ADMIN).status_code == 422


def test_validate_without_any_node_is_422(client: TestClient) -> None:
    answer = client.post("/v1/validate", json=[workload_doc("chat")], headers=ADMIN)
    assert answer.status_code == 422
    assert "no Node document" in answer.json()["issues"][0]["message"]
