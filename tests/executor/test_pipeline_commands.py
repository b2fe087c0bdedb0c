"""Rendered command lines of a pipeline replica: llama.cpp RPC and vLLM over Ray."""

from __future__ import annotations

import pytest

from gridplace.executor.errors import DriverError
from gridplace.executor.pipeline_commands import StageHost, llama_cpp_rpc, vllm_ray

STAGES = [
    StageHost("a", "10.0.0.1", 1, 27),
    StageHost("b", "10.0.0.2", 1, 27),
    StageHost("c", "10.0.0.3", 1, 26),
]


def test_llama_cpp_rpc_workers_and_the_first_stage_server() -> None:
    commands = llama_cpp_rpc(STAGES, "/cache/70b.gguf", "0.0.0.0", 8080, "chat")
    assert [c.node for c in commands] == ["a", "b", "c"]
    assert commands[1].argv == ("rpc-server", "--host", "10.0.0.2", "--port", "50052")
    assert commands[2].argv == ("rpc-server", "--host", "10.0.0.3", "--port", "50052")
    server = commands[0].argv
    assert server[:3] == ("llama-server", "-m", "/cache/70b.gguf")
    assert server[server.index("--rpc") + 1] == "10.0.0.2:50052,10.0.0.3:50052"
    assert server[server.index("--tensor-split") + 1] == "27,27,26"


def test_vllm_ray_head_workers_and_serve() -> None:
    commands = vllm_ray(STAGES, "meta-llama/Llama-3.1-70B", "0.0.0.0", 8000, "chat")
    assert commands[0].argv == (
        "ray",
        "start",
        "--head",
        "--node-ip-address",
        "10.0.0.1",
        "--port",
        "6379",
        "--block",
    )
    assert commands[1].argv == (
        "ray",
        "start",
        "--address",
        "10.0.0.1:6379",
        "--node-ip-address",
        "10.0.0.2",
        "--block",
    )
    serve = commands[-1]
    assert serve.node == "a"
    assert serve.argv[serve.argv.index("--pipeline-parallel-size") + 1] == "3"
    assert serve.argv[serve.argv.index("--tensor-parallel-size") + 1] == "1"
    assert serve.argv[serve.argv.index("--distributed-executor-backend") + 1] == "ray"
    assert serve.env == {"VLLM_PP_LAYER_PARTITION": "27,27,26"}


def test_bad_pipelines_are_refused() -> None:
    with pytest.raises(DriverError, match="at least 2 stages"):
        llama_cpp_rpc(STAGES[:1], "/m.gguf", "0.0.0.0", 1, "x")
    with pytest.raises(DriverError, match="same GPUs on every stage"):
        vllm_ray([STAGES[0], StageHost("b", "10.0.0.2", 2, 53)], "m", "0.0.0.0", 1, "x")
    with pytest.raises(DriverError, match="at most one stage"):
        vllm_ray([STAGES[0], StageHost("a", "10.0.0.1", 1, 53)], "m", "0.0.0.0", 1, "x")
