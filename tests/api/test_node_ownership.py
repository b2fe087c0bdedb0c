"""Issue 14, item 2: an agent re-registering its node keeps what the operator registered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gridplace.hal import BackendKind, NodeOptions, open_backend
from gridplace.hal.inventory import build_inventory
from tests.api.conftest import ADMIN, node_doc, node_token, register, to_yaml

FLEET = Path(__file__).parents[2] / "examples" / "fleet" / "rtx4090-pair.yaml"


def operator_node() -> dict[str, Any]:
    doc = node_doc("box-1", gpu="rtx-4090", count=2, region="eu-west", provider="acme", price=2.5)
    doc["metadata"]["labels"] = {"tier": "gold"}
    doc["spec"] |= {"claims": "benchmarked", "reliability": 0.999, "networkGbps": 10.0}
    return doc


def agent_document(options: NodeOptions) -> dict[str, Any]:
    """What ``gridplace agent --backend fake --fake-fleet ...`` sends (``Agent.node_document``)."""
    with open_backend(BackendKind.FAKE, FLEET) as backend:
        document: dict[str, Any] = build_inventory(backend.devices(), options).node.to_yaml_dict()
    return document


def put(client: TestClient, document: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.put("/v1/nodes/box-1", content=to_yaml(document), headers=headers)


def stored_spec(client: TestClient) -> dict[str, Any]:
    node: dict[str, Any] = client.get("/v1/nodes/box-1", headers=ADMIN).json()["node"]
    return node["spec"] | {"labels": node["metadata"].get("labels", {})}


def test_an_agent_without_placement_flags_keeps_the_operators_facts(client: TestClient) -> None:
    register(client, operator_node())
    before = stored_spec(client)
    # As the README shows it: no --region, --provider, --price-per-hour.
    response = put(client, agent_document(NodeOptions(name="box-1")), node_token(client, "box-1"))
    assert response.status_code == 200, response.text
    after = stored_spec(client)
    assert after == before
    assert (after["region"], after["provider"], after["pricePerHour"]) == ("eu-west", "acme", 2.5)
    assert after["claims"] == "benchmarked" and after["reliability"] == 0.999
    assert after["labels"] == {"tier": "gold"} and after["networkGbps"] == 10.0


def test_an_agent_flag_that_disagrees_is_refused_not_applied(client: TestClient) -> None:
    register(client, operator_node())
    before = stored_spec(client)
    sent = agent_document(NodeOptions(name="box-1", region="us-east", price_per_hour=0.1))
    response = put(client, sent, node_token(client, "box-1"))
    assert response.status_code == 409, response.text
    message = response.json()["message"]
    assert "spec.region 'eu-west'" in message and "'us-east'" in message
    assert "spec.pricePerHour 2.5" in message and "admin token" in message
    assert {i["field"] for i in response.json()["issues"]} == {"spec.region", "spec.pricePerHour"}
    assert stored_spec(client) == before


def test_new_hardware_drops_the_operators_benchmark_claim(client: TestClient) -> None:
    register(client, operator_node())
    sent = node_doc("box-1", gpu="rtx-4090", count=1, region="unassigned", provider="unassigned")
    sent["spec"] |= {"pricePerHour": 0.0, "claims": "probed"}
    response = put(client, sent, node_token(client, "box-1"))
    assert response.status_code == 200, response.text
    spec = stored_spec(client)
    assert spec["claims"] == "probed" and spec["gpus"] == [{"model": "rtx-4090", "count": 1}]
    assert spec["region"] == "eu-west"


def test_the_admin_still_replaces_the_whole_node(client: TestClient) -> None:
    register(client, operator_node())
    register(client, node_doc("box-1", region="us-east", provider="other", price=1.0))
    spec = stored_spec(client)
    assert (spec["region"], spec["provider"], spec["claims"]) == (
        "us-east",
        "other",
        "self-reported",
    )
