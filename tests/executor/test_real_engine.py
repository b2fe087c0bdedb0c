"""The agent against a real engine: ``llama-server`` (llama.cpp) serving a tiny random-weight GGUF
model, under ``gridplace agent --driver llama.cpp``, from plans of a real ``gridplace serve``.

1. a plan puts the workload on node A: the agent fetches the weights into its cache (checksum),
   starts ``llama-server`` with the driver's command line; ``/completion`` and the OpenAI-style
   ``/v1/chat/completions`` answer through the reported endpoint, and ``/metrics`` differenced
   over the requests gives an observation window that counts exactly the tokens they report;
2. a cheaper node B joins and a new plan moves the replica there: B starts its own server; A keeps
   serving until B's runs (across nodes the agent's make before break is its handover time,
   here longer than B's start), then drains and stops it;
3. agent B is SIGKILLed while its server is starting and restarted: it adopts that server (same
   pid), no duplicate.

``llama-server`` comes from ``GRIDPLACE_TEST_LLAMA_SERVER`` (``.ci/run`` sets it, see
``.ci/llama_server.sh``); without it the test skips, except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gridplace.executor.observe import LLAMA_CPP_METRICS, Identity, observation_window, parse_scrape
from gridplace.specs import Engine
from tests.executor.test_end_to_end import Grid, starting_rows, wait_for
from tests.executor.tiny_gguf import write_tiny_llama

BINARY_VARIABLE = "GRIDPLACE_TEST_LLAMA_SERVER"
FLEET = """kind: FakeFleet
devices:
  - {name: NVIDIA GeForce RTX 3090, pciDeviceId: "0x2204", memoryGiB: 24, count: 1}
"""


def llama_server() -> Path:
    value = os.environ.get(BINARY_VARIABLE)
    if not value:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs a llama-server: {BINARY_VARIABLE} is not set (see .ci/run)")
        pytest.skip(f"no llama-server: set {BINARY_VARIABLE} (.ci/llama_server.sh builds one)")
    path = Path(value)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{BINARY_VARIABLE}={value} is not an executable file")
    return path


def chat_workload() -> dict[str, Any]:
    return {
        "apiVersion": "gridplace/v1alpha1",
        "kind": "InferenceWorkload",
        "metadata": {"name": "chat"},
        "spec": {
            "model": "llama-3.1-8b",
            "precisions": ["int4"],
            "slo": {"ttftMs": 3000, "itlMs": 150},
            "traffic": {
                "requestsPerSecond": 0.5,
                "promptTokens": 200,
                "outputTokens": 50,
                "sources": [{"region": "eu-west", "share": 1.0}],
            },
            "replicas": {"min": 1, "max": 1},
        },
    }


class EngineGrid(Grid):
    """The end-to-end test's grid with llama.cpp agents: one GPU each, a manifest that points the
    workload at the tiny GGUF file."""

    def __init__(self, root: Path, binary: Path) -> None:
        super().__init__(root)
        self.binary = binary
        model = root / "tiny-llama.gguf"
        digest = write_tiny_llama(model)
        self.manifest = root / "models.yaml"
        entry = {
            "catalogModel": "llama-3.1-8b",
            "weights": {"source": str(model), "sha256": digest},
        }
        self.manifest.write_text(yaml.safe_dump({"workloads": {"chat": entry}}))

    def agent(  # type: ignore[override]
        self, node: str, price: float = 1.0, interval: float = 0.3, handover: float = 1.0
    ) -> None:
        if node not in self.tokens:
            issued = self.http.post(f"/v1/admin/nodes/{node}/tokens")
            assert issued.status_code == 201, issued.text
            self.tokens[node] = issued.json()["token"]
        fleet = self.root / f"{node}.fleet.yaml"
        fleet.write_text(FLEET)
        command = [
            sys.executable, "-m", "gridplace.api.cli", "agent", "--api", self.url,
            "--node", node, "--fake-fleet", str(fleet), "--driver", "llama.cpp",
            "--models", str(self.manifest),
            "--state-file", str(self.root / f"{node}.state.db"),
            "--cache-dir", str(self.root / f"{node}.cache"),
            "--log-dir", str(self.root / f"{node}.logs"),
            "--interval", str(interval), "--region", "eu-west", "--provider", f"prov-{node}",
            "--price-per-hour", str(price), "--handover", str(handover), "--drain-grace", "5",
            "--start-deadline", "20", "--backoff", "0.5",
        ]  # fmt: skip
        path = f"{self.binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = self.env(GRIDPLACE_NODE_TOKEN=self.tokens[node], PATH=path)
        with open(self.root / f"{node}.agent.log", "ab") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.agents[node] = process
        self.processes.append(process)

    def servers(self, node: str) -> list[int]:
        """Pids of live llama-servers started by ``node``'s agent (their model is in its cache)."""
        cache = str(self.root / f"{node}.cache").encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"llama-server" in cmdline and cache in cmdline and state != "Z":
                pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        super().close()
        for node in list(self.agents):
            for pid in self.servers(node):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def logs(self) -> str:
        out = []
        for path in sorted(self.root.rglob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)


