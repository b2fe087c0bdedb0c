"""Node endpoints: registration, identity (401/403), telemetry, probes, assignments, state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gridplace.api.routes.nodes import node_response
from gridplace.api.store import store as store_module
from tests.api.conftest import (
    ADMIN,
    FakeClock,
    MakeClient,
    TestClient,
    node_doc,
    node_token,
    register,
    submit,
    to_yaml,
    workload_doc,
)

YAML = {"Content-Type": "application/yaml"}


def test_register_creates_then_replaces(client: TestClient) -> None:
    response = client.put("/v1/nodes/a", content=to_yaml(node_doc("a")), headers=ADMIN | YAML)
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "a" and body["healthy"] and not body["silent"]
    assert body["node"]["spec"]["gpus"] == [{"model": "rtx-4090", "count": 1}]
    again = client.put("/v1/nodes/a", json=node_doc("a", price=0.8), headers=ADMIN)
    assert again.status_code == 200
    assert again.json()["node"]["spec"]["pricePerHour"] == 0.8


def test_the_admin_registers_a_whole_inventory_at_once(client: TestClient) -> None:
    inventory = to_yaml(node_doc("a"), node_doc("b", gpu="NVIDIA H100 80GB HBM3"))
    response = client.post("/v1/nodes", content=inventory, headers=ADMIN | YAML)
    assert response.status_code == 200
    assert [n["name"] for n in response.json()["items"]] == ["a", "b"]
    assert response.json()["items"][1]["node"]["spec"]["gpus"][0]["model"] == "h100-sxm"
    bad = to_yaml(node_doc("c"), node_doc("d", gpu="rtx-9999"))
    refused = client.post("/v1/nodes", content=bad, headers=ADMIN | YAML)
    assert refused.status_code == 422 and refused.json()["issues"][0]["document"] == 1
    assert client.get("/v1/nodes/c", headers=ADMIN).status_code == 404  # all or nothing
    token = node_token(client, "a")
    assert client.post("/v1/nodes", content=inventory, headers=token | YAML).status_code == 403


def test_register_resolves_gpu_names_and_reports_unknown_ones_by_field(client: TestClient) -> None:
    document = node_doc("a", gpu="NVIDIA GeForce RTX 4090")
    assert register(client, document)["node"]["spec"]["gpus"][0]["model"] == "rtx-4090"
    response = client.put("/v1/nodes/b", json=node_doc("b", gpu="rtx-9999"), headers=ADMIN)
    assert response.status_code == 422
    issue = response.json()["issues"][0]
    assert issue["field"] == "spec.gpus[0].model" and "rtx-9999" in issue["message"]


def test_register_names_the_field_at_fault(client: TestClient) -> None:
    document = node_doc("a")
    document["spec"]["pricePerHour"] = -1
    document["spec"]["gpuz"] = []
    response = client.put("/v1/nodes/a", content=to_yaml(document), headers=ADMIN | YAML)
    assert response.status_code == 422
    fields = {issue["field"] for issue in response.json()["issues"]}
    assert fields == {"spec.pricePerHour", "spec.gpuz"}
    lines = {issue["line"] for issue in response.json()["issues"]}
    assert None not in lines  # YAML bodies get line numbers


def test_register_refuses_a_name_other_than_the_url(client: TestClient) -> None:
    response = client.put("/v1/nodes/b", json=node_doc("a"), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["issues"][0]["field"] == "metadata.name"


def test_register_refuses_other_kinds_and_several_documents(client: TestClient) -> None:
    response = client.put("/v1/nodes/w", json=workload_doc("w"), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["issues"][0]["field"] == "kind"
    two = client.put("/v1/nodes/a", json=[node_doc("a"), node_doc("b")], headers=ADMIN)
    assert two.status_code == 422 and two.json()["issues"][0]["field"] == "documents"
    garbage = client.put("/v1/nodes/a", content=b"\xff\xfe", headers=ADMIN)
    assert garbage.status_code == 422


def test_requests_without_a_valid_token_are_401(client: TestClient) -> None:
    assert client.get("/v1/nodes").status_code == 401
    response = client.get("/v1/nodes", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    forged = {"Authorization": "Bearer gpn.0011223344556677.not-the-secret"}
    assert client.put("/v1/nodes/a", json=node_doc("a"), headers=forged).status_code == 401


def test_a_node_token_acts_only_for_its_node(client: TestClient) -> None:
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    token_a = node_token(client, "a")
    assert client.put("/v1/nodes/a", json=node_doc("a"), headers=token_a).status_code == 200
    for method, path, body in [
        ("PUT", "/v1/nodes/b", node_doc("b", gpu="h100-sxm", count=8)),  # fake GPUs elsewhere
        ("POST", "/v1/nodes/b/telemetry", {"healthy": False}),
        ("PUT", "/v1/nodes/b/state", {"replicas": []}),
        ("GET", "/v1/nodes/b/assignments", None),
        ("GET", "/v1/nodes/b", None),
        ("GET", "/v1/nodes", None),  # admin only
        ("POST", "/v1/plans", [workload_doc("w")]),
        ("DELETE", "/v1/nodes/a", None),
        ("POST", "/v1/admin/nodes/a/tokens", None),
    ]:
        response = client.request(method, path, json=body, headers=token_a)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"] == "forbidden"
    b = client.get("/v1/nodes/b", headers=ADMIN).json()
    assert b["node"]["spec"]["gpus"][0]["model"] == "rtx-4090"  # untouched


def test_a_node_token_cannot_claim_attested_inventory(client: TestClient) -> None:
    token = node_token(client, "a")
    attested = node_doc("a", claims="attested")
    assert client.put("/v1/nodes/a", json=attested, headers=token).status_code == 403
    benchmarked = node_doc("a", claims="benchmarked")
    assert client.put("/v1/nodes/a", json=benchmarked, headers=token).status_code == 201
    assert client.put("/v1/nodes/a", json=attested, headers=ADMIN).status_code == 200


def test_a_token_may_register_its_node_before_it_exists_but_not_report(client: TestClient) -> None:
    token = node_token(client, "new")
    assert client.post("/v1/nodes/new/telemetry", json={}, headers=token).status_code == 404
    assert client.get("/v1/nodes/new/assignments", headers=token).status_code == 404
    assert client.put("/v1/nodes/new/state", json={}, headers=token).status_code == 404
    assert client.get("/v1/nodes/new", headers=token).status_code == 404
    assert client.put("/v1/nodes/new", json=node_doc("new"), headers=token).status_code == 201


def test_revoked_tokens_are_refused(client: TestClient) -> None:
    token = node_token(client, "a")
    assert client.put("/v1/nodes/a", json=node_doc("a"), headers=token).status_code == 201
    tokens = client.get("/v1/admin/tokens", params={"node": "a"}, headers=ADMIN).json()["items"]
    assert len(tokens) == 1 and "token" not in tokens[0]
    token_id = tokens[0]["tokenId"]
    assert client.delete(f"/v1/admin/tokens/{token_id}", headers=ADMIN).status_code == 204
    assert client.get("/v1/nodes/a", headers=token).status_code == 401
    assert client.delete("/v1/admin/tokens/0000000000000000", headers=ADMIN).status_code == 404


def test_telemetry_updates_health_and_heartbeat(client: TestClient, clock: FakeClock) -> None:
    register(client, node_doc("a"))
    token = node_token(client, "a")
    clock.advance(30)
    report = {"healthy": False, "thermal": {"throttleRatio": 0.4}, "message": "fan"}
    body = client.post("/v1/nodes/a/telemetry", json=report, headers=token).json()
    assert body["healthy"] is False and body["secondsSinceHeard"] == 0
    assert body["lastHeartbeat"].startswith("2026-11-27T12:00:30")
    assert body["node"]["status"]["thermal"]["throttleRatio"] == 0.4
    bad = client.post(
        "/v1/nodes/a/telemetry", json={"thermal": {"throttleRatio": 2}}, headers=token
    )
    assert bad.status_code == 422
    assert bad.json()["issues"][0]["field"] == "thermal.throttleRatio"
    unknown = client.post("/v1/nodes/a/telemetry", json={"temperature": 3}, headers=token)
    assert unknown.status_code == 422 and unknown.json()["issues"][0]["field"] == "temperature"


def test_list_and_delete_nodes(client: TestClient, clock: FakeClock) -> None:
    for name in ["c", "a", "b"]:
        register(client, node_doc(name))
    listed = client.get("/v1/nodes", params={"limit": 2}, headers=ADMIN).json()
    assert [n["name"] for n in listed["items"]] == ["a", "b"] and listed["total"] == 3
    assert client.delete("/v1/nodes/b", headers=ADMIN).status_code == 204
    assert client.delete("/v1/nodes/b", headers=ADMIN).status_code == 404
    clock.advance(61)  # past the 60 s grace: silent (one node of two is no mass silence)
    client.post("/v1/nodes/a/telemetry", json={}, headers=ADMIN)
    views = {n["name"]: n for n in client.get("/v1/nodes", headers=ADMIN).json()["items"]}
    assert views["a"]["healthy"] and not views["c"]["healthy"] and views["c"]["silent"]
    assert client.get("/v1/nodes/c", headers=ADMIN).json()["silent"] is True


def test_invalid_node_names_in_paths_are_422(client: TestClient) -> None:
    response = client.get("/v1/nodes/Not_Valid", headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["issues"][0]["field"] == "path.name"


def probes_doc(source: str, name: str = "p1", samples: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "LatencyProbes",
        "metadata": {"name": name},
        "spec": {
            "samples": [
                {"source": source, "target": f"t{i}", "rttMs": [20.0, 21.5]} for i in range(samples)
            ]
        },
    }


def test_node_probes_must_be_measured_from_the_node(client: TestClient) -> None:
    register(client, node_doc("a"))
    token = node_token(client, "a")
    accepted = client.post("/v1/nodes/a/probes", json=probes_doc("a", samples=2), headers=token)
    assert accepted.status_code == 200 and accepted.json()["samples"] == 2
    spoofed = client.post("/v1/nodes/a/probes", json=probes_doc("b"), headers=token)
    assert spoofed.status_code == 403
    from_admin = client.post("/v1/nodes/a/probes", json=probes_doc("b"), headers=ADMIN)
    assert from_admin.status_code == 422
    assert from_admin.json()["issues"][0]["field"] == "spec.samples"
    region = probes_doc("region/us-east", name="campaign")
    assert client.post("/v1/probes", json=region, headers=ADMIN).status_code == 200
    assert client.post("/v1/probes", json=region, headers=token).status_code == 403
    topology = client.get("/v1/topology", headers=ADMIN).json()
    assert topology["totalLinks"] == 3 and topology["nodes"][0]["name"] == "a"
    link = next(link for link in topology["links"] if "region/us-east" in link.values())
    assert link["p50Ms"] > 0 and link["samples"] == 2


def test_list_length_limits_name_the_field(make_client: MakeClient) -> None:
    client = make_client(max_list_items=3)
    register(client, node_doc("a"))
    response = client.post("/v1/nodes/a/probes", json=probes_doc("a", samples=4), headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["issues"][0]["field"] == "spec.samples"
    replicas = [{"workload": "w", "gpus": [0], "phase": "running"}] * 5000
    state = client.put("/v1/nodes/a/state", json={"replicas": replicas}, headers=ADMIN)
    assert state.status_code == 422 and state.json()["issues"][0]["field"] == "replicas"


def test_bodies_over_the_limit_are_413(make_client: MakeClient) -> None:
    client = make_client(max_body_bytes=2048)
    big = node_doc("a")
    big["metadata"]["labels"] = {f"k{i}": "v" * 60 for i in range(40)}
    response = client.put("/v1/nodes/a", content=json.dumps(big), headers=ADMIN)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"

    def chunks() -> object:  # no Content-Length: the limit still holds
        for _ in range(10):
            yield b" " * 1000

    streamed = client.put("/v1/nodes/a", content=chunks(), headers=ADMIN)
    assert streamed.status_code == 413


def test_agents_pull_assignments_and_report_state(client: TestClient) -> None:
    register(client, node_doc("a", gpu="h100-sxm"))
    token = node_token(client, "a")
    empty = client.get("/v1/nodes/a/assignments", headers=token)
    assert empty.status_code == 200 and empty.json() == {"node": "a", "assignments": []}
    plan = submit(client, workload_doc("chat", rps=1, replicas=(1, 1)))
    response = client.get("/v1/nodes/a/assignments", headers=token)
    body = response.json()
    assert body["generation"] == 1 and body["plan"] == plan["metadata"]["name"]
    assert body["assignments"] == plan["spec"]["assignments"]
    etag = response.headers["ETag"]
    unchanged = client.get("/v1/nodes/a/assignments", headers=token | {"If-None-Match": etag})
    assert unchanged.status_code == 304

    report = {
        "observedGeneration": 1,
        "replicas": [
            {"workload": "chat", "gpus": [0], "precision": "fp8", "phase": "starting"},
        ],
        "conditions": [
            {"type": "Applied", "status": "False", "reason": "WeightsDownloading"},
            {"type": "Progressing", "status": "True", "message": "1 replica starting"},
        ],
    }
    put = client.put("/v1/nodes/a/state", json=report, headers=token)
    assert put.status_code == 200
    got = client.get("/v1/nodes/a/state", headers=ADMIN).json()
    assert got["report"]["conditions"][0]["reason"] == "WeightsDownloading"
    assert got["report"]["replicas"][0]["phase"] == "starting"
    wrong = dict(report, conditions=[{"type": "Broken", "status": "True"}])
    refused = client.put("/v1/nodes/a/state", json=wrong, headers=token)
    assert refused.status_code == 422
    assert refused.json()["issues"][0]["field"] == "conditions[0].type"


def test_state_of_a_node_that_never_reported_is_404(client: TestClient) -> None:
    register(client, node_doc("a"))
    assert client.get("/v1/nodes/a/state", headers=ADMIN).status_code == 404


def test_a_minimal_heartbeat_is_recorded_and_answered_204(
    client: TestClient, clock: FakeClock
) -> None:
    register(client, node_doc("a"))
    token = node_token(client, "a") | {"Prefer": "return=minimal"}
    clock.advance(30)
    report = {"healthy": False, "thermal": {"throttleRatio": 0.3}}
    answer = client.post("/v1/nodes/a/telemetry", json=report, headers=token)
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["Preference-Applied"] == "return=minimal"
    node = client.get("/v1/nodes/a", headers=ADMIN).json()
    assert node["healthy"] is False and node["lastHeartbeat"].startswith("2026-11-27T12:00:30")
    assert node["node"]["status"]["thermal"]["throttleRatio"] == 0.3
    missing = client.post(
        "/v1/nodes/b/telemetry", json=report, headers=ADMIN | {"Prefer": "return=minimal"}
    )
    assert missing.status_code == 404


def test_a_page_of_nodes_reads_its_rows_and_matches_the_whole_grid_judged(
    client: TestClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /v1/nodes builds the documents of its page only, judged as the planner's grid view
    judges them: with silence, and with a mass silence, the same items as the whole grid's."""
    names = [f"n{i:03d}" for i in range(240)]
    inventory = to_yaml(*(node_doc(name) for name in names))
    assert client.post("/v1/nodes", content=inventory, headers=ADMIN | YAML).status_code == 200
    service = client.app.state.gridplace.service  # type: ignore[attr-defined]
    built = 0
    record = store_module._node_record

    def counted(row: Any) -> Any:
        nonlocal built
        built += 1
        return record(row)

    monkeypatch.setattr(store_module, "_node_record", counted)
    pages: list[dict[str, Any]] = [
        {"limit": 7, "offset": 0},
        {"limit": 20, "offset": 101},
        {"limit": 20, "after": "n199", "offset": 3},
        {"limit": 5, "offset": 238},
        {"limit": 5, "offset": 500},
    ]

    def check_pages() -> None:
        nonlocal built
        whole = service.grid().nodes
        for params in pages:
            skipped = names.index(params["after"]) + 1 if "after" in params else 0
            start = skipped + params["offset"]
            expected = [
                node_response(view).model_dump(mode="json", by_alias=True, exclude_none=True)
                for view in whole[start : start + params["limit"]]
            ]
            built = 0
            page = client.get("/v1/nodes", params=params, headers=ADMIN).json()
            assert built == len(expected) and page == {"items": expected, "total": len(names)}

    check_pages()  # just started: nobody is silent yet
    clock.advance(61)  # past the 60 s grace
    fresh = to_yaml(*(node_doc(n, throttle=0.0) for n in names[40:]))  # a status: heard now
    assert client.post("/v1/nodes", content=fresh, headers=ADMIN | YAML).status_code == 200
    check_pages()  # 40 of 240 silent: marked unhealthy
    first = {"limit": 1}
    assert not client.get("/v1/nodes", params=first, headers=ADMIN).json()["items"][0]["healthy"]
    clock.advance(61)  # every node silent: a mass silence, nobody marked
    check_pages()
    assert client.get("/v1/nodes", params=first, headers=ADMIN).json()["items"][0]["healthy"]
