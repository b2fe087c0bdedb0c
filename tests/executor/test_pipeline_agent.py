"""A pipeline replica's parts on one agent, against an in-memory runtime: which process each
stage's node runs and its command line (llama.cpp RPC and vLLM over Ray), the first stage's wait
for the others (bounded), taking the server down when a stage fails or its node is lost, keeping
it while the API is away, the stages in the state report, and the pull's stage roles."""

from __future__ import annotations

import json
import socket
from collections.abc import Collection
from pathlib import Path

import httpx
import pytest

from gridplace.api.models import NodeStateReport
from gridplace.executor.client import ApiClient
from gridplace.executor.diff import ReplicaSpec, desired_replicas
from gridplace.executor.drivers import PROBE_ALIVE, PROBE_TCP, LlamaCppDriver, VllmDriver
from gridplace.executor.errors import ApiAnswerRefused
from gridplace.executor.launcher import Launcher
from gridplace.executor.manifest import DriverKind, Manifest, WeightSource
from gridplace.executor.observe import Observer
from gridplace.executor.pipeline import Pipeline, StagePeer, StageRole, stage_specs
from gridplace.executor.process import ProcessRuntime
from gridplace.executor.reconcile import Reconciler
from gridplace.executor.state import Phase, StateFile
from gridplace.specs import Assignment
from gridplace.specs.plan import pipeline_id
from tests.api.pipeline_plans import pipeline
from tests.executor.fakes import Clock, FakeRuntime, config, ports

GGUF = Path("/cache/big.gguf")
REPLICA = Assignment.model_validate(pipeline("big", ["a", "b", "c"], [40, 20, 20]))
KEY = pipeline_id(REPLICA) or ""


