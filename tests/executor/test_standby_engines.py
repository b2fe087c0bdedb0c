"""Vram standbys: once the assigned replicas run, the agent starts the standby's engine idle on its
own GPUs (reported ``loaded`` with its port, never as a serving replica); a plan that assigns the
workload there adopts that process (no launch); a plan that drops the standby, or gives its GPUs
to an assigned replica, stops it first."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridplace.executor.agent import Agent, AgentConfig
from gridplace.executor.cache import Prewarmer, WeightCache
from gridplace.executor.client import ApiClient
from gridplace.executor.drivers import CommandDriver, LaunchSpec
from gridplace.executor.launcher import Launcher, free_port
from gridplace.executor.manifest import DriverKind, Manifest, WorkloadEntry
from gridplace.executor.process import ProcessId, ProcessRuntime, Runtime
from gridplace.executor.reconcile import Reconciler
from gridplace.executor.standby import StandbyKeeper
from gridplace.executor.state import StateFile
from gridplace.hal.fake import FakeBackend, load_fleet
from gridplace.hal.inventory import NodeOptions
from tests.executor.fakes import Clock, FakeRuntime, config, launcher, ports, reap_children
from tests.executor.test_agent_client import FLEET, assignment
from tests.executor.test_standby import StandbyApi, standby, weights

STUB = Path(__file__).with_name("stub_server.py")


class CountingRuntime(ProcessRuntime):
    """Real processes; every launch is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.launches: list[str] = []

    def launch(self, launch: LaunchSpec, replica_id: str, log_path: Path) -> ProcessId:
        self.launches.append(replica_id)
        return super().launch(launch, replica_id, log_path)


@dataclass
class Node:
    """An agent of node ``n1`` (2 GPUs) against a fake API whose plan the test sets."""

    agent: Agent
    api: StandbyApi
    reconciler: Reconciler
    clock: Clock
    events: list[str] = field(default_factory=list)

    def plan(self, assignments: list[dict[str, Any]], prewarm: list[dict[str, Any]]) -> None:
        self.api.assignments, self.api.prewarm = assignments, prewarm
        self.api.generation += 1

    def report(self) -> dict[str, Any]:
        return self.api.reports[-1]

    def standbys(self) -> list[tuple[str, str]]:
        return [(s["workload"], s["state"].value) for s in self.report().get("standbys") or []]

    def replicas(self) -> list[tuple[str, str]]:
        return [(r["workload"], r["phase"].value) for r in self.report()["replicas"]]


def make_node(
    tmp_path: Path,
    runtime: Runtime,
    lau: Launcher,
    clock: Callable[[], float],
    port_allocator: Callable[[str], int],
    **reconcile: Any,
) -> Node:
    sources = {name: weights(tmp_path, name) for name in ("chat", "s1")}
    manifest = Manifest(workloads={n: WorkloadEntry(weights=s) for n, s in sources.items()})
    lau = Launcher(manifest, lau.drivers, lau.default_driver, lau.gpu_ids)
    prewarmer = Prewarmer(WeightCache(tmp_path / "cache", 10_000), background=False)
    api = StandbyApi([])
    fake_clock = Clock()
    backend = FakeBackend(load_fleet(FLEET), clock=fake_clock)
    backend.open()
    reconciler = Reconciler(
        StateFile(tmp_path / "s.db"), runtime, lau, config(tmp_path, **reconcile), prewarmer,
        clock=clock, port_allocator=port_allocator,
    )  # fmt: skip
    agent = Agent(
        AgentConfig("n1", 1.0, NodeOptions(region="eu-west", provider="p1", price_per_hour=0.5)),
        ApiClient("http://api", "n1", "gpn.x.y", transport=httpx.MockTransport(api)),
        backend, reconciler, clock=fake_clock,
        standbys=StandbyKeeper(manifest.weights_for, prewarmer),
    )  # fmt: skip
    return Node(agent, api, reconciler, fake_clock)


def s1_on(gpus: list[int], precision: str = "fp8") -> dict[str, Any]:
    return {**assignment(gpus), "workload": "s1", "precision": precision}


def vram_s1() -> dict[str, Any]:
    return standby("s1", "vram").to_yaml_dict()  # GPU 1, fp8


# ---------------------------------------------------------------- real processes on loopback


@pytest.fixture
def stub_node(tmp_path: Path) -> Iterator[tuple[Node, CountingRuntime]]:
    runtime = CountingRuntime()
    template = f"{shlex.quote(sys.executable)} {STUB} --port {{port}} --model {{model}}"
    drivers = {DriverKind.COMMAND: CommandDriver(template, drain_path="/drain")}
    base = Launcher(Manifest(), drivers, DriverKind.COMMAND, {0: "0", 1: "1"})
    node = make_node(tmp_path, runtime, base, time.time, free_port, start_deadline_s=30.0)
    try:
        yield node, runtime
    finally:
        rows = node.reconciler.state.records() + node.reconciler.standbys.state.records()
        for row in rows:
            if row.pid is not None:
                runtime.stop(ProcessId(row.pid, row.pid_start_ticks), row.replica_id, 5.0)
        reap_children(runtime)  # and any child no row names any more


