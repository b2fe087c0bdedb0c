"""Drivers build the right command lines; the process runtime runs the stub server for real."""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gridplace.executor.diff import ReplicaSpec
from gridplace.executor.drivers import CommandDriver, LlamaCppDriver, Target, VllmDriver
from gridplace.executor.errors import DriverError
from gridplace.executor.launcher import free_port
from gridplace.executor.process import ProcessRuntime, parse_metrics

STUB = Path(__file__).with_name("stub_server.py")
WAIT_S = 60.0


def target(gpus: tuple[int, ...] = (1, 3), precision: str = "fp8", share: int = 1, **kw) -> Target:
    spec = ReplicaSpec("chat", gpus, precision, tensor_parallel=len(gpus), gpu_share=share)
    ids = {i: f"GPU-{i}" for i in range(4)}
    return Target(spec, "chat-1", "org/model", "127.0.0.1", 8123, ids, **kw)


def test_vllm_gets_precision_tp_gpus_and_memory_share() -> None:
    launch = VllmDriver().launch_spec(target())
    argv = launch.argv
    assert argv[:3] == ("vllm", "serve", "org/model")
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--quantization") + 1] == "fp8"
    assert argv[argv.index("--port") + 1] == "8123"
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "GPU-1,GPU-3"
    half = VllmDriver().launch_spec(target((0,), "bf16", share=2)).argv
    assert half[half.index("--gpu-memory-utilization") + 1] == "0.45"
    assert half[half.index("--dtype") + 1] == "bfloat16" and "--quantization" not in half


def test_amd_gpus_are_chosen_with_hip_visible_devices() -> None:
    env = VllmDriver().launch_spec(target(vendor="amd")).env
    assert env["HIP_VISIBLE_DEVICES"] == "GPU-1,GPU-3" and "CUDA_VISIBLE_DEVICES" not in env


def test_llama_cpp_needs_a_cached_gguf(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="GGUF"):
        LlamaCppDriver().launch_spec(target())
    gguf = tmp_path / "m.gguf"
    launch = LlamaCppDriver().launch_spec(target(weights_path=gguf))
    assert launch.argv[:3] == ("llama-server", "-m", str(gguf)) and "--metrics" in launch.argv


def test_command_template_keeps_values_as_single_arguments() -> None:
    driver = CommandDriver("srv --model {model} --port {port} --gpus {gpus}")
    spaced = Target(ReplicaSpec("w", (0,), "int4"), "w-1", "a model with spaces", "h", 1, {0: "0"})
    assert driver.launch_spec(spaced).argv == (
        "srv",
        "--model",
        "a model with spaces",
        "--port",
        "1",
        "--gpus",
        "0",
    )
    with pytest.raises(DriverError, match="unknown placeholder"):
        CommandDriver("srv {nope}")
    with pytest.raises(DriverError, match="not on this node"):
        driver.launch_spec(target((7,)))


def test_metrics_are_summed_over_the_named_gauges() -> None:
    text = 'vllm:num_requests_running{m="a"} 2.0\nvllm:num_requests_waiting 1\nother 9\n'
    names = ("vllm:num_requests_running", "vllm:num_requests_waiting")
    assert parse_metrics(text, names) == 3
    assert parse_metrics("other 9\n", names) is None


def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s`` (generous: at load 8-11 on 2
    cores, what takes milliseconds idle has taken seconds)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s"
        time.sleep(0.05)


def test_the_stub_server_runs_drains_and_stops_as_a_real_process(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    template = f"{shlex.quote(sys.executable)} {STUB} --port {{port}} --model {{model}}"
    driver = CommandDriver(template, drain_path="/drain")
    spec = ReplicaSpec("chat", (0,), "fp8")
    launch = driver.launch_spec(Target(spec, "chat-abc", "m", "127.0.0.1", port, {0: "0"}))
    runtime = ProcessRuntime()
    process = runtime.launch(launch, "chat-abc", tmp_path / "log")
    endpoint = f"127.0.0.1:{port}"
    answers: list[httpx.Response] = []
    try:
        until(lambda: runtime.healthy(endpoint, launch.health_paths), "healthy")
        assert runtime.alive(process, "chat-abc")
        assert not runtime.alive(process, "someone-else")  # the marker must match
        assert runtime.find("chat-abc") == process
        # In flight long enough to be seen, polled, at load 8-11 (a 0.6 s one was missed there).
        completion = {"prompt": "hi", "delay_s": 3.0}
        slow = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"http://{endpoint}/v1/completions", json=completion, timeout=WAIT_S)
            )
        )
        slow.start()
        until(lambda: runtime.inflight(endpoint, launch.inflight_metrics) == 1, "in flight")
        runtime.request_drain(endpoint, "/drain")
        refused = httpx.post(f"http://{endpoint}/v1/completions", json={"prompt": "x"})
        assert refused.status_code == 503
        slow.join(timeout=WAIT_S)
        assert [a.status_code for a in answers] == [200]  # the drained server finished it
        assert runtime.inflight(endpoint, launch.inflight_metrics) == 0
    finally:
        runtime.stop(process, "chat-abc", timeout_s=5)
    with pytest.raises(ChildProcessError):  # waited for: no zombie, no ResourceWarning later
        os.waitpid(process.pid, os.WNOHANG)
    assert not runtime.alive(process, "chat-abc")
    assert runtime.find("chat-abc") is None
