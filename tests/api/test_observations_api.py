"""Observation windows through the API: own node only, JSON or YAML, retention, reading back."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import (
    ADMIN,
    FakeClock,
    MakeClient,
    TestClient,
    node_doc,
    node_token,
    register,
    to_yaml,
)

YAML = {"Content-Type": "application/yaml"}


def window(
    node: str, start_s: float = 1000.0, workload: str = "chat", **extra: Any
) -> dict[str, Any]:
    return {
        "node": node, "workload": workload, "model": "llama-3.1-8b", "gpu": "rtx-4090",
        "precision": "fp8", "engine": "vllm", "startS": start_s, "endS": start_s + 60,
        "requests": 120, "promptTokens": 60_000, "outputTokens": 24_000,
        "decodeSeconds": 40.0, "decodeSteps": 2_000, "meanRunningBatch": 12.0,
        "meanContextTokens": 700.0, "prefillSeconds": 6.0, **extra,
    }  # fmt: skip


def observations_doc(*windows: dict[str, Any], name: str = "obs") -> dict[str, Any]:
    return {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "Observations",
        "metadata": {"name": name},
        "spec": {"windows": list(windows)},
    }


def test_a_node_posts_its_own_windows_in_json_or_yaml_and_the_admin_reads_them(
    client: TestClient,
) -> None:
    register(client, node_doc("a"))
    token = node_token(client, "a")
    posted = client.post(
        "/v1/nodes/a/observations", json=observations_doc(window("a")), headers=token
    )
    assert posted.status_code == 200, posted.text
    assert posted.json() == {"node": "a", "windows": 1, "storedWindows": 1}
    body = to_yaml(observations_doc(window("a", 1060.0), window("a", 1120.0, workload="code")))
    assert (
        client.post("/v1/nodes/a/observations", content=body, headers=token | YAML).json()[
            "storedWindows"
        ]
        == 3
    )
    every = client.get("/v1/observations", headers=ADMIN).json()["items"]
    assert [w["window"]["startS"] for w in every] == [1000.0, 1060.0, 1120.0]
    chat = client.get("/v1/observations", params={"workload": "chat"}, headers=ADMIN).json()
    assert {w["window"]["workload"] for w in chat["items"]} == {"chat"}
    assert len(chat["items"]) == 2
    assert client.get("/v1/observations", params={"node": "b"}, headers=ADMIN).json() == {
        "items": []
    }
    assert client.get("/v1/observations", headers=token).status_code == 403


def test_a_node_token_cannot_post_another_nodes_observations(client: TestClient) -> None:
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    token = node_token(client, "a")
    other_url = client.post(
        "/v1/nodes/b/observations", json=observations_doc(window("b")), headers=token
    )
    assert other_url.status_code == 403
    smuggled = client.post(
        "/v1/nodes/a/observations", json=observations_doc(window("a"), window("b")), headers=token
    )
    assert smuggled.status_code == 403 and "node b" in smuggled.json()["message"]
    mixed = client.post(
        "/v1/nodes/a/observations", json=observations_doc(window("b")), headers=ADMIN
    )
    assert mixed.status_code == 422 and mixed.json()["issues"][0]["field"] == "spec.windows"
    assert client.get("/v1/observations", headers=ADMIN).json()["items"] == []


def test_bad_windows_name_the_field_and_store_nothing(client: TestClient) -> None:
    register(client, node_doc("a"))
    bad = observations_doc(window("a", endS=900.0))  # ends before it starts
    response = client.post("/v1/nodes/a/observations", json=bad, headers=ADMIN)
    assert response.status_code == 422
    assert "spec.windows[0]" in (response.json()["issues"][0]["field"] or "")
    wrong_kind = client.post("/v1/nodes/a/observations", json=node_doc("a"), headers=ADMIN)
    assert wrong_kind.status_code == 422
    unknown = client.post(
        "/v1/nodes/zz/observations", json=observations_doc(window("zz")), headers=ADMIN
    )
    assert unknown.status_code == 404
    assert client.get("/v1/observations", headers=ADMIN).json()["items"] == []


def test_retention_keeps_the_newest_per_node_and_drops_old_ones(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(observations_kept_per_node=3, observation_max_age_s=3600)
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    old = observations_doc(window("b", 0.0))
    assert client.post("/v1/nodes/b/observations", json=old, headers=ADMIN).status_code == 200
    clock.advance(3601)
    batch = observations_doc(*(window("a", 1000.0 + 60 * i) for i in range(5)))
    response = client.post("/v1/nodes/a/observations", json=batch, headers=ADMIN)
    assert response.json()["storedWindows"] == 3
    items = client.get("/v1/observations", headers=ADMIN).json()["items"]
    assert [(w["window"]["node"], w["window"]["startS"]) for w in items] == [
        ("a", 1120.0), ("a", 1180.0), ("a", 1240.0)
    ]  # fmt: skip
