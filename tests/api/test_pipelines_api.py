"""Pipeline replicas through the API: a stage node's pull lists its stage, a node reports only
its own stages, the first stage's node reads every stage's phase (``lost`` once a stage node is
silent), and a silent stage node triggers the replan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gridplace.api.grid import judge
from gridplace.api.replan import detect_changes
from gridplace.api.store import NodeBasis
from gridplace.specs import Assignment
from gridplace.specs.plan import pipeline_id
from tests.api.conftest import ADMIN, FakeClock, TestClient, node_doc, node_token, register
from tests.api.pipeline_plans import pipeline, store_plan
from tests.api.test_replan import GRACE_S, plan_record, record

NODES = ["a", "b", "c", "d"]


def setup(client: TestClient, clock: FakeClock) -> tuple[str, dict[str, Any]]:
    for name in NODES:
        register(client, node_doc(name))
    replica = pipeline("big", ["a", "b", "c"], [40, 20, 20])
    store_plan(client.app.state.gridplace.store, [replica], clock())
    key = pipeline_id(Assignment.model_validate(replica))
    assert key is not None
    return key, replica


def stage_report(key: str, stage: int, phase: str, address: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"pipeline": key, "stage": stage, "phase": phase}
    if address:
        state["address"] = address
    return {"observedGeneration": 1, "stages": [state]}


def test_a_stage_node_pulls_its_stage_with_the_whole_replica(
    client: TestClient, clock: FakeClock
) -> None:
    key, replica = setup(client, clock)
    head = client.get("/v1/nodes/a/assignments", headers=node_token(client, "a")).json()
    assert [a["stages"] for a in head["assignments"]] == [replica["stages"]]
    assert "stages" not in head  # the first stage is an assignment of its own
    for stage, name in ((1, "b"), (2, "c")):
        body = client.get(f"/v1/nodes/{name}/assignments", headers=node_token(client, name)).json()
        assert body["assignments"] == []
        assert [(s["pipeline"], s["stage"]) for s in body["stages"]] == [(key, stage)]
        assert body["stages"][0]["assignment"]["stages"] == replica["stages"]
    other = client.get("/v1/nodes/d/assignments", headers=node_token(client, "d")).json()
    assert other == {"node": "d", "generation": 1, "plan": "pipelines-1", "assignments": []}


def test_a_node_reports_only_its_own_stages(client: TestClient, clock: FakeClock) -> None:
    key, _ = setup(client, clock)
    token = node_token(client, "b")
    own = client.put("/v1/nodes/b/state", json=stage_report(key, 1, "ready", "h:1"), headers=token)
    assert own.status_code == 200, own.text
    other = client.put("/v1/nodes/b/state", json=stage_report(key, 2, "ready"), headers=token)
    assert other.status_code == 403
    assert f"{key} stage 2 is held by node 'c'" in other.json()["message"]
    beyond = client.put("/v1/nodes/b/state", json=stage_report(key, 5, "ready"), headers=ADMIN)
    assert beyond.status_code == 422 and "no node (it has 3)" in beyond.json()["message"]
    judged = client.put("/v1/nodes/b/state", json=stage_report(key, 1, "lost"), headers=token)
    assert judged.status_code == 422  # the API judges a stage lost, never its node
    stale = client.put("/v1/nodes/b/state", json=stage_report("gone.0", 1, "failed"), headers=token)
    assert stale.status_code == 200  # a pipeline no longer planned: the agent is stopping it


def phases(client: TestClient, name: str) -> list[tuple[str, str | None]]:
    response = client.get(f"/v1/nodes/{name}/pipelines", headers=node_token(client, name))
    assert response.status_code == 200, response.text
    [status] = response.json()["pipelines"]
    return [(s["phase"], s.get("address")) for s in status["stages"]]


def test_the_first_stage_reads_every_stage_and_a_silent_one_is_lost(
    client: TestClient, clock: FakeClock
) -> None:
    key, _ = setup(client, clock)
    assert phases(client, "a") == [("pending", None)] * 3
    for stage, name in ((1, "b"), (2, "c")):
        report = stage_report(key, stage, "ready", f"10.0.0.{stage}:5005{stage}")
        client.put(f"/v1/nodes/{name}/state", json=report, headers=node_token(client, name))
    ready = [("pending", None), ("ready", "10.0.0.1:50051"), ("ready", "10.0.0.2:50052")]
    assert phases(client, "a") == ready
    assert phases(client, "c") == ready  # every stage's node reads the same
    clock.advance(GRACE_S + 1)
    for name in ("a", "b"):
        client.post(f"/v1/nodes/{name}/telemetry", json={"healthy": True}, headers=ADMIN)
    judged = phases(client, "a")
    assert judged[:2] == ready[:2] and judged[2] == ("lost", None)
    unrelated = client.get("/v1/nodes/d/pipelines", headers=node_token(client, "d"))
    assert unrelated.json()["pipelines"] == []
    foreign = client.get("/v1/nodes/a/pipelines", headers=node_token(client, "d"))
    assert foreign.status_code == 403


def test_a_silent_stage_node_triggers_the_replan(clock: FakeClock) -> None:
    basis = {n: NodeBasis(healthy=True, throttle_ratio=0.1) for n in "abc"}
    latest = plan_record(["a"], basis, clock)
    replica = Assignment.model_validate(pipeline("w", ["a", "b"], [10, 10], "fp8"))
    latest.plan.spec.assignments[0] = replica
    started = clock()
    records = [record("b", clock, throttle=0.1)]
    clock.advance(GRACE_S + 1)
    records.append(record("a", clock, throttle=0.1))
    view = judge(records, clock(), started, GRACE_S, 0.9)
    assert detect_changes(latest, view, 0.1) == [
        "node b silent (1 replicas): silent for 61 s (grace period 60 s)"
    ]


EXAMPLE = Path(__file__).parents[2] / "examples" / "pipeline"


def test_a_planned_pipeline_reaches_every_stage_node(client: TestClient) -> None:
    """The planner's pipelines (``examples/pipeline``, 70B int4 on 24 GB cards) in each stage
    node's pull, under the id the first stage's agent computes."""
    yaml_type = ADMIN | {"Content-Type": "application/yaml"}
    nodes = (EXAMPLE / "one-region" / "nodes.yaml").read_text()
    assert client.post("/v1/nodes", content=nodes, headers=yaml_type).status_code == 200
    probes = (EXAMPLE / "one-region" / "probes.yaml").read_text()
    assert client.post("/v1/probes", content=probes, headers=yaml_type).status_code < 300
    workload = (EXAMPLE / "workload.yaml").read_text()
    plan = client.post("/v1/plans", content=workload, headers=yaml_type)
    assert plan.status_code == 200, plan.text
    replicas = [Assignment.model_validate(a) for a in plan.json()["spec"]["assignments"]]
    pipelines = [a for a in replicas if a.stages]
    assert pipelines  # no node holds the model: it is split
    for replica in pipelines:
        for index, stage in enumerate(replica.stages or []):
            pull = client.get(f"/v1/nodes/{stage.node}/assignments", headers=ADMIN).json()
            if index == 0:  # the first stage is an assignment of its node
                held = [pipeline_id(Assignment.model_validate(a)) for a in pull["assignments"]]
                assert pipeline_id(replica) in held
                continue
            roles = [(r["pipeline"], r["stage"]) for r in pull["stages"]]
            assert (pipeline_id(replica), index) in roles