class ReadyWeights:
    """A pre-warmer whose every file is cached already."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def ready(self, source: WeightSource) -> Path | None:
        return GGUF

    def request(self, source: WeightSource, pinned: Collection[str]) -> None:
        return None


def make(tmp_path: Path, kind: DriverKind, clock: Clock, runtime: FakeRuntime) -> Reconciler:
    weights = {"source": str(GGUF), "sha256": "0" * 64}
    manifest = Manifest.model_validate({"workloads": {"big": {"weights": weights}}})
    drivers = {DriverKind.LLAMA_CPP: LlamaCppDriver(), DriverKind.VLLM: VllmDriver()}
    launcher = Launcher(manifest, drivers, kind, {0: "GPU-0"})
    return Reconciler(
        StateFile(tmp_path / "state.db"),
        runtime,
        launcher,
        config(tmp_path, pipeline_wait_s=60.0),
        prewarmer=ReadyWeights(),
        clock=clock,
        port_allocator=ports(),  # type: ignore[arg-type]
    )


def peers(*phases: str, addresses: tuple[str, ...] = ("h1:501", "h2:502")) -> Pipeline:
    """The replica with stages 1 and 2 in ``phases`` (stage 0: this node, starting)."""
    stages = [StagePeer(0, "a", "starting")]
    for stage, (phase, address) in enumerate(zip(phases, addresses, strict=True), start=1):
        message = "its node has been silent for 61s" if phase == "lost" else None
        ready = address if phase == "ready" else None
        stages.append(StagePeer(stage, "abc"[stage], phase, ready, message))
    return Pipeline(KEY, REPLICA, tuple(stages))


def head() -> list[ReplicaSpec]:
    return desired_replicas([REPLICA])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


def test_llama_cpp_the_server_waits_then_starts_with_the_workers_in_stage_order(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime
) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    waiting = reconciler.step(head(), 1, {KEY: peers("ready", "starting")})
    assert runtime.processes == {}
    [item] = waiting.report["replicas"]
    assert item["message"].startswith("waiting for the pipeline's stages (0s of 60s)")
    assert "stage 2 on c starting" in item["message"]
    reconciler.step(head(), 1, {KEY: peers("ready", "ready", addresses=("h2:9", "h1:8"))})
    [server] = runtime.live()
    argv = server.launch.argv
    assert argv[:3] == ("llama-server", "-m", str(GGUF))
    assert argv[argv.index("--rpc") + 1] == "h2:9,h1:8"  # stage 1's, then stage 2's
    assert argv[argv.index("--tensor-split") + 1] == "40,20,20"
    assert server.launch.env["CUDA_VISIBLE_DEVICES"] == "GPU-0"


def test_a_later_stage_runs_rpc_server_without_weights(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime
) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    role = StageRole(KEY, 2, REPLICA)
    reconciler.step(stage_specs([role]), 1, {KEY: Pipeline(KEY, REPLICA, None)})
    [worker] = runtime.live()
    port = worker.launch.endpoint.rsplit(":", 1)[1]
    assert worker.launch.argv == ("rpc-server", "--host", "127.0.0.1", "--port", port)
    assert worker.launch.health_paths == (PROBE_TCP,)
    report = reconciler.step(stage_specs([role]), 1, {KEY: Pipeline(KEY, REPLICA, None)}).report
    assert report["stages"] == [
        {"pipeline": KEY, "stage": 2, "phase": "ready", "address": f"127.0.0.1:{port}"}
    ]
    NodeStateReport.model_validate(report)  # what the API accepts


def test_the_wait_is_bounded(tmp_path: Path, clock: Clock, runtime: FakeRuntime) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    reconciler.step(head(), 1, {KEY: peers("ready", "pending")})
    clock.advance(61)
    outcome = reconciler.step(head(), 1, {KEY: peers("ready", "pending")})
    assert outcome.actions == [f"pipeline-timeout {head()[0].key}"]
    [record] = reconciler.state.records()
    assert record.phase is Phase.FAILED and record.message is not None
    assert "not ready within 60s: stage 2 on c pending" in record.message
    assert outcome.report["stages"][0]["phase"] == "failed"
    clock.advance(11)  # past the backoff: it waits again
    again = reconciler.step(head(), 1, {KEY: peers("ready", "pending")}).report["replicas"]
    assert again[0]["phase"] == "failed"  # until it runs
    assert again[0]["message"].startswith("waiting for the pipeline's stages (0s of 60s)")


@pytest.mark.parametrize(
    ("phases", "why"),
    [
        (("ready", "failed"), "stage 2 on c failed"),
        (("lost", "ready"), "stage 1 on b lost (its node has been silent for 61s)"),
    ],
)
def test_a_failed_or_lost_stage_takes_the_server_down(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime, phases: tuple[str, str], why: str
) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    up = {KEY: peers("ready", "ready")}
    reconciler.step(head(), 1, up)
    assert reconciler.step(head(), 1, up).applied
    outcome = reconciler.step(head(), 1, {KEY: peers(*phases)})
    assert f"pipeline-down {head()[0].key}" in outcome.actions
    assert runtime.live() == []
    [item] = outcome.report["replicas"]
    assert item["phase"] == "failed" and item["message"] == f"pipeline down: {why}"


def test_the_server_keeps_running_while_the_api_is_away(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime
) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    up = {KEY: peers("ready", "ready")}
    reconciler.step(head(), 1, up)
    reconciler.step(head(), 1, up)
    away = reconciler.step(head(), 1, {KEY: Pipeline(KEY, REPLICA, None)})
    assert away.applied and len(runtime.live()) == 1


def test_vllm_ray_head_first_then_workers_join_then_serve(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime
) -> None:
    first = make(tmp_path / "a", DriverKind.VLLM, clock, runtime)
    first.step(head(), 1, {KEY: peers("pending", "pending")})
    [ray] = runtime.live()  # the Ray head at once; the server waits
    port = ray.launch.endpoint.rsplit(":", 1)[1]
    assert ray.launch.argv == (
        "ray", "start", "--head", "--node-ip-address", "127.0.0.1", "--port", port, "--block"
    )  # fmt: skip
    assert ray.launch.health_paths == (PROBE_TCP,)
    report = first.step(head(), 1, {KEY: peers("pending", "pending")}).report
    assert report["stages"] == [
        {"pipeline": KEY, "stage": 0, "phase": "ready", "address": f"127.0.0.1:{port}"}
    ]

    worker_runtime = FakeRuntime()
    worker = make(tmp_path / "b", DriverKind.VLLM, clock, worker_runtime)
    role = [StageRole(KEY, 1, REPLICA)]
    no_head = worker.step(stage_specs(role), 1, {KEY: peers("pending", "pending")})
    assert "the first stage's Ray head is not ready" in no_head.report["replicas"][0]["message"]
    ray_up = (StagePeer(0, "a", "ready", "10.0.0.1:6379"), StagePeer(1, "b", "pending"))
    worker.step(stage_specs(role), 1, {KEY: Pipeline(KEY, REPLICA, ray_up)})
    [joined] = worker_runtime.live()
    assert joined.launch.argv == (
        "ray", "start", "--address", "10.0.0.1:6379", "--node-ip-address", "127.0.0.1", "--block"
    )  # fmt: skip
    assert joined.launch.health_paths == (PROBE_ALIVE,)

    first.step(head(), 1, {KEY: peers("ready", "ready")})
    serve = [p for p in runtime.live() if p.launch.argv[0] == "vllm"]
    assert len(serve) == 1
    argv = serve[0].launch.argv
    assert argv[argv.index("--pipeline-parallel-size") + 1] == "3"
    assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
    assert serve[0].launch.env["VLLM_PP_LAYER_PARTITION"] == "40,20,20"


def test_process_probes_of_stage_processes() -> None:
    runtime = ProcessRuntime()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
        assert runtime.healthy(endpoint, (PROBE_TCP,))
    assert not runtime.healthy(endpoint, (PROBE_TCP,))  # closed: refused
    assert runtime.healthy("127.0.0.1:1", (PROBE_ALIVE,))


def pull(body: dict[str, object]) -> ApiClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body, headers={"ETag": '"1"'})

    return ApiClient("http://api", "c", "t", transport=httpx.MockTransport(answer))


def test_the_pull_lists_later_stages_and_refuses_another_nodes() -> None:
    role = {
        "pipeline": KEY,
        "stage": 2,
        "assignment": json.loads(REPLICA.model_dump_json(by_alias=True)),
    }
    desired = pull(
        {"node": "c", "generation": 1, "assignments": [], "stages": [role]}
    ).assignments()
    assert desired.stages == [StageRole(KEY, 2, REPLICA)]
    assert [s.part for s in stage_specs(desired.stages)] == ["stage"]
    wrong = dict(role, stage=1)  # stage 1 is b's
    with pytest.raises(ApiAnswerRefused, match=f"{KEY} stage 1"):
        pull({"node": "c", "generation": 1, "assignments": [], "stages": [wrong]}).assignments()


def test_pipeline_parts_are_not_scraped(tmp_path: Path, clock: Clock, runtime: FakeRuntime) -> None:
    scraped: list[str] = []

    def metrics(request: httpx.Request) -> httpx.Response:
        scraped.append(request.url.host)
        return httpx.Response(200, text="")

    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    up = {KEY: peers("ready", "ready")}
    reconciler.step(head(), 1, up)
    reconciler.step(head(), 1, up)
    http = httpx.Client(transport=httpx.MockTransport(metrics))
    manifest = Manifest.model_validate({"workloads": {"big": {"catalogModel": "llama-3.1-70b"}}})
    observer = Observer("a", manifest, DriverKind.LLAMA_CPP, http=http, clock=clock)
    assert observer.sample(reconciler.state.records(), ["rtx-4090"]) == []
    assert scraped == []  # its windows would be booked on the first stage's GPUs alone


def test_a_stage_no_longer_planned_here_stops_without_draining(
    tmp_path: Path, clock: Clock, runtime: FakeRuntime
) -> None:
    reconciler = make(tmp_path, DriverKind.LLAMA_CPP, clock, runtime)
    role = stage_specs([StageRole(KEY, 2, REPLICA)])
    known = {KEY: Pipeline(KEY, REPLICA, None)}
    reconciler.step(role, 1, known)
    assert reconciler.step(role, 1, known).applied
    outcome = reconciler.step([], 2, {})
    assert outcome.actions == [f"stopped {role[0].key}"]  # no drain grace: it serves no requests
    assert runtime.live() == [] and reconciler.state.records() == []
