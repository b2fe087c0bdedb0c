"""The garbage collector paused while the serving process reads a whole grid."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gridplace import collector
from tests.api.conftest import ADMIN, node_doc, small_grid, submit, to_yaml, workload_doc


def test_paused_is_counted_across_threads_and_restores_the_state() -> None:
    assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with collector.paused():
            entered.set()
            leave.wait(5)

    other = threading.Thread(target=hold)
    other.start()
    entered.wait(5)
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the other thread is still inside
    leave.set()
    other.join(5)
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()  # not turned on by leaving: it was off before
    finally:
        gc.enable()


def test_a_grid_read_runs_with_the_collector_paused(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.put("/v1/nodes/a", json=node_doc("a"), headers=ADMIN).status_code == 201
    service = client.app.state.gridplace.service  # type: ignore[attr-defined]
    seen: list[bool] = []
    nodes = service.store.nodes

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return nodes(*args, **kwargs)

    monkeypatch.setattr(service.store, "nodes", watched)
    assert [view.name for view in service.grid().nodes] == ["a"]
    assert seen == [False] and gc.isenabled()


def test_a_plan_keeps_the_collector_paused_until_its_grid_is_freed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grid lives while the plan solves (seconds at 10,000 nodes): collections meanwhile
    would walk it again and again."""
    small_grid(client)
    service = client.app.state.gridplace.service  # type: ignore[attr-defined]
    seen: list[bool] = []
    solve = service.solver.solve

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return solve(*args, **kwargs)

    monkeypatch.setattr(service.solver, "solve", watched)
    submit(client, workload_doc("chat"))
    dry = client.post(
        "/v1/plans",
        content=to_yaml(workload_doc("chat")),
        params={"dryRun": "true"},
        headers=ADMIN | {"Content-Type": "application/yaml"},
    )
    assert dry.status_code == 200, dry.text
    assert client.post("/v1/replan", headers=ADMIN).status_code == 200
    assert seen == [False, False, False] and gc.isenabled()
