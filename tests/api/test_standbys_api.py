"""Warm standbys through the API: a node's assignments answer lists its standbys, its agent
reports their state, and a replan counts as warm only the standbys not reported cold."""

from __future__ import annotations

from typing import Any

from gridplace.api.standbys import held_standbys
from gridplace.api.store.records import StateRecord
from gridplace.specs import PlacementPlan
from tests.api.conftest import ADMIN, TestClient, node_token, small_grid, submit, workload_doc


def with_standbys(client: TestClient) -> PlacementPlan:
    small_grid(client)
    document = workload_doc("chat", rps=1.0, replicas=(1, 1))
    document["spec"]["prewarm"] = {"diskGiB": 100, "idleGpuBudgetPerHour": 0}
    submit(client, document)
    latest = client.get("/v1/plans/latest", headers=ADMIN)
    assert latest.status_code == 200, latest.text
    plan = PlacementPlan.model_validate(latest.json())
    assert plan.spec.prewarm, "the plan should hold a standby"
    return plan


def test_a_nodes_answer_lists_its_standbys_and_its_report_takes_their_state(
    client: TestClient,
) -> None:
    plan = with_standbys(client)
    entry = plan.spec.prewarm[0]
    token = node_token(client, entry.node)
    answer = client.get(f"/v1/nodes/{entry.node}/assignments", headers=token)
    assert answer.status_code == 200, answer.text
    assert [(p["workload"], p["level"]) for p in answer.json()["prewarm"]] == [("chat", "disk")]
    serving = plan.spec.assignments[0].node
    other = client.get(f"/v1/nodes/{serving}/assignments", headers=node_token(client, serving))
    assert other.json().get("prewarm", []) == []
    standby = {"workload": "chat", "precision": entry.precision.value, "level": "disk",
               "state": "skipped", "message": "cache full"}  # fmt: skip
    put = client.put(f"/v1/nodes/{entry.node}/state", json={"standbys": [standby]}, headers=token)
    assert put.status_code == 200, put.text
    read = client.get(f"/v1/nodes/{entry.node}/state", headers=token).json()
    assert read["report"]["standbys"][0]["state"] == "skipped"
    bad = client.put(
        f"/v1/nodes/{entry.node}/state",
        json={"standbys": [{**standby, "state": "dreaming"}]},
        headers=token,
    )
    assert bad.status_code == 422


def _record(node: str, standbys: list[dict[str, Any]]) -> StateRecord:
    return StateRecord(node, 1, {"standbys": standbys}, None)  # type: ignore[arg-type]


def test_a_replan_drops_the_standbys_reported_cold(client: TestClient) -> None:
    plan = with_standbys(client)
    entry = plan.spec.prewarm[0]
    item = {"workload": "chat", "precision": entry.precision.value, "level": "disk"}
    for state, kept in (("skipped", 0), ("failed", 0), ("fetching", 1), ("ready", 1)):
        reports = {entry.node: _record(entry.node, [{**item, "state": state}])}
        assert len(held_standbys(plan, reports.get).spec.prewarm) == kept, state
    assert held_standbys(plan, {}.get).spec.prewarm == plan.spec.prewarm  # not reported yet
