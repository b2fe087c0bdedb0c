"""End to end on loopback: a real ``gridplace serve`` and three ``gridplace agent`` processes with
fake HAL fleets, running the stub server through the ``command`` driver.

1. a plan is submitted and every assigned stub server answers;
2. one agent and its servers are killed: the node falls silent, the API replans after the
   heartbeat grace period, the replicas come up on the other nodes;
3. a new plan moves replicas; an agent is SIGKILLed while a start is under way and restarted:
   it converges with no duplicate server.
Every process is killed in teardown. Runs in well under two minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gridplace.executor.launcher import free_port

STUB = Path(__file__).with_name("stub_server.py")
ADMIN_TOKEN = "e2e-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GRACE_S = 3.0
FLEET = """kind: FakeFleet
devices:
  - {name: NVIDIA GeForce RTX 4090, pciDeviceId: "0x2684", memoryGiB: 24, count: 2}
"""
NODES = ["e2e-a", "e2e-b", "e2e-c"]


def workload(name: str, precisions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "InferenceWorkload",
        "metadata": {"name": name},
        "spec": {
            "model": "llama-3.1-8b",
            "precisions": precisions,
            "slo": {"ttftMs": 3000, "itlMs": 150},
            "traffic": {
                "requestsPerSecond": 1.0,
                "promptTokens": 300,
                "outputTokens": 100,
                "sources": [{"region": "eu-west", "share": 1.0}],
            },
            "replicas": {"min": 2, "max": 4},
            "spread": {"across": "provider", "maxPerDomain": 1},
        },
    }


def wait_for(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.2)


class Grid:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "stubs"
        self.registry.mkdir()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.tokens: dict[str, str] = {}
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, headers=ADMIN, timeout=30)

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPLACE_")}
        return base | extra

    def serve(self, grace_s: float = GRACE_S) -> None:
        env = self.env(
            GRIDPLACE_DATABASE_URL=f"sqlite:///{self.root / 'api.db'}",
            GRIDPLACE_ADMIN_TOKEN=ADMIN_TOKEN,
            GRIDPLACE_HEARTBEAT_GRACE_S=str(grace_s),
            GRIDPLACE_REPLAN_INTERVAL_S="0.5",
            GRIDPLACE_SOLVE_IN_SUBPROCESS="false",
            GRIDPLACE_PLAN_TIME_LIMIT_S="5",
        )
        command = [sys.executable, "-m", "gridplace.api.cli", "serve", "--port", str(self.port)]
        with open(self.root / "serve.log", "wb") as log:  # the child keeps its own copy
            self.processes.append(
                subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            )

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the API", healthy, 30)

    def agent(self, node: str) -> None:
        if node not in self.tokens:
            issued = self.http.post(f"/v1/admin/nodes/{node}/tokens")
            assert issued.status_code == 201, issued.text
            self.tokens[node] = issued.json()["token"]
        fleet = self.root / f"{node}.fleet.yaml"
        fleet.write_text(FLEET)
        template = (
            f"{shlex.quote(sys.executable)} {shlex.quote(str(STUB))} --port {{port}} "
            "--model {workload} --startup-delay-s 1.0"
        )
        command = [
            sys.executable, "-m", "gridplace.api.cli", "agent", "--api", self.url,
            "--node", node, "--fake-fleet", str(fleet), "--driver", "command",
            "--command-template", template, "--drain-path", "/drain",
            "--state-file", str(self.root / f"{node}.state.db"),
            "--cache-dir", str(self.root / f"{node}.cache"),
            "--log-dir", str(self.root / f"{node}.logs"),
            "--interval", "0.3", "--region", "eu-west", "--provider", f"prov-{node}",
            "--price-per-hour", "0.5", "--handover", "0", "--drain-grace", "2",
            "--start-deadline", "20", "--backoff", "0.5",
        ]  # fmt: skip
        env = self.env(GRIDPLACE_NODE_TOKEN=self.tokens[node], STUB_REGISTRY=str(self.registry))
        with open(self.root / f"{node}.agent.log", "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.agents[node] = process
        self.processes.append(process)

    def live_stubs(self) -> list[dict[str, Any]]:
        out = []
        for file in self.registry.glob("*.json"):
            record = json.loads(file.read_text())
            try:
                os.kill(record["pid"], 0)
            except ProcessLookupError:
                continue
            stat = Path(f"/proc/{record['pid']}/stat")
            if stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            out.append(record)
        return out

    def plan(self) -> dict[str, Any]:
        response = self.http.get("/v1/plans/latest")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def state(self, node: str) -> dict[str, Any] | None:
        response = self.http.get(f"/v1/nodes/{node}/state")
        return dict(response.json()) if response.status_code == 200 else None

    def converged(self, nodes: list[str]) -> dict[str, list[dict[str, Any]]] | None:
        """Per node, the running replicas when every node runs exactly its assignments of
        the latest plan (and has applied that generation); None otherwise."""
        plan = self.plan()
        generation = plan["metadata"]["generation"]
        out = {}
        for node in nodes:
            wanted = sorted(
                (a["workload"], tuple(a["gpus"]), a["precision"])
                for a in plan["spec"]["assignments"]
                if a["node"] == node
            )
            state = self.state(node)
            if state is None or state["report"].get("observedGeneration") != generation:
                return None
            replicas = state["report"]["replicas"]
            have = sorted((r["workload"], tuple(r["gpus"]), r["precision"]) for r in replicas)
            if have != wanted or any(r["phase"] != "running" for r in replicas):
                return None
            out[node] = replicas
        return out

    def answers(self, endpoint: str, workload: str) -> bool:
        response = httpx.post(
            f"http://{endpoint}/v1/completions", json={"model": workload, "prompt": "hi"}
        )
        return response.status_code == 200 and response.json()["model"] == workload

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for stub in self.live_stubs():
            with contextlib.suppress(ProcessLookupError):
                os.kill(stub["pid"], signal.SIGKILL)
        self.http.close()


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[Grid]:
    g = Grid(tmp_path)
    try:
        yield g
    finally:
        g.close()


def submit(grid: Grid, precisions: list[str]) -> dict[str, Any]:
    body = yaml.safe_dump_all([workload("chat", precisions), workload("code", precisions)])
    response = grid.http.post(
        "/v1/plans", content=body, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_serving(grid: Grid, converged: dict[str, list[dict[str, Any]]]) -> None:
    replicas = [r for rs in converged.values() for r in rs]
    for replica in replicas:
        assert grid.answers(replica["endpoint"], replica["workload"]), replica
    live = grid.live_stubs()
    assert len(live) == len(replicas), (live, replicas)  # no duplicate, nothing left behind


def starting_rows(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT COUNT(*) FROM replicas WHERE phase IN ('launching', 'starting')"
        ).fetchone()
    return int(rows[0])


def test_agents_apply_plans_survive_a_dead_node_and_a_killed_agent(grid: Grid) -> None:
    grid.serve()
    for node in NODES:
        grid.agent(node)
    wait_for(
        "three registered nodes",
        lambda: grid.http.get("/v1/nodes").json()["total"] == 3,
        30,
    )
    plan = submit(grid, ["fp8"])
    assert plan["spec"]["assignments"], plan.get("status")
    converged = wait_for("the first plan to run", lambda: grid.converged(NODES), 30)
    assert_serving(grid, converged)

    # 2. A node dies (agent and servers): the API replans, replicas come up elsewhere.
    victim = max(converged, key=lambda n: len(converged[n]))
    generation = grid.plan()["metadata"]["generation"]
    grid.agents[victim].kill()
    grid.agents[victim].wait(timeout=10)
    for replica in converged[victim]:
        port = int(replica["endpoint"].rsplit(":", 1)[1])
        for stub in grid.live_stubs():
            if stub["port"] == port:
                os.kill(stub["pid"], signal.SIGKILL)
    survivors = [n for n in NODES if n != victim]

    def replanned() -> bool:
        plan = grid.plan()
        return plan["metadata"]["generation"] > generation and all(
            a["node"] != victim for a in plan["spec"]["assignments"]
        )

    wait_for("a replan without the dead node", replanned, GRACE_S + 20)
    converged = wait_for("replicas to come up elsewhere", lambda: grid.converged(survivors), 30)
    assert sum(len(r) for r in converged.values()) >= 2
    assert_serving(grid, converged)

    # 3. A plan that moves replicas; SIGKILL an agent while it is starting one, restart it.
    generation = grid.plan()["metadata"]["generation"]
    submit(grid, ["int4"])
    moving = wait_for(
        "an agent starting a replica of the new plan",
        lambda: next(
            (n for n in survivors if starting_rows(grid.root / f"{n}.state.db") > 0), None
        ),
        30,
    )
    grid.agents[moving].send_signal(signal.SIGKILL)
    grid.agents[moving].wait(timeout=10)
    grid.agent(moving)
    assert grid.plan()["metadata"]["generation"] > generation
    converged = wait_for("convergence after the restart", lambda: grid.converged(survivors), 40)
    assert all(r["precision"] == "int4" for rs in converged.values() for r in rs)
    assert_serving(grid, converged)
