"""Replanning on change: silence past the grace period, unhealthy reports and throttle moves
replan with minimal moves; blips, small wobbles, a grid-wide silence and a server restart do not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gridplace.api.grid import judge
from gridplace.api.replan import detect_changes, may_have_changed, suspects
from gridplace.api.store import NodeBasis, NodePulse, NodeRecord, PlanRecord, PlanSummary
from gridplace.api.store import store as store_module
from gridplace.planner.recalibrate import Calibration, Correction
from gridplace.specs import Node, PlacementPlan
from tests.api.conftest import (
    ADMIN,
    FakeClock,
    MakeClient,
    TestClient,
    node_doc,
    register,
    submit,
    workload_doc,
)

GRACE_S = 60


def placed_nodes(plan: dict[str, Any]) -> list[str]:
    return sorted(a["node"] for a in plan["spec"]["assignments"])


def check(client: TestClient) -> dict[str, Any]:
    response = client.post("/v1/replan", params={"onlyIfChanged": True}, headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def heartbeat(client: TestClient, names: list[str], **report: Any) -> None:
    for name in names:
        response = client.post(f"/v1/nodes/{name}/telemetry", json=report, headers=ADMIN)
        assert response.status_code == 200, response.text


@pytest.fixture
def grid(client: TestClient) -> list[str]:
    """Six identical single-4090 nodes of six providers; a workload needing three replicas."""
    names = [f"n{i}" for i in range(6)]
    for name in names:
        register(client, node_doc(name))
    return names


def test_a_silent_node_moves_its_replicas_and_only_those(
    client: TestClient, clock: FakeClock, grid: list[str]
) -> None:
    first = submit(client, workload_doc("chat", rps=6, replicas=(3, 3)))
    before = placed_nodes(first)
    assert len(before) == 3
    lost = before[0]
    alive = [n for n in grid if n != lost]

    clock.advance(GRACE_S - 10)  # a blip inside the grace period
    heartbeat(client, alive)
    assert check(client)["replanned"] is False

    clock.advance(20)  # lost has now been silent for 70 s
    heartbeat(client, alive)
    result = check(client)
    assert result["replanned"] is True and result["generation"] == 2
    assert any(lost in reason and "silent" in reason for reason in result["reasons"])
    after = placed_nodes(result["plan"])
    assert lost not in after and len(after) == 3
    for name in set(before) - {lost}:  # the other replicas stayed where they were
        assert after.count(name) >= before.count(name)
    assert check(client)["replanned"] is False  # settled: nothing new to react to
    latest = client.get("/v1/plans/latest", headers=ADMIN).json()
    assert latest["metadata"]["generation"] == 2
    summary = client.get("/v1/plans", headers=ADMIN).json()["items"][0]
    assert summary["trigger"] == "change" and summary["reasons"]


def test_an_unhealthy_report_replans_at_once(
    client: TestClient, clock: FakeClock, grid: list[str]
) -> None:
    before = placed_nodes(submit(client, workload_doc("chat", rps=6, replicas=(3, 3))))
    heartbeat(client, [before[0]], healthy=False, message="GPU fell off the bus")
    result = check(client)
    assert result["replanned"] is True
    assert "GPU fell off the bus" in " ".join(result["reasons"])
    assert before[0] not in placed_nodes(result["plan"])


def test_a_node_without_replicas_going_away_changes_nothing(
    client: TestClient, clock: FakeClock, grid: list[str]
) -> None:
    before = placed_nodes(submit(client, workload_doc("chat", rps=6, replicas=(3, 3))))
    idle = next(n for n in grid if n not in before)
    heartbeat(client, [idle], healthy=False)
    assert check(client)["replanned"] is False
    heartbeat(client, [idle], healthy=True)  # back, but nothing waits for capacity
    assert check(client)["replanned"] is False


def test_throttle_moves_past_the_threshold_replan_wobbles_do_not(
    client: TestClient, clock: FakeClock, grid: list[str]
) -> None:
    submit(client, workload_doc("chat", rps=6, replicas=(3, 3)))
    heartbeat(client, ["n1"], thermal={"throttleRatio": 0.05})  # threshold is 0.1
    assert check(client)["replanned"] is False
    heartbeat(client, ["n1"], thermal={"throttleRatio": 0.35})
    result = check(client)
    assert result["replanned"] is True
    assert any("n1 throttle ratio 0.00 -> 0.35" in reason for reason in result["reasons"])
    assert check(client)["replanned"] is False  # the new basis has 0.35


def test_a_grid_wide_silence_is_not_a_mass_teardown(
    client: TestClient, clock: FakeClock, grid: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = submit(client, workload_doc("chat", rps=6, replicas=(3, 3)))
    clock.advance(10 * GRACE_S)  # the server heard nobody: its own network, most likely
    reads = count_document_reads(client, monkeypatch)
    result = check(client)
    assert result["replanned"] is False
    assert reads == []  # judged from the pulses: no node document read (seconds at 10,000)
    metrics = client.get("/metrics").text
    assert 'gridplace_replans_skipped_total{reason="mass-silence"} 1' in metrics
    assert 'gridplace_nodes{state="silent"} 6' in metrics
    assert "gridplace_nodes_healthy 6" in metrics
    pulled = client.get(f"/v1/nodes/{placed_nodes(before)[0]}/assignments", headers=ADMIN)
    assert pulled.json()["assignments"]  # agents keep their replicas


def test_a_restarted_server_gives_every_node_a_fresh_grace_period(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client()
    for name in ["a", "b", "c", "d"]:
        register(client, node_doc(name))
    submit(client, workload_doc("chat", rps=2, replicas=(2, 2)))
    clock.advance(3600)  # the server was down for an hour
    restarted = make_client()
    views = restarted.get("/v1/nodes", headers=ADMIN).json()["items"]
    assert all(view["healthy"] and not view["silent"] for view in views)
    assert check(restarted)["replanned"] is False


def test_an_unconditional_replan_and_its_conflict(
    client: TestClient, clock: FakeClock, grid: list[str]
) -> None:
    assert client.post("/v1/replan", headers=ADMIN).json()["skipped"] == "no-plan"
    first = submit(client, workload_doc("chat", rps=6, replicas=(3, 3)))
    result = client.post("/v1/replan", headers=ADMIN).json()
    assert result["replanned"] and result["generation"] == 2 and result["reasons"] == ["requested"]
    assert placed_nodes(result["plan"]) == placed_nodes(first)


def test_a_node_coming_back_replans_only_when_something_is_unplaced(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client()
    register(client, node_doc("a"))
    register(client, node_doc("b"))
    heartbeat(client, ["b"], healthy=False)
    first = submit(client, workload_doc("chat", rps=40))  # more than one node can serve
    assert first["status"]["unplaced"]
    heartbeat(client, ["b"], healthy=True)
    result = check(client)
    assert result["replanned"] is True
    assert any("b available" in reason for reason in result["reasons"])


# ------------------------------------------------------------------------- pure change detection


def record(name: str, clock: FakeClock, **doc: Any) -> NodeRecord:
    node = Node.model_validate(node_doc(name, **doc))
    return NodeRecord(node=node, created_at=clock(), updated_at=clock(), last_heartbeat=clock())


def plan_record(nodes: list[str], basis: dict[str, NodeBasis], clock: FakeClock) -> PlanRecord:
    plan = PlacementPlan.model_validate(
        {
            "metadata": {"name": "plan-1", "generation": 1},
            "spec": {
                "assignments": [
                    {"workload": "w", "node": n, "gpus": [0], "precision": "fp8"} for n in nodes
                ]
            },
            "status": {"workloads": [], "unplaced": []},
        }
    )
    summary = PlanSummary(1, "plan-1", clock(), "submitted", [], len(nodes), 0, 0.0, 0.0)
    return PlanRecord(summary, plan, [], {}, basis, [])


@pytest.mark.parametrize(
    ("case", "expect"),
    [
        ("nothing changed", []),
        ("deregistered", ["node b deregistered (1 replicas)"]),
        ("throttle under threshold", []),
        ("throttle over threshold", ["node c throttle ratio 0.10 -> 0.30 (threshold 0.1)"]),
    ],
)
def test_detect_changes(case: str, expect: list[str], clock: FakeClock) -> None:
    basis = {n: NodeBasis(healthy=True, throttle_ratio=0.1) for n in "abc"}
    throttle = {"throttle under threshold": 0.15, "throttle over threshold": 0.3}.get(case, 0.1)
    records = [record("a", clock, throttle=0.1), record("c", clock, throttle=throttle)]
    if case != "deregistered":
        records.append(record("b", clock, throttle=0.1))
    view = judge(records, clock(), clock(), GRACE_S, 0.5)
    latest = plan_record(["a", "b"], basis, clock)
    assert detect_changes(latest, view, 0.1) == expect
    # The periodic check's first look, from the pulses alone, agrees on whether to look further,
    # and the documents of the nodes it points at give the same reasons as the whole grid.
    pulses = [pulse(r) for r in records]
    assert may_have_changed(latest, pulses, set(), 0.1) is bool(expect)
    named = suspects(latest, pulses, set(), 0.1)
    partial = judge([r for r in records if r.name in named], clock(), clock(), GRACE_S, 0.5)
    assert detect_changes(latest, partial, 0.1, {r.name for r in records}) == expect


def pulse(record: NodeRecord) -> NodePulse:
    reported = NodeBasis(healthy=record.node.healthy, throttle_ratio=record.node.throttle_ratio)
    return NodePulse(record.name, reported, record.last_heartbeat, record.created_at)


def count_document_reads(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at every read of all node documents (``Store.nodes``)."""
    store = client.app.state.gridplace.store  # type: ignore[attr-defined]
    reads: list[int] = []
    nodes = store.nodes

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(1)
        return nodes(*args, **kwargs)

    monkeypatch.setattr(store, "nodes", counted)
    return reads


