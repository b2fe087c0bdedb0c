"""A pipeline replica across three agents on loopback: the API in process, three ``Agent``s with
real processes (``pipeline_stub.py`` standing in for llama.cpp's ``rpc-server`` and
``llama-server --rpc``), a plan with one three-stage pipeline stored by hand.

1. the two later stages' agents start ``rpc-server`` and report their stage ready with its
   address; the first stage's agent waits (its report says so) and starts ``llama-server`` only
   once both are ready, with ``--rpc`` listing their addresses in stage order and
   ``--tensor-split`` the stages' layers;
2. a worker's ``rpc-server`` is killed: its agent reports the stage failed, the first stage's
   agent stops the server and reports the replica failed ("pipeline down");
3. the worker comes back after its backoff and the pipeline is up again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gridplace.api.app import create_app
from gridplace.executor.agent import Agent, AgentConfig
from gridplace.executor.cache import Prewarmer, WeightCache
from gridplace.executor.client import ApiClient
from gridplace.executor.drivers import LlamaCppDriver
from gridplace.executor.launcher import Launcher
from gridplace.executor.manifest import DriverKind, Manifest
from gridplace.executor.process import ProcessId, ProcessRuntime
from gridplace.executor.reconcile import ReconcileConfig, Reconciler
from gridplace.executor.state import Phase, ReplicaRecord, StateFile
from gridplace.hal.fake import FakeBackend, load_fleet
from gridplace.hal.inventory import NodeOptions
from tests.api.conftest import ADMIN, FakeClock, TestClient, node_token, test_settings
from tests.api.pipeline_plans import pipeline, store_plan
from tests.executor.fakes import reap_children

STUB = Path(__file__).with_name("pipeline_stub.py")
FLEET = """kind: FakeFleet
devices:
  - {name: NVIDIA GeForce RTX 4090, pciDeviceId: "0x2684", memoryGiB: 24, count: 1}
"""
NODES = ["pa", "pb", "pc"]
LAYERS = [40, 20, 20]
ROUND_S = 0.1


def wrapper(root: Path, role: str) -> Path:
    """An executable that runs the stub as ``role`` (the driver's executable is one word)."""
    path = root / role
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STUB}" {role} "$@"\n')
    path.chmod(0o755)
    return path


def make_agent(name: str, client: TestClient, root: Path, manifest: Manifest) -> Agent:
    backend = FakeBackend(load_fleet(FLEET))
    backend.open()
    token = node_token(client, name)["Authorization"].removeprefix("Bearer ")
    api = ApiClient("http://testserver", name, token, transport=client._transport)
    driver = LlamaCppDriver(
        executable=str(wrapper(root, "llama-server")),
        rpc_executable=str(wrapper(root, "rpc-server")),
    )
    launcher = Launcher(manifest, {DriverKind.LLAMA_CPP: driver}, DriverKind.LLAMA_CPP, {0: "0"})
    config = ReconcileConfig(
        start_deadline_s=10,
        stop_timeout_s=2,
        handover_s=0,
        backoff_initial_s=0.5,
        backoff_max_s=1,
        log_dir=root / f"{name}.logs",
        pipeline_wait_s=30,
    )
    cache = Prewarmer(WeightCache(root / f"{name}.cache", 10**8), background=False)
    reconciler = Reconciler(
        StateFile(root / f"{name}.db"), ProcessRuntime(), launcher, config, cache
    )
    options = NodeOptions(region="eu-west", provider=f"prov-{name}", price_per_hour=0.5)
    return Agent(AgentConfig(name, ROUND_S, options), api, backend, reconciler)


def gguf_manifest(root: Path) -> Manifest:
    model = root / "big.gguf"
    model.write_bytes(b"GGUF" + bytes(1000))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    weights = {"source": str(model), "sha256": digest, "sizeBytes": 1004}
    return Manifest.model_validate({"workloads": {"big": {"weights": weights}}})


