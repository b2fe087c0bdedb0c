"""The agent loop against ``httpx.MockTransport``: register, heartbeat, assignments with ETag,
report; re-registering on 404; an API outage keeps servers running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridplace.api.models import NodeStateReport, TelemetryReport
from gridplace.executor.agent import Agent, AgentConfig
from gridplace.executor.client import ApiClient
from gridplace.executor.errors import ApiAnswerRefused
from gridplace.executor.reconcile import Reconciler
from gridplace.executor.state import StateFile
from gridplace.hal.fake import FakeBackend, load_fleet
from gridplace.hal.inventory import NodeOptions
from gridplace.specs import Node
from tests.executor.fakes import Clock, FakeRuntime, config, launcher, ports

FLEET = """
kind: FakeFleet
devices:
  - {name: NVIDIA GeForce RTX 4090, pciDeviceId: "0x2684", memoryGiB: 24, count: 2,
     telemetry: {temperatureC: 60, smClockMhz: 2520, thermalThrottled: false}}
"""


class FakeApi:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.generation = 1
        self.assignments: list[dict[str, Any]] = []
        self.registered = False
        self.down = False
        self.reports: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        assert request.headers["Authorization"] == "Bearer gpn.x.y"
        if self.down:
            return httpx.Response(503)
        path = request.url.path
        if request.method == "PUT" and path == "/v1/nodes/n1":
            Node.model_validate(json.loads(request.content))  # a valid Node document
            created = not self.registered
            self.registered = True
            return httpx.Response(201 if created else 200, json={})
        if not self.registered:
            return httpx.Response(404, json={"message": "no node"})
        if path.endswith("/telemetry"):
            TelemetryReport.model_validate(json.loads(request.content))
            return httpx.Response(200, json={})
        if path.endswith("/assignments"):
            etag = f'"{self.generation}"'
            if request.headers.get("If-None-Match") == etag:
                return httpx.Response(304, headers={"ETag": etag})
            body = {"node": "n1", "generation": self.generation, "assignments": self.assignments}
            return httpx.Response(200, json=body, headers={"ETag": etag})
        if path.endswith("/state"):
            self.reports.append(
                NodeStateReport.model_validate(json.loads(request.content)).model_dump()
            )
            return httpx.Response(200, json={})
        return httpx.Response(404)


def make_agent(tmp_path: Path, api: FakeApi, runtime: FakeRuntime) -> Agent:
    clock = Clock()
    backend = FakeBackend(load_fleet(FLEET), clock=clock)
    backend.open()
    client = ApiClient("http://api", "n1", "gpn.x.y", transport=httpx.MockTransport(api))
    reconciler = Reconciler(
        StateFile(tmp_path / "s.db"),
        runtime,
        launcher(),
        config(tmp_path),
        clock=clock,
        port_allocator=ports(),  # type: ignore[arg-type]
    )
    options = NodeOptions(region="eu-west", provider="p1", price_per_hour=0.5)
    return Agent(AgentConfig("n1", 1.0, options), client, backend, reconciler, clock=clock)


def assignment(gpus: list[int]) -> dict[str, Any]:
    return {
        "workload": "chat",
        "node": "n1",
        "gpus": gpus,
        "precision": "fp8",
        "tensorParallel": len(gpus),
    }


def test_one_loop_registers_heartbeats_pulls_and_reports(tmp_path: Path) -> None:
    api, runtime = FakeApi(), FakeRuntime()
    api.assignments = [assignment([0])]
    agent = make_agent(tmp_path, api, runtime)
    agent.run_once()
    assert api.calls == [
        "PUT /v1/nodes/n1",
        "POST /v1/nodes/n1/telemetry",
        "GET /v1/nodes/n1/assignments",
        "PUT /v1/nodes/n1/state",
    ]
    assert len(runtime.processes) == 1
    agent.run_once()
    assert api.reports[-1]["observed_generation"] == 1
    assert [r["phase"].value for r in api.reports[-1]["replicas"]] == ["running"]
    agent.run_once()
    assert len(runtime.processes) == 1  # same generation (304): nothing new


def test_an_api_outage_keeps_the_servers_and_a_forgetful_api_gets_a_new_registration(
    tmp_path: Path,
) -> None:
    api, runtime = FakeApi(), FakeRuntime()
    api.assignments = [assignment([1])]
    agent = make_agent(tmp_path, api, runtime)
    agent.run_once()
    agent.run_once()
    api.down = True
    agent.run_once()
    assert len(runtime.live()) == 1
    api.down = False
    api.registered = False  # the API lost its database
    agent.run_once()  # 404 on telemetry
    agent.run_once()
    assert api.calls.count("PUT /v1/nodes/n1") == 2 and len(runtime.live()) == 1


def test_a_plan_without_generation_stops_nothing(tmp_path: Path) -> None:
    api, runtime = FakeApi(), FakeRuntime()
    api.assignments = [assignment([0])]
    agent = make_agent(tmp_path, api, runtime)
    agent.run_once()
    agent.run_once()
    api.generation, api.assignments = 0, []
    agent.client._etag = None
    original = api.__call__

    def no_plan(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/assignments"):
            return httpx.Response(200, json={"node": "n1", "assignments": []})
        return original(request)

    agent.client._http._transport = httpx.MockTransport(no_plan)
    agent.run_once()
    assert len(runtime.live()) == 1


def test_an_assignment_for_another_node_is_refused_and_the_last_plan_kept(
    tmp_path: Path,
) -> None:
    api, runtime = FakeApi(), FakeRuntime()
    api.assignments = [assignment([0])]
    agent = make_agent(tmp_path, api, runtime)
    agent.run_once()
    assert len(runtime.live()) == 1
    api.generation = 2
    api.assignments = [assignment([0]) | {"node": "n2"}, assignment([1])]
    agent.run_once()
    assert agent.desired is not None and agent.desired.generation == 1  # not applied
    assert len(runtime.live()) == 1
    with pytest.raises(ApiAnswerRefused, match="name node\\(s\\) n2"):
        agent.client.assignments()