def test_a_steady_grid_is_checked_without_reading_node_documents(
    client: TestClient, grid: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10,000 nodes reading and validating every Node document took seconds of CPU every
    check (``replan_interval_s``); the check reads a few columns first, the documents only
    when something may have changed."""
    holder = placed_nodes(submit(client, workload_doc("chat", rps=6, replicas=(3, 3))))[0]
    reads = count_document_reads(client, monkeypatch)
    heartbeat(client, grid, thermal={"throttleRatio": 0.05})  # under the threshold
    assert check(client)["skipped"] == "no-change" and reads == []
    heartbeat(client, [holder], healthy=False)
    assert check(client)["replanned"] is True
    assert reads  # the replan's solve read the grid (here: no worker process to read it)


def test_silence_counts_from_the_later_of_heartbeat_and_server_start(clock: FakeClock) -> None:
    old = record("a", clock)
    started = clock() + timedelta(seconds=1000)
    view = judge([old], started + timedelta(seconds=30), started, GRACE_S, 0.5)
    assert not view.nodes[0].silent and view.nodes[0].silent_s == 30
    view = judge([old], started + timedelta(seconds=61), started, GRACE_S, 0.5)
    assert view.nodes[0].silent and not view.nodes[0].healthy


def test_a_change_check_reads_the_documents_it_needs_not_the_grid(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving process reads every node's pulse (a few columns), then the documents of the
    nodes the pulses point at, and of the nodes holding replicas when the calibration moved:
    never the whole grid (10,000 documents were ~0.5 s of CPU and ~85 MiB per check)."""
    for i in range(40):
        register(client, node_doc(f"n{i:02d}"))
    holders = sorted(set(placed_nodes(submit(client, workload_doc("chat", rps=6)))))
    state = client.app.state.gridplace  # type: ignore[attr-defined]
    built: list[str] = []
    record = store_module._node_record

    def counted(row: Any) -> Any:
        built.append(row.name)
        return record(row)

    read_by_the_check: list[list[str]] = []
    recompute = state.service.recompute

    def replan(*args: Any) -> Any:
        read_by_the_check.append(sorted(built))  # what the check read; the solve reads more
        return recompute(*args)

    monkeypatch.setattr(store_module, "_node_record", counted)
    monkeypatch.setattr(state.service, "recompute", replan)
    heartbeat(client, [holders[0]], healthy=False)
    built.clear()
    assert check(client)["replanned"] is True
    assert read_by_the_check == [[holders[0]]]

    holders = sorted(set(placed_nodes(client.get("/v1/plans/latest", headers=ADMIN).json())))
    key = ("rtx-4090", "llama-3.1-8b", "fp8", "vllm")
    learned = Calibration(gpu_types={key: Correction(3.0, 3.0, 100.0, 100.0)})
    state.store.add_calibration(learned.as_dict(), state.clock(), 8)
    built.clear()
    outcome = check(client)
    assert outcome["replanned"] is True and "calibration moves" in outcome["reasons"][0]
    assert read_by_the_check[1] == holders
