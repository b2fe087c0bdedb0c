"""The cost trigger on the server: the change check solves a plan afresh under the current
calibration at most every ``cost_check_interval_s`` and replans when it costs more than 5% less;
a plan within that band is kept and nothing is published."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gridplace.api.store import store as store_module
from gridplace.planner.recalibrate import Calibration, Correction
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
from tests.api.test_replan import check, heartbeat

INTERVAL_S = 600
KEY = ("rtx-4090", "llama-3.1-8b", "fp8", "vllm")


def calibrate(client: TestClient, factor: float) -> None:
    """Store a calibration that makes the steps ``factor`` times the model's (the latest)."""
    state = client.app.state.gridplace  # type: ignore[attr-defined]
    learned = Calibration(gpu_types={KEY: Correction(factor, factor, 100.0, 100.0)})
    state.store.add_calibration(learned.as_dict(), state.clock(), 8)


def planned(client: TestClient, factor: float, clock: FakeClock) -> tuple[list[str], Any]:
    """Eight nodes and a plan made under ``factor``; the capacity band never fires here (10x),
    so only the cost trigger can replace the plan."""
    names = [f"n{i}" for i in range(8)]
    for name in names:
        register(client, node_doc(name))
    calibrate(client, factor)
    plan = submit(client, workload_doc("chat", rps=6, replicas=(1, 8), precisions=("fp8",)))
    clock.advance(INTERVAL_S - 1)
    heartbeat(client, names)
    return names, plan


def cost_checks(client: TestClient) -> dict[str, str]:
    """The cost check's counter by outcome."""
    text = client.get("/metrics").text
    return dict(re.findall(r'gridplace_cost_checks_total\{outcome="(\w+)"\} (\d+)', text))


def test_an_over_provisioned_plan_is_replaced_at_the_cost_check(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(cost_check_interval_s=INTERVAL_S, calibration_capacity_change=10)
    names, first = planned(client, 3.0, clock)  # steps thought 3x slower: replicas to spare
    calibrate(client, 1.0)  # the model was right after all
    assert check(client)["skipped"] == "no-change"  # not an interval since the plan yet
    assert cost_checks(client) == {}
    clock.advance(2)
    heartbeat(client, names)
    outcome = check(client)
    assert outcome["replanned"] is True and outcome["generation"] == 2, outcome
    assert "costs" in outcome["reasons"][0]
    latest = client.get("/v1/plans/latest", headers=ADMIN).json()
    assert latest["status"]["costPerHour"] < 0.95 * first["status"]["costPerHour"]
    assert cost_checks(client) == {"replanned": "1"}
    clock.advance(INTERVAL_S + 1)
    heartbeat(client, names)
    assert check(client)["skipped"] == "no-change"  # the replan is as cheap as a fresh plan
    assert cost_checks(client) == {"kept": "1", "replanned": "1"}


def test_a_plan_within_the_band_is_kept_and_checked_once_an_interval(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(cost_check_interval_s=INTERVAL_S, calibration_capacity_change=10)
    names, _ = planned(client, 1.0, clock)
    calibrate(client, 1.02)  # a new estimate, within the band
    clock.advance(2)
    heartbeat(client, names)
    assert check(client)["skipped"] == "no-change"
    assert check(client)["skipped"] == "no-change"  # the next one waits for the interval
    assert cost_checks(client) == {"kept": "1"}
    assert client.get("/v1/plans/latest", headers=ADMIN).json()["metadata"]["generation"] == 1


def test_no_cost_check_when_turned_off(make_client: MakeClient, clock: FakeClock) -> None:
    client = make_client(cost_check_interval_s=0, calibration_capacity_change=10)
    names, _ = planned(client, 3.0, clock)
    calibrate(client, 1.0)
    clock.advance(10 * INTERVAL_S)
    heartbeat(client, names)
    assert check(client)["skipped"] == "no-change"
    assert cost_checks(client) == {}


def test_the_cost_checks_solve_runs_in_the_solver_worker(
    make_client: MakeClient, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan made afresh (and the replan) read the grid in the worker process: the serving
    process reads only the documents of the nodes holding replicas (the capacity band's)."""
    client = make_client(
        cost_check_interval_s=INTERVAL_S, calibration_capacity_change=10, solve_in_subprocess=True
    )
    names, first = planned(client, 3.0, clock)
    calibrate(client, 1.0)
    clock.advance(2)
    heartbeat(client, names)
    built: list[str] = []
    record = store_module._node_record

    def counted(row: Any) -> Any:
        built.append(row.name)
        return record(row)

    monkeypatch.setattr(store_module, "_node_record", counted)
    outcome = check(client)
    assert outcome["replanned"] is True and "costs" in outcome["reasons"][0], outcome
    assert built == sorted({a["node"] for a in first["spec"]["assignments"]})