def until(node: Node, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        node.agent.run_once()
        if check():
            return
        assert time.monotonic() < deadline, node.report()
        time.sleep(0.05)


def test_a_loaded_standby_is_adopted_by_the_replica_without_a_launch(
    stub_node: tuple[Node, CountingRuntime],
) -> None:
    node, runtime = stub_node
    node.plan([assignment([0])], [vram_s1()])
    until(node, lambda: node.standbys() == [("s1", "loaded")])
    assert node.replicas() == [("chat", "running")]  # the idle engine serves nobody
    message = node.report()["standbys"][0]["message"]
    port = int(message.rsplit(" ", 1)[1])
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    assert len(runtime.launches) == 2  # the replica and the standby's engine

    node.plan([assignment([0]), s1_on([1])], [])
    node.agent.run_once()
    assert sorted(node.replicas()) == [("chat", "running"), ("s1", "running")]
    s1 = next(r for r in node.report()["replicas"] if r["workload"] == "s1")
    assert s1["endpoint"] == f"127.0.0.1:{port}"
    assert len(runtime.launches) == 2  # adopted: no new launch
    assert node.reconciler.standbys.state.records() == []
    node.agent.run_once()
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


# ------------------------------------------------------------------ in-memory runtime (fakes)


def fake_node(tmp_path: Path) -> tuple[Node, FakeRuntime]:
    runtime = FakeRuntime()
    clock = Clock()
    return make_node(tmp_path, runtime, launcher(gpus=2), clock, ports()), runtime  # type: ignore[arg-type]


def test_the_standby_engine_waits_for_the_assigned_replicas_and_avoids_their_gpus(
    tmp_path: Path,
) -> None:
    node, runtime = fake_node(tmp_path)
    runtime.healthy_on_launch = False
    node.plan([assignment([0])], [vram_s1()])
    node.agent.run_once()  # chat starts; the standby waits for it
    assert node.standbys() == [("s1", "waiting")]
    assert len(runtime.processes) == 1
    runtime.processes[101].healthy = True
    node.agent.run_once()  # chat runs: the engine starts, not healthy yet
    assert node.standbys() == [("s1", "ready")]
    assert "engine starting on port" in node.report()["standbys"][0]["message"]
    assert len(runtime.processes) == 2
    engine = runtime.processes[102]
    assert "--gpus 1" in " ".join(engine.launch.argv)
    engine.healthy = True
    node.agent.run_once()
    assert node.standbys() == [("s1", "loaded")]
    assert node.replicas() == [("chat", "running")]

    # A standby planned on the replica's GPU is held on disk, never started there.
    node.plan([assignment([0])], [{**vram_s1(), "gpus": [0]}])
    node.agent.run_once()
    assert not engine.alive  # the plan dropped the standby on GPU 1: stopped
    items = node.report()["standbys"]
    assert items[0]["state"].value == "ready" and "GPUs [0] are in use" in items[0]["message"]
    assert [p.alive for p in runtime.processes.values()] == [True, False]


def test_an_assigned_replica_on_the_standbys_gpus_stops_it_first(tmp_path: Path) -> None:
    node, runtime = fake_node(tmp_path)
    node.plan([assignment([0])], [vram_s1()])
    for _ in range(3):
        node.agent.run_once()
    assert node.standbys() == [("s1", "loaded")]
    engine_id = runtime.processes[102].replica_id
    # chat moves to GPU 1 (the standby's), and the standby stays in the plan: assigned wins.
    node.plan([assignment([1])], [vram_s1()])
    runtime.events.clear()
    node.agent.run_once()
    assert runtime.events[0] == f"stop {engine_id} inflight=0"
    assert runtime.events[1].startswith("launch chat-")
    assert not runtime.processes[102].alive
    assert node.reconciler.standbys.state.records() == []
    # The engine is not started again on the GPU the replica holds.
    node.agent.run_once()
    assert not any("standby" in p.replica_id for p in runtime.live())
    item = node.report()["standbys"][0]
    assert item["state"].value == "ready" and "GPUs [1] are in use" in item["message"]


def test_a_different_precision_is_not_adopted(tmp_path: Path) -> None:
    node, runtime = fake_node(tmp_path)
    node.plan([assignment([0])], [vram_s1()])
    for _ in range(3):
        node.agent.run_once()
    assert node.standbys() == [("s1", "loaded")]
    node.plan([assignment([0]), s1_on([1], "bf16")], [])
    node.agent.run_once()
    assert not runtime.processes[102].alive
    assert len(runtime.processes) == 3  # a fresh launch for the bf16 replica