@pytest.fixture
def grid(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    g = EngineGrid(tmp_path, llama_server())
    failed = request.session.testsfailed
    try:
        yield g
    finally:
        g.close()
        if request.session.testsfailed > failed:
            print(g.logs())  # the API's, agents' and servers' logs, after a failure


def submit(grid: Grid) -> None:
    response = grid.http.post(
        "/v1/plans",
        content=yaml.safe_dump(chat_workload()),
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 200, response.text


def scrape(endpoint: str, at_s: float) -> Any:
    response = httpx.get(f"http://{endpoint}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return parse_scrape(response.text, at_s)


def send_requests(endpoint: str) -> int:
    """A completion and a chat completion; the tokens the server says it generated."""
    base = f"http://{endpoint}"
    completion = httpx.post(
        f"{base}/completion",
        json={"prompt": "The grid places models", "n_predict": 12, "ignore_eos": True},
        timeout=30,
    )
    assert completion.status_code == 200, completion.text
    body = completion.json()
    assert body["tokens_predicted"] == 12 and isinstance(body["content"], str)
    chat = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text
    answer = chat.json()
    assert answer["model"] == "chat"  # the driver's --alias
    assert answer["choices"][0]["message"]["role"] == "assistant"
    return 12 + int(answer["usage"]["completion_tokens"])


def running_on(grid: Grid, node: str) -> dict[str, Any] | None:
    converged = grid.converged([node])
    return converged[node][0] if converged and len(converged[node]) == 1 else None


def test_the_agent_runs_moves_and_adopts_a_real_llama_server(grid: EngineGrid) -> None:
    grid.serve(grace_s=60)  # agent B is down for seconds on purpose: no replan for that
    grid.agent("node-a", price=2.0, handover=15.0)
    wait_for("node-a", lambda: grid.http.get("/v1/nodes").json()["total"] == 1, 30)
    submit(grid)
    replica = wait_for("llama-server on node-a", lambda: running_on(grid, "node-a"), 30)
    endpoint_a = replica["endpoint"]
    assert len(grid.servers("node-a")) == 1

    # 1. Requests through the reported endpoint; /metrics differenced over them.
    before = scrape(endpoint_a, 0.0)
    generated = send_requests(endpoint_a)
    after = scrape(endpoint_a, 60.0)
    identity = Identity("node-a", "chat", "llama-3.1-8b", "rtx-3090", "int4", Engine.LLAMA_CPP)
    window = observation_window(identity, before, after, LLAMA_CPP_METRICS)
    assert window.output_tokens == generated
    assert window.prompt_tokens > 0 and (window.prefill_seconds or 0) > 0
    assert (window.decode_seconds or 0) > 0 and (window.decode_steps or 0) >= generated
    assert window.itl is not None and (window.itl.mean_ms or 0) > 0
    assert window.mean_running_batch == pytest.approx(1.0)  # one request at a time
    assert window.requests is None and window.ttft is None

    # 2. A cheaper node joins; the new plan moves the replica: make before break.
    grid.agent("node-b", price=0.2, interval=1.0)
    wait_for("node-b", lambda: grid.http.get("/v1/nodes").json()["total"] == 2, 30)
    generation = grid.plan()["metadata"]["generation"]
    submit(grid)
    plan = grid.plan()
    assert plan["metadata"]["generation"] > generation
    assert [a["node"] for a in plan["spec"]["assignments"]] == ["node-b"], plan

    # 3. SIGKILL agent B while its llama-server starts; A still serves meanwhile.
    wait_for(
        "node-b starting its server",
        lambda: starting_rows(grid.root / "node-b.state.db") > 0,
        30,
    )
    grid.agents["node-b"].send_signal(signal.SIGKILL)
    grid.agents["node-b"].wait(timeout=10)
    started = wait_for("node-b's server process", lambda: grid.servers("node-b"), 10)
    grid.agent("node-b", price=0.2)
    moved = wait_for("the replica running on node-b", lambda: running_on(grid, "node-b"), 30)
    assert grid.servers("node-b") == started  # adopted, not started again
    assert send_requests(endpoint_a) > 0  # the old replica still serves when the new one runs
    assert send_requests(moved["endpoint"]) > 0

    def a_stopped() -> bool:
        state = grid.state("node-a")
        return not grid.servers("node-a") and state is not None and not state["report"]["replicas"]

    wait_for("node-a to drain, stop its server and say so", a_stopped, 30)
    assert grid.servers("node-b") == started