class Loop:
    """Runs the agents round after round; remembers what the head saw when it started."""

    def __init__(self, client: TestClient, agents: dict[str, Agent]) -> None:
        self.client = client
        self.agents = agents
        self.head_starts: list[list[dict[str, Any]]] = []  # the stages as judged before each

    def stages(self) -> list[dict[str, Any]]:
        """The first stage's view of the pipeline's stages (none before it is registered)."""
        response = self.client.get("/v1/nodes/pa/pipelines", headers=ADMIN)
        pipelines = response.json()["pipelines"] if response.status_code == 200 else []
        return list(pipelines[0]["stages"]) if pipelines else []

    def round(self) -> None:
        for name, agent in self.agents.items():
            before = self.stages() if name == "pa" else []
            outcome = agent.run_once()
            if any(a.startswith("start ") and "/stage0" in a for a in outcome.actions):
                self.head_starts.append(before)

    def until(self, what: str, check: Callable[[], bool], timeout_s: float = 8.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            self.round()
            time.sleep(ROUND_S)

    def records(self, name: str) -> list[ReplicaRecord]:
        return self.agents[name].reconciler.state.records()

    def server(self) -> ReplicaRecord | None:
        return next((r for r in self.records("pa") if r.spec.pipeline), None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # state after "pid (comm)"; Z: dead


@pytest.fixture
def grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Loop]:
    monkeypatch.setenv("STUB_RECORD_DIR", str(tmp_path))
    app = create_app(test_settings(f"sqlite:///{tmp_path / 'api.db'}"), clock=FakeClock())
    with TestClient(app) as client:
        yield from run_agents(client, tmp_path)


def run_agents(client: TestClient, tmp_path: Path) -> Iterator[Loop]:
    manifest = gguf_manifest(tmp_path)
    agents = {name: make_agent(name, client, tmp_path, manifest) for name in NODES}
    loop = Loop(client, agents)
    try:
        yield loop
    finally:
        for agent in agents.values():
            reconciler = agent.reconciler
            for record in reconciler.state.records():
                if record.pid is not None:
                    process = ProcessId(record.pid, record.pid_start_ticks)
                    reconciler.runtime.stop(process, record.replica_id, 2)
            # Any child the rows no longer name (a failed assertion mid-change) is reaped too.
            assert isinstance(reconciler.runtime, ProcessRuntime)
            reap_children(reconciler.runtime)
            reconciler.state.close()
            agent.client.close()


def test_a_pipeline_starts_after_its_stages_and_goes_down_with_one(grid: Loop) -> None:
    grid.round()  # every agent registers
    store = grid.client.app.state.gridplace.store
    store_plan(store, [pipeline("big", NODES, LAYERS)], grid.client.app.state.gridplace.clock())

    grid.round()
    waiting = grid.client.get("/v1/nodes/pa/state", headers=ADMIN).json()["report"]
    assert "waiting for the pipeline's stages" in waiting["replicas"][0]["message"]
    assert grid.server() is None  # nothing started before the workers are ready

    def head_running() -> bool:
        server = grid.server()
        return server is not None and server.phase is Phase.RUNNING

    grid.until("the pipeline to come up", head_running)
    [seen] = grid.head_starts  # started once, after both later stages were ready
    assert [(s["stage"], s["phase"]) for s in seen[1:]] == [(1, "ready"), (2, "ready")]
    server = grid.server()
    assert server is not None
    argv = server.argv
    workers = [s["address"] for s in grid.stages()[1:]]
    assert argv[argv.index("--rpc") + 1] == ",".join(workers)
    assert argv[argv.index("--tensor-split") + 1] == "40,20,20"
    assert {r.spec.stage for r in grid.records("pb")} == {1}

    [worker] = grid.records("pc")
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    head_pid = server.pid
    assert head_pid is not None

    def down() -> bool:
        server = grid.server()
        return server is not None and server.phase is Phase.FAILED

    grid.until("the pipeline to go down", down)
    failed = grid.server()
    assert failed is not None and failed.message is not None
    assert "pipeline down: stage 2 on pc" in failed.message
    assert not alive(head_pid)
    report = grid.client.get("/v1/nodes/pa/state", headers=ADMIN).json()["report"]
    assert report["replicas"][0]["phase"] == "failed"
    assert report["stages"][0]["phase"] == "failed"

    grid.until("the pipeline to come back", head_running)
    assert len(grid.head_starts) == 2
    restarted = grid.server()
    assert restarted is not None
    again = [s["address"] for s in grid.stages()[1:]]
    assert restarted.argv[restarted.argv.index("--rpc") + 1] == ",".join(again)
    for name in NODES:  # every process an agent started and did not stop is one of its rows
        runtime = grid.agents[name].reconciler.runtime
        assert isinstance(runtime, ProcessRuntime)
        live = {pid for pid, child in runtime._children.items() if child.poll() is None}
        assert live == {r.pid for r in grid.records(name) if r.pid is not None}
